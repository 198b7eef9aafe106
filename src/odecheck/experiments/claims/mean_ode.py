"""Claim 11, mean-ode-rate: a fixed number of full-batch GD steps keeps an ensemble of mean-field ResNets
within O(1/L + 1/sqrt(L M)) of its mean-ODE limit: at fixed M = D the run-to-run spread falls like L^-1/2 and
the ensemble mean's bias like L^-1.

References
----------
[Ch25] Chizat, arXiv 2509.10167.  [CCM26] Chaintron, Chizat, Maass, arXiv 2603.18168.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from odecheck.analysis.estimators.decisions import ALPHA, mean_ode_decision
from odecheck.core._errors import invalid
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress


@dataclass(frozen=True, kw_only=True)
class MeanOdeConfig(ExperimentConfig):
    """``ensemble`` mean-field ResNets (``blocks.meanfield``: h + (1/(L M)) V sigma(W h / D), entries of V and W
    of variance D, identity input and output maps on R^io_dim) at each depth of ``depths`` (doubling), M =
    ``width``, D = ``dim``, trained ``steps`` full-batch GD steps with per-layer step eta L M D on ``samples``
    Gaussian pairs; the outputs on the training inputs after the last step. On odecheck's loss sum (F - Y)^2 / n,
    eta = 0.1 is [CCM26]'s eta = 1 (its loss also divides by d_out = 5 and its update drops the square's 2)."""

    depths: tuple[int, ...] = (4, 8, 16, 32, 64)
    ensemble: int = 1024
    dim: int = 16
    width: int = 16
    steps: int = 15
    eta: float = 0.1
    samples: int = 10
    io_dim: int = 5
    activation: str = "tanh"
    dtype: str = "float32"
    n_boot: int = 1000
    # outside the claim's scope, for falsify: "adam" trains with Adam at lr eta (full batch) instead of GD
    method: str = "gradient_flow"

    def __post_init__(self) -> None:
        from odecheck.core.validation import check_choice, check_float, check_int

        super().__post_init__()
        check_choice("method", self.method, ("gradient_flow", "adam"))
        L = np.asarray(self.depths, dtype=float)
        if L.size < 4 or not np.allclose(L[1:] / L[:-1], 2.0):
            raise invalid("depths", list(self.depths), "at least 4 depths, each twice the one before")
        if self.ensemble < 8:
            raise invalid("ensemble", self.ensemble, "at least 8 members")
        if not check_float("eta", self.eta) > 0:
            raise invalid("eta", self.eta, "a positive float")
        check_int("io_dim", self.io_dim, 1)
        check_int("n_boot", self.n_boot, 100)
        if 2 * self.io_dim > self.dim:
            raise invalid("dim", self.dim, f"at least 2 io_dim = {2 * self.io_dim} (identity maps in and out)")


def mean_ode_outputs(cfg: MeanOdeConfig, progress: Advance = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """(outputs (depths, members, samples * io_dim) after training, final losses (depths, members))."""
    from odecheck.engine.data import gaussian_task
    from odecheck.engine.init import as_init
    from odecheck.engine.models import ResNet
    from odecheck.engine.optim import Adam, GradientFlow
    from odecheck.engine.training import train

    data = gaussian_task(cfg.samples, cfg.io_dim, cfg.io_dim, seed=cfg.seed, dtype=cfg.torch_dtype)
    init = replace(as_init("iid"), scale=float(np.sqrt(cfg.dim)))
    outs, losses = [], []
    for i, L in enumerate(cfg.depths):
        # the same seed at every depth: member r is one column of the bootstrap
        net = ResNet(block="meanfield", depth=L, dim=cfg.dim, width=cfg.width, input_dim=cfg.io_dim,
                     output_dim=cfg.io_dim, activation=cfg.activation, beta=1.0, init=init, io_init="identity",
                     ensemble=cfg.ensemble, seed=cfg.seed, dtype=cfg.torch_dtype, device=cfg.device)
        opt = (GradientFlow(lr=cfg.eta * cfg.width * cfg.dim) if cfg.method == "gradient_flow"
               else Adam(lr=cfg.eta, batch_size=cfg.samples))
        traj = train(net, data, opt, steps=cfg.steps)
        outs.append(net(data.x.to(net.device)).detach().to("cpu").double().reshape(cfg.ensemble, -1).numpy())
        losses.append(np.asarray(traj.loss[-1], dtype=float))
        progress((i + 1) / len(cfg.depths))
    return np.array(outs), np.array(losses)


def mean_ode_experiment(cfg: MeanOdeConfig, progress: Advance = no_progress) -> Evidence:
    from odecheck.analysis.estimators.ensemble import ensemble_rates

    F, losses = mean_ode_outputs(cfg, progress)
    if not np.all(np.isfinite(F)):
        return Evidence.diverged(depths=list(cfg.depths))
    level = 1 - cfg.alpha / 2  # Bonferroni over the two slopes
    spread, bias = ensemble_rates(cfg.depths, F, level=level, n_boot=cfg.n_boot, seed=cfg.seed)
    verdict, calls = mean_ode_decision(spread.ci, bias.ci)
    return Evidence(verdict=verdict, estimate=spread.slope, ci=spread.ci, n=len(cfg.depths) * cfg.ensemble,
                    figure="loglog",
                    details={"depths": list(cfg.depths), "ensemble": cfg.ensemble, "level": level,
                             "statistic": "run-to-run spread of the outputs (RMS over entries)",
                             "values": spread.values,
                             "intercept": float(np.log(spread.values).mean() - spread.slope * np.log(cfg.depths).mean())
                             if np.isfinite(spread.slope) else float("nan"),
                             "ylabel": "run-to-run spread of F(x)", "reference_slope": -0.5, "points": "ensemble statistic",
                             "spread_call": calls[0],
                             "spread_declined": spread.declined,
                             "bias_slope": bias.slope, "bias_ci": bias.ci, "bias_values": bias.values,
                             "bias_depths": bias.depths, "bias_call": calls[1], "bias_declined": bias.declined,
                             "final_loss_median": np.median(losses, axis=1),
                             "effective_step": "eta L M D", "eta": cfg.eta})


MEAN_ODE_RATE = Claim(
    id="mean-ode-rate",
    statement="K full-batch GD steps keep a mean-field ResNet (h + (1/(L M)) V tanh(W h / D)) within O(1/L + "
              "1/sqrt(L M)) of its mean-ODE limit: at fixed M = D the run-to-run spread of the outputs falls like "
              "L^-1/2 and the ensemble mean's bias like L^-1.",
    source="[Ch25], [CCM26] (the L-varied test is new: [CCM26] fixes L = 50)",
    scope={"block": ["meanfield"], "activation": ["tanh", "smooth, bounded"], "steps": "fixed K",
           "step": "eta L M D, eta small enough for the flow"},
    expected="confirmed", alpha=ALPHA,
    decision="OLS slopes in L of the outputs' run-to-run spread and of the corrected RMS difference of consecutive "
             "ensemble means, 97.5% member-bootstrap intervals (Bonferroni): confirmed if the spread's lies in "
             "-1/2 +- 1/4 and the bias's in -1 +- 1/4, refuted if either lies wholly outside its band",
    presets={"quick": MeanOdeConfig(depths=(4, 8, 16, 32)),
             "standard": MeanOdeConfig(),
             "thorough": MeanOdeConfig(depths=(4, 8, 16, 32, 64, 128), ensemble=4096, dim=32, width=32)},
    experiment=mean_ode_experiment)
