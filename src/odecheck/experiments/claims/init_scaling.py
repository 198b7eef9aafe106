"""Claim init-scaling-regimes: signal propagation at initialization as a function of beta.

References
----------
[M25] Marion, Fermanian, Biau, Vert. Scaling ResNets in the large-depth regime. JMLR 2025.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.analysis.estimators import init_ratios, scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, BETAS, FLAT, cell_decision, iid_regime
from odecheck.core._errors import invalid
from odecheck.engine.init import member_generator
from odecheck.engine.models import ResNet
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress


@dataclass(frozen=True, kw_only=True)
class InitScalingConfig(ExperimentConfig):
    """init-scaling-regimes: res1 ResNets at initialization, residual dimension ``dim``, ``samples``
    Gaussian inputs, ``ensemble`` members per depth. The cells: ``init`` at every beta of ``betas``
    (the iid prediction of [M25] for each), and each of ``smooth_controls`` at beta = 1 (expected
    stable)."""

    depths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    ensemble: int = 16
    dim: int = 16
    samples: int = 32
    activation: str = "tanh"
    init: str = "iid"
    betas: tuple[float, ...] = BETAS
    smooth_controls: tuple[str, ...] = ("smooth(0.1)",)

    def __post_init__(self) -> None:
        super().__post_init__()
        from odecheck.core.validation import check_float
        from odecheck.engine.init import as_init

        object.__setattr__(self, "betas", tuple(check_float("betas", b, minimum=0.0) for b in self.betas))
        object.__setattr__(self, "smooth_controls", tuple(self.smooth_controls))
        for c in self.smooth_controls:
            as_init(c)
        if not self.betas and not self.smooth_controls:
            raise invalid("betas", [], "at least one cell (a beta or a smooth control)")

    def cells(self) -> list[tuple[str, float, str]]:
        """(init, beta, expected regime) per cell."""
        return [(self.init, b, iid_regime(b)) for b in self.betas] + [(c, 1.0, "stable") for c in self.smooth_controls]


def init_scaling_experiment(cfg: InitScalingConfig, progress: Advance = no_progress) -> Evidence:
    depths, R, q = list(cfg.depths), cfg.ensemble, cfg.dim
    x = torch.randn(cfg.samples, q, generator=member_generator(cfg.seed + 77, 0))
    cells = cfg.cells()
    level = 1 - cfg.alpha / len(cells)  # Bonferroni over the cells
    rows = []
    for j, (init, beta, expect) in enumerate(cells):
        vals = []
        for L in depths:
            net = ResNet(block="res1", depth=L, dim=q, activation=cfg.activation, beta=beta, init=init, ensemble=R,
                         seed=cfg.seed + L, device=cfg.device)
            fwd, _ = init_ratios(net, x.to(net.device))
            vals.append(fwd)
        vals = np.array(vals)
        if np.all(np.isfinite(vals)):
            fit = scaling_exponent(depths, np.maximum(vals, 1e-300), level=level, seed=cfg.seed + j)
            call, slope, ci = cell_decision(fit.ci, expect), fit.estimate, fit.ci
        else:  # the forward signal overflowed: it exploded, whatever the slope before that
            call = "ok" if expect == "explodes" else "contradicts"
            slope, ci = float("nan"), (float("nan"), float("nan"))
        rows.append({"init": init, "beta": beta, "expected": expect, "slope": slope, "ci": ci,
                     "values": vals, "ok": call == "ok", "contradicts": call == "contradicts",
                     "overflow": not np.all(np.isfinite(vals))})
        progress((j + 1) / len(cells))
    # estimate of the critical beta of iid weights: in the identity regime the ratio ~ L^(1/2 - beta)
    ident = [r for r in rows if r["expected"] == "identity" and not r["overflow"]]
    if ident:
        crit = float(np.mean([r["beta"] + r["slope"] for r in ident]))
        crit_ci = (float(np.mean([r["beta"] + r["ci"][0] for r in ident])),
                   float(np.mean([r["beta"] + r["ci"][1] for r in ident])))
    else:  # no identity cell among those run: nothing to estimate the critical beta from
        crit, crit_ci = float("nan"), (float("nan"), float("nan"))
    verdict = "confirmed" if all(r["ok"] for r in rows) else (
        "refuted" if any(r["contradicts"] for r in rows) else "inconclusive")
    return Evidence(verdict=verdict, estimate=crit, ci=crit_ci, n=len(cells) * len(depths) * R, figure="cells",
                    details={"depths": depths, "ensemble": R, "block": "res1", "activation": cfg.activation,
                             "cells": rows, "flat_band": FLAT,
                             "statistic": "||h_L - h_0|| / ||h_0|| at init; estimate: critical beta"})


INIT_SCALING = Claim(
    id="init-scaling-regimes",
    statement="At init with iid weights ||h_L - h_0||/||h_0|| -> 0 for beta > 1/2, explodes for beta < 1/2, stays "
              "Theta(1) at beta = 1/2; smooth weights are stable at beta = 1.",
    source="[M25]",
    scope={"block": ["res1", "mlp"], "init": ["iid", "smooth", "fbm"], "activation": "Lipschitz"},
    expected="confirmed", alpha=ALPHA,
    decision="per (init, beta) cell the log-log slope of the ratio in L with a Bonferroni Student-t interval over members "
             f"(level 1 - 0.05/5): explodes = interval above {FLAT}, identity = below -{FLAT}, stable = inside "
             f"(-{FLAT}, {FLAT}) (half the smallest predicted |1/2 - beta|); confirmed if every cell matches",
    presets={"quick": InitScalingConfig(depths=(64, 128, 256, 512), ensemble=8), "standard": InitScalingConfig(),
             "thorough": InitScalingConfig(depths=(64, 128, 256, 512, 1024, 2048, 4096), ensemble=32)},
    experiment=init_scaling_experiment)
