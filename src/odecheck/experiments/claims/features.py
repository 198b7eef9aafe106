"""Claim feature-regularity: the hidden states along depth at initialization.

References
----------
[Y23] Yang, Yu, Zhu, Hayou. Tensor Programs VI: feature learning in infinite-depth neural networks,
2023.  [M25] Marion et al., JMLR 2025.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.analysis.estimators import classify_regime, scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, feature_decision
from odecheck.engine.init import member_generator
from odecheck.engine.models import ResNet
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress

# (init, beta) of the two settings: iid weights at the critical scaling, and smooth weights at beta = 1
SETTINGS = (("smooth(0.1)", 1.0, "smooth"), ("iid", 0.5, "brownian"))


@dataclass(frozen=True, kw_only=True)
class FeatureConfig(ExperimentConfig):
    """feature-regularity: res1 networks at initialization, residual dimension ``dim``, ``samples``
    Gaussian inputs, ``ensemble`` members per depth; the feature path of a member is k -> h_k
    (all samples' states, ``samples`` x ``dim`` entries)."""

    depths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    ensemble: int = 8
    dim: int = 16
    samples: int = 8
    activation: str = "tanh"


def feature_experiment(cfg: FeatureConfig, progress: Advance = no_progress) -> Evidence:
    depths, R = list(cfg.depths), cfg.ensemble
    x = torch.randn(cfg.samples, cfg.dim, generator=member_generator(cfg.seed + 91, 0), dtype=torch.float64)
    level = 1 - cfg.alpha / 2  # Bonferroni over the two settings' slopes
    rows = {}
    for j, (init, beta, kind) in enumerate(SETTINGS):
        incs, regimes, hursts = [], [], []
        for i, L in enumerate(depths):
            net = ResNet(block="res1", depth=L, dim=cfg.dim, activation=cfg.activation, beta=beta, init=init,
                         ensemble=R, seed=cfg.seed + L, dtype=torch.float64, device=cfg.device)
            H = net.hidden_states(x.to(net.device)).cpu().numpy()  # (R, L+1, n, q)
            paths = H.reshape(R, L + 1, -1)
            incs.append(np.sqrt((np.diff(paths, axis=1) ** 2).sum(-1)).max(-1))  # (R,) max_k ||h_k+1 - h_k||
            if L == depths[-1]:
                decs = [classify_regime(paths[r], level=level, seed=cfg.seed) for r in range(R)]
                regimes = [d.regime for d in decs]
                hursts = [d.hurst.estimate for d in decs]
            progress((j * len(depths) + i + 1) / (2 * len(depths)))
        V = np.array(incs)
        if not np.all(np.isfinite(V)) or np.any(V <= 0):
            return Evidence.diverged(depths=depths, setting=kind)
        fit = scaling_exponent(depths, V, level=level, seed=cfg.seed + j)
        rows[kind] = {"init": init, "beta": beta, "values": V, "slope": fit.estimate, "ci": fit.ci,
                      "intercept": fit.intercept, "regimes": regimes, "hurst": hursts}
    verdict = feature_decision(smooth_ci=rows["smooth"]["ci"], brownian_ci=rows["brownian"]["ci"],
                               smooth_regimes=rows["smooth"]["regimes"], brownian_regimes=rows["brownian"]["regimes"])
    b = rows["brownian"]
    return Evidence(verdict=verdict, estimate=b["slope"], ci=b["ci"], n=2 * len(depths) * R, figure="loglog",
                    details={"depths": depths, "ensemble": R, "statistic": "max_k ||h_{k+1} - h_k||_F at init "
                             "(all samples); estimate: the iid beta = 1/2 slope", "by_setting": rows,
                             "values": b["values"], "intercept": b["intercept"],
                             "ylabel": "max_k ||h_k+1 - h_k|| (iid, beta 1/2)"})


FEATURES = Claim(
    id="feature-regularity",
    statement="At initialization the hidden states h_k of an iid network with beta = 1/2 move like a Brownian path "
              "in k (increments ~ L^-1/2, Hurst 1/2); with a smooth init and beta = 1 they move smoothly "
              "(increments ~ L^-1, Hurst 1).",
    source="[Y23], [M25]",
    scope={"block": ["res1"], "init": ["iid", "smooth"], "beta": [0.5, 1.0], "activation": "Lipschitz"},
    expected="confirmed", alpha=ALPHA,
    decision="per setting the log-log slope of max_k ||h_{k+1} - h_k|| in L with a members-t interval (Bonferroni, "
             "level 1 - 0.05/2) and the regime of the feature path k -> h_k of every member at the largest depth: "
             "confirmed if the smooth slope lies below -0.85 with every path 'ode' and the iid slope inside "
             "(-0.75, -0.25) with every path 'sde'; refuted if a slope interval excludes its prediction or every "
             "path of a setting has the other regime",
    presets={"quick": FeatureConfig(depths=(64, 128, 256, 512), ensemble=4), "standard": FeatureConfig(),
             "thorough": FeatureConfig(depths=(64, 128, 256, 512, 1024, 2048), ensemble=16)},
    experiment=feature_experiment)
