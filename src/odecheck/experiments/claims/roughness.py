"""Claims about non-smooth limits: iid-init-rough, relu-counterexample, trained-scaling-regimes.

References
----------
[M24] sec. 5.2 and App. 10;  [C21] Cohen et al., ICML 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.analysis.estimators import classify_regime, max_norm, scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, relu_decision, rough_decision
from odecheck.core._errors import invalid
from odecheck.engine.data import teacher_task
from odecheck.engine.flow import adam, gradient_flow
from odecheck.engine.models import ResNet
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress
from odecheck.experiments.claims.rates import TrainingConfig, any_diverged, m24_setting


def iid_rough_experiment(cfg: TrainingConfig, progress: Advance = no_progress) -> Evidence:
    depths, R, steps = list(cfg.depths), cfg.ensemble, cfg.steps
    _, runs = m24_setting(cfg, depths, progress)
    if any_diverged(*(t for _, t in runs)):
        return Evidence.diverged(depths=depths)
    D = np.array([t.max_increment[-1] for _, t in runs])
    fit = scaling_exponent(depths, np.maximum(D, 1e-300), level=1 - cfg.alpha, seed=cfg.seed)
    net = runs[-1][0]
    regimes = [classify_regime(net.numpy_weights()["V"][r], seed=cfg.seed).regime for r in range(R)]
    verdict = rough_decision(fit)  # claim: increments do not shrink like 1/L
    return Evidence(verdict=verdict, estimate=fit.estimate, ci=fit.ci, n=len(depths) * R, figure="loglog",
                    details={"depths": depths, "ensemble": R, "steps": steps, "values": D, "intercept": fit.intercept,
                             "level": fit.level, "statistic": "max_k ||Z_{k+1}(T) - Z_k(T)||_F (trained, iid init)",
                             "regimes_deepest": regimes, "ylabel": "max_k ||Z_k+1 - Z_k|| at T"})


@dataclass(frozen=True, kw_only=True)
class ReluConfig(ExperimentConfig):
    """relu-counterexample: depth-2L single-block relu nets in d = 1 from the alternating init, one
    sample (1, C), gradient flow for ``steps`` Euler steps of ``lr`` at each depth 2L in ``depths``."""

    depths: tuple[int, ...] = (16, 32, 64, 128)
    steps: int = 400
    lr: float = 0.05
    C: float = 2.0


def relu_counterexample_experiment(cfg: ReluConfig, progress: Advance = no_progress) -> Evidence:
    depths, C, steps = list(cfg.depths), cfg.C, cfg.steps
    if any(L2 % 2 for L2 in depths):
        raise invalid("depths", depths, "even depths 2L (the counterexample pairs its layers)")
    x = torch.ones(1, 1, dtype=torch.float64)
    D, wstar_err, frozen = [], [], True
    for i, L2 in enumerate(depths):
        net = ResNet(block="single", depth=L2, dim=1, activation="relu", init="counterexample", bias=False,
                     dtype=torch.float64)  # on the CPU whatever the device: a one-dimensional net
        w0 = net.weights["W"][0, :, 0, 0].clone()
        traj = gradient_flow(net, x, C * x, steps=steps, lr=cfg.lr)
        if any_diverged(traj):
            return Evidence.diverged(depths=depths)
        w = net.weights["W"][0, :, 0, 0]
        frozen &= bool(torch.equal(w[0::2], w0[0::2]))
        L = L2 // 2
        wstar = 2 * L * (C ** (1 / L) - 1)
        wstar_err.append(float((w[1::2] - wstar).abs().max()) / wstar)
        D.append(float(traj.max_increment[-1, 0]))
        progress((i + 1) / len(depths))
    D = np.array(D)
    fit = scaling_exponent(depths, D, method="theil-sen", level=1 - cfg.alpha)
    # Theory: odd layers never move; even layers converge to w* = 2L(C^(1/L) - 1) >= 2 log C, so
    # max_k |w_{k+1} - w_k| = w* + 1/(2L) >= 2 log C at every depth (Omega(1)). Convergence to the
    # fixed point is checked to a relative 1e-6 (far above float64 rounding, far below w*).
    floor = 2 * np.log(C)
    verdict = relu_decision(frozen=frozen, max_rel_error=max(wstar_err), increments=D, C=C)
    return Evidence(verdict=verdict, estimate=fit.estimate, ci=fit.ci, n=len(depths), figure="loglog",
                    details={"depths": depths, "C": C, "steps": steps, "lr": cfg.lr, "values": D,
                             "intercept": fit.intercept, "level": fit.level, "odd_layers_frozen": frozen,
                             "max_rel_error_to_w_star": wstar_err, "omega1_floor_2logC": floor,
                             "statistic": "max_k |w_{k+1} - w_k| after training", "ylabel": "max_k |w_k+1 - w_k|"})


@dataclass(frozen=True, kw_only=True)
class RegimesConfig(ExperimentConfig):
    """trained-scaling-regimes: single-block nets of width ``dim`` trained by Adam (``steps`` steps of
    ``lr``, minibatches of ``batch_size``) on a teacher-ODE task of ``samples`` points, once from a
    smooth and once from an iid init, ``ensemble`` members per depth.

    The same horizon at every budget (the budget buys depths and members). Adam moves each entry by
    about lr per step whatever the gradient's size, so an entry moves at most lr * steps = 0.3 here,
    below the unit scale of the init: the init's regularity along depth can survive training.
    (At lr 1e-2, lr * steps = 3 exceeds it, and smooth inits did come out rough.)"""

    depths: tuple[int, ...] = (32, 64, 128, 256)
    ensemble: int = 4
    steps: int = 300
    lr: float = 1e-3
    activation: str = "tanh"
    smooth_init: str = "smooth(0.1)"
    dim: int = 8
    samples: int = 64
    teacher_width: int = 16
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        from odecheck.core.validation import check_int
        from odecheck.engine.init import as_init

        as_init(self.smooth_init)
        check_int("teacher_width", self.teacher_width, 1)
        check_int("batch_size", self.batch_size, 1)


def trained_regimes_experiment(cfg: RegimesConfig, progress: Advance = no_progress) -> Evidence:
    depths, R, steps, lr = list(cfg.depths), cfg.ensemble, cfg.steps, cfg.lr
    data = teacher_task(cfg.samples, cfg.dim, width=cfg.teacher_width, seed=cfg.seed, dtype=torch.float32)
    rows = {}
    inits = (cfg.smooth_init, "iid")
    for j, init in enumerate(inits):
        norms, regimes = [], []
        for i, L in enumerate(depths):
            net = ResNet(block="single", depth=L, dim=cfg.dim, activation=cfg.activation, beta=1.0, init=init,
                         ensemble=R, seed=cfg.seed + L, device=cfg.device)
            adam(net, data.x.to(net.device), data.y.to(net.device), steps=steps, lr=lr, batch_size=cfg.batch_size,
                 seed=cfg.seed)
            W = net.numpy_weights()["W"]
            norms.append([max_norm(W[r]) for r in range(R)])
            if L == depths[-1]:
                regimes = [classify_regime(W[r], seed=cfg.seed).regime for r in range(R)]
            progress((j * len(depths) + i + 1) / (2 * len(depths)))
        fit = scaling_exponent(depths, np.array(norms), level=1 - cfg.alpha, seed=cfg.seed)
        lo, hi = fit.ci
        # beta_hat = -slope, so its interval is the slope's negated and reversed
        rows[init] = {"values": np.array(norms), "beta_hat": -fit.estimate, "ci": (-hi, -lo), "slope": fit.estimate,
                      "slope_ci": fit.ci, "regimes": regimes, "intercept": fit.intercept}
    smooth_ok = all(r == "ode" for r in rows[cfg.smooth_init]["regimes"])
    iid_ok = all(r == "none" for r in rows["iid"]["regimes"])
    smooth_bad = all(r == "none" for r in rows[cfg.smooth_init]["regimes"])
    iid_bad = all(r == "ode" for r in rows["iid"]["regimes"])
    verdict = "confirmed" if (smooth_ok and iid_ok) else ("refuted" if (smooth_bad or iid_bad) else "inconclusive")
    return Evidence(verdict=verdict, estimate=rows["iid"]["beta_hat"], ci=rows["iid"]["ci"], n=2 * len(depths) * R,
                    figure="loglog",
                    details={"depths": depths, "ensemble": R, "steps": steps, "optimizer": "adam", "lr": lr,
                             "statistic": "beta_hat from max_k ||W_k|| ~ L^-beta (iid init); regime of k -> W_k",
                             "by_init": rows, "values": rows["iid"]["values"], "intercept": rows["iid"]["intercept"],
                             "line_slope": rows["iid"]["slope"], "line_slope_ci": rows["iid"]["slope_ci"],
                             "ylabel": "max_k ||W_k|| (iid init, Adam)"})


IID_ROUGH = Claim(
    id="iid-init-rough",
    statement="With iid init the trained weights are not smooth in the layer index: increments do not shrink like 1/L.",
    source="[M24] sec. 5.2, [C21]",
    scope={"block": ["mlp"], "init": ["iid"], "activation": "any", "beta": [1.0]},
    expected="confirmed", alpha=ALPHA,
    decision="log-log slope of the trained max increment, 95% Student-t interval over members: confirmed if the interval lies "
             "above -0.85 (slower than 1/L), refuted if below",
    presets={"quick": TrainingConfig(depths=(16, 32, 64, 128), steps=100, init="iid"),
             "standard": TrainingConfig(depths=(16, 32, 64, 128, 256), steps=300, init="iid"),
             "thorough": TrainingConfig(depths=(16, 32, 64, 128, 256, 512), ensemble=8, steps=500, init="iid")},
    experiment=iid_rough_experiment)

RELU_COUNTEREXAMPLE = Claim(
    id="relu-counterexample",
    statement="Depth 2L, d = 1, relu, init w_k = (-1)^k/(2L), one sample (x, Cx), C > 1: odd layers stay frozen, "
              "even layers converge to w* with (1 + w*/(2L))^L = C, so successive differences stay Omega(1).",
    source="[M24] App. 10",
    scope={"block": ["single"], "dim": [1], "activation": ["relu"], "init": ["counterexample"]},
    expected="confirmed", alpha=ALPHA,
    decision="confirmed if the odd layers are bit-for-bit unchanged, the even layers reach w* (relative error "
             "< 1e-6) and max_k |w_{k+1} - w_k| >= 2 log C (the depth-free lower bound of w* + 1/(2L)) at every "
             "depth; refuted if an odd layer moved or a converged run falls below 2 log C; the estimate is the "
             "Theil-Sen slope of the increment in L (theory: -> 0)",
    presets={"quick": ReluConfig(depths=(16, 32, 64), steps=300),
             "standard": ReluConfig(),
             "thorough": ReluConfig(depths=(16, 32, 64, 128, 256, 512), steps=600)},
    experiment=relu_counterexample_experiment)

TRAINED_REGIMES = Claim(
    id="trained-scaling-regimes",
    statement="For trained weights, beta from max_k ||A_k|| ~ L^-beta and the regularity of k -> A_k depend on the "
              "setting: ODE-like, diffusive, or neither.",
    source="[C21]",
    scope={"block": ["single"], "optimizer": ["adam", "sgd"], "activation": "any"},
    expected="confirmed", alpha=ALPHA,
    decision="single-block tanh nets trained by Adam on a teacher-ODE task: the regime of k -> W_k at the largest "
             "depth is 'ode' for every smooth-init member and 'none' for every iid-init member (regime rule "
             "calibrated in docs/calibration.md); estimate: beta_hat of the iid nets",
    presets={"quick": RegimesConfig(depths=(32, 64, 128)),
             "standard": RegimesConfig(),
             "thorough": RegimesConfig(depths=(32, 64, 128, 256, 512), ensemble=8)},
    experiment=trained_regimes_experiment)
