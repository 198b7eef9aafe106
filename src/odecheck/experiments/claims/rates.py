"""Claims about the neural-ODE limit: ode-rate-fixed-weights, tied-init-lipschitz, trained-ode-limit.

References
----------
[M24] Marion et al., ICLR 2024, Prop. 2, Prop. 3, Thm. 4, sec. 5.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.analysis.estimators import l2_distance, scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, rate_decision
from odecheck.engine.data import gaussian_task
from odecheck.engine.flow import gradient_flow
from odecheck.engine.init import gp_paths, member_generator
from odecheck.engine.models import ResNet
from odecheck.engine.ode import neural_ode
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress


def any_diverged(*trajs) -> bool:
    return any(bool(t.diverged.any()) for t in trajs)


@dataclass(frozen=True, kw_only=True)
class OdeRateConfig(ExperimentConfig):
    """ode-rate-fixed-weights: ``ensemble`` Lipschitz weight functions Z(s) (Gaussian processes with
    length scale ``length_scale`` on ``grid`` points, linearly interpolated), sampled at Z(k/L) for
    each depth and compared in float64 with the neural ODE on ``samples`` inputs."""

    depths: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    ensemble: int = 8
    dim: int = 8
    width: int = 8
    grid: int = 2049
    length_scale: float = 0.2
    activation: str = "tanh"
    samples: int = 16


def ode_rate_experiment(cfg: OdeRateConfig, progress: Advance = no_progress) -> Evidence:
    depths, R = list(cfg.depths), cfg.ensemble
    q, m, N = cfg.dim, cfg.width, cfg.grid
    # Lipschitz weight functions Z(s): Gaussian processes on a fine grid, linearly interpolated
    V = np.empty((R, N, q, m))
    W = np.empty((R, N, m, q))
    for r in range(R):
        g = member_generator(cfg.seed + 101, r)
        V[r] = gp_paths(q * m, N, cfg.length_scale, g).T.reshape(N, q, m).numpy()
        W[r] = gp_paths(q * m, N, cfg.length_scale, g).T.reshape(N, m, q).numpy()
    x = torch.randn(cfg.samples, q, generator=member_generator(cfg.seed + 102, 0), dtype=torch.float64)
    fine = ResNet.from_weights(block="mlp", V=V, W=W, activation=cfg.activation, dtype=torch.float64)
    limit = neural_ode(fine, x, interpolation="linear", rtol=1e-10, atol=1e-12)
    progress(0.3)
    gaps = []
    for i, L in enumerate(depths):
        s = np.arange(L) / L  # Z_k = Z(k/L), k = 0..L-1 (left end of layer k's interval)

        def at(Z, s=s):
            pos = s * (N - 1)
            k0 = np.minimum(np.floor(pos).astype(int), N - 2)
            w = (pos - k0)[None, :, None, None]
            return (1 - w) * Z[:, k0] + w * Z[:, k0 + 1]

        net = ResNet.from_weights(block="mlp", V=at(V), W=at(W), activation=cfg.activation, dtype=torch.float64)
        gaps.append((net(x) - limit).norm(dim=-1).amax(dim=-1).numpy())
        progress(0.3 + 0.7 * (i + 1) / len(depths))
    gaps = np.array(gaps)
    fit = scaling_exponent(depths, gaps, level=1 - cfg.alpha, seed=cfg.seed, paired=True)
    return Evidence(verdict=rate_decision(fit), estimate=fit.estimate, ci=fit.ci, n=len(depths) * R, figure="loglog",
                    details={"depths": depths, "ensemble": R, "statistic": "sup_x ||F^L(x) - F(x)||",
                             "values": gaps, "intercept": fit.intercept, "level": fit.level,
                             "ylabel": "sup_x |F^L(x) - F(x)|"})


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(ExperimentConfig):
    """The [M24] sec. 5 setting shared by tied-init-lipschitz, trained-ode-limit and iid-init-rough:
    mlp ResNets of width ``width`` on ``samples`` Gaussian pairs in R^dim, trained by gradient flow
    (Euler steps of ``lr``) for ``steps`` steps, ``ensemble`` members per depth, the same weight
    function (the same seed) at every depth."""

    depths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    ensemble: int = 4
    steps: int = 500
    lr: float = 1e-2
    activation: str = "gelu"
    init: str = "tied"
    beta: float = 1.0
    dim: int = 16
    width: int = 32
    samples: int = 100
    dtype: str = "float32"
    reference_factor: int = 4  # trained-ode-limit: the reference network is this many times deeper


def m24_setting(cfg: TrainingConfig, depths, progress: Advance = no_progress, *, snapshots=()):
    data = gaussian_task(cfg.samples, cfg.dim, cfg.dim, seed=cfg.seed, dtype=cfg.torch_dtype)
    out = []
    for i, L in enumerate(depths):
        # the same seed at every depth: member r is one weight function (tied: the same W draw) seen at depth L
        net = ResNet(block="mlp", depth=L, dim=cfg.dim, width=cfg.width, activation=cfg.activation, beta=cfg.beta,
                     init=cfg.init, ensemble=cfg.ensemble, seed=cfg.seed, dtype=cfg.torch_dtype, device=cfg.device)
        traj = gradient_flow(net, data.x.to(net.device), data.y.to(net.device), steps=cfg.steps, lr=cfg.lr,
                             snapshots=[s for s in snapshots if s <= cfg.steps])
        out.append((net, traj))
        progress((i + 1) / len(depths))
    return data, out


def tied_lipschitz_experiment(cfg: TrainingConfig, progress: Advance = no_progress) -> Evidence:
    depths, R, steps = list(cfg.depths), cfg.ensemble, cfg.steps
    _, runs = m24_setting(cfg, depths, progress, snapshots=(0, steps // 2, steps))
    if any_diverged(*(t for _, t in runs)):
        return Evidence.diverged(depths=depths)
    D = np.array([t.max_increment.max(axis=0) for _, t in runs])  # max over k and t
    fit = scaling_exponent(depths, np.maximum(D, 1e-300), level=1 - cfg.alpha, seed=cfg.seed, paired=True)
    net, traj = runs[-1]
    entry = {str(s): w["V"][0, :, 0, 0].tolist() for s, w in traj.snapshots.items()}
    return Evidence(verdict=rate_decision(fit), estimate=fit.estimate, ci=fit.ci, n=len(depths) * R, figure="loglog",
                    details={"depths": depths, "ensemble": R, "steps": steps, "lr": cfg.lr,
                             "statistic": "max_{k,t} ||Z_{k+1}(t) - Z_k(t)||_F", "values": D,
                             "intercept": fit.intercept, "level": fit.level, "ylabel": "max_k,t ||Z_k+1 - Z_k||",
                             "weight_entry": {"depth": depths[-1], "by_step": entry}})


def trained_ode_experiment(cfg: TrainingConfig, progress: Advance = no_progress) -> Evidence:
    depths, R, steps = list(cfg.depths), cfg.ensemble, cfg.steps
    ref_depth = cfg.reference_factor * depths[-1]
    data, runs = m24_setting(cfg, depths + [ref_depth], progress)
    if any_diverged(*(t for _, t in runs)):
        return Evidence.diverged(depths=depths)
    ref_net, _ = runs[-1]
    xt = data.x[:32].double()
    gaps, l2 = [], []
    for net, _ in runs[:-1]:
        net64 = net.to(dtype=torch.float64)
        gaps.append((net64(xt) - neural_ode(net64, xt, rtol=1e-7, atol=1e-9)).norm(dim=-1).amax(-1).cpu().numpy())
        w, wr = net.numpy_weights(), ref_net.numpy_weights()
        l2.append([np.sqrt(l2_distance(w["V"][r], wr["V"][r]) ** 2 + l2_distance(w["W"][r], wr["W"][r]) ** 2)
                   for r in range(R)])
    gaps, l2 = np.array(gaps), np.array(l2)
    # Bonferroni over the two decisions: each at alpha/2
    fit_gap = scaling_exponent(depths, gaps, level=1 - cfg.alpha / 2, seed=cfg.seed, paired=True)
    fit_l2 = scaling_exponent(depths, l2, level=1 - cfg.alpha / 2, seed=cfg.seed + 1, paired=True)
    if fit_gap.ci[1] < 0 and fit_l2.ci[1] < 0:
        verdict = "confirmed"
    elif fit_gap.ci[0] > 0 or fit_l2.ci[0] > 0:
        verdict = "refuted"
    else:
        verdict = "inconclusive"
    return Evidence(verdict=verdict, estimate=fit_gap.estimate, ci=fit_gap.ci, n=len(depths) * R, figure="loglog",
                    details={"depths": depths, "ensemble": R, "steps": steps, "reference_depth": ref_depth,
                             "statistic": "sup_x ||F^L(x) - F_ode(x)|| of the trained network", "values": gaps,
                             "intercept": fit_gap.intercept, "level": fit_gap.level,
                             "l2_to_reference": l2, "l2_slope": fit_l2.estimate, "l2_ci": fit_l2.ci,
                             "ylabel": "ODE gap of trained net"})


ODE_RATE = Claim(
    id="ode-rate-fixed-weights",
    statement="If Z_k = Z(k/L) with Z Lipschitz, sup_x ||F^L(x) - F(x)|| <= C/L.",
    source="[M24] Prop. 2",
    scope={"block": ["mlp"], "weights": "Lipschitz functions of s", "activation": "Lipschitz", "beta": [1.0]},
    expected="confirmed", alpha=ALPHA,
    decision="log-log slope of the sup gap over depths, 95% Student-t interval over the slopes of independent weight "
             "functions: confirmed if the interval lies below -0.85, refuted if above",
    presets={"quick": OdeRateConfig(depths=(8, 16, 32, 64, 128), ensemble=4),
             "standard": OdeRateConfig(),
             "thorough": OdeRateConfig(depths=(8, 16, 32, 64, 128, 256, 512, 1024), ensemble=16)},
    experiment=ode_rate_experiment)

TIED_LIPSCHITZ = Claim(
    id="tied-init-lipschitz",
    statement="Smooth sigma, tied init, gradient flow on [0, T]: max_k ||Z_{k+1}(t) - Z_k(t)||_F <= K/L for t <= T.",
    source="[M24] Prop. 3, Thm. 4",
    scope={"block": ["mlp"], "init": ["tied", "smooth"], "activation": ["identity", "tanh", "gelu", "softplus"],
           "beta": [1.0]},
    expected="confirmed", alpha=ALPHA,
    decision="log-log slope of max over k and t of the increment, 95% Student-t interval over the members' slopes: "
             "confirmed if below -0.85, refuted if above",
    presets={"quick": TrainingConfig(depths=(16, 32, 64, 128, 256), steps=200),
             "standard": TrainingConfig(),
             "thorough": TrainingConfig(depths=(16, 32, 64, 128, 256, 512, 1024), ensemble=16)},
    experiment=tied_lipschitz_experiment)

TRAINED_ODE = Claim(
    id="trained-ode-limit",
    statement="Under the conditions of tied-init-lipschitz the trained network converges to the neural ODE with "
              "the trained weight functions, and Z^L(., t) converges in L2([0, 1]).",
    source="[M24] Thm. 4",
    scope={"block": ["mlp"], "init": ["tied", "smooth"], "activation": ["identity", "tanh", "gelu", "softplus"],
           "beta": [1.0]},
    expected="confirmed", alpha=ALPHA,
    decision="log-log slopes of the trained ODE gap and of the L2 distance to a 4x deeper reference, each with a "
             "97.5% Student-t interval over members (Bonferroni): confirmed if both intervals lie below 0, refuted if either "
             "lies above 0",
    presets={"quick": TrainingConfig(depths=(16, 32, 64), steps=100),
             "standard": TrainingConfig(depths=(16, 32, 64, 128), steps=300),
             "thorough": TrainingConfig(depths=(16, 32, 64, 128, 256), ensemble=8, steps=500)},
    experiment=trained_ode_experiment)
