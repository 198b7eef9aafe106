"""Claim init-scaling-regimes: signal propagation at initialization as a function of beta.

References
----------
[M25] Marion, Fermanian, Biau, Vert. Scaling ResNets in the large-depth regime. JMLR 2025.
"""

from __future__ import annotations

import numpy as np
import torch

from ..estimators import init_ratios, scaling_exponent
from ..init import member_generator
from ..models import ResNet
from .base import Claim, Context

ALPHA = 0.05
CRITICAL_IID = 0.5  # iid weights: ||h_L - h_0|| / ||h_0|| ~ L^(1/2 - beta) [M25]
BETAS = (0.25, 0.5, 0.75, 1.0)
# |slope| below FLAT counts as Theta(1): half the smallest predicted |1/2 - beta| among the
# non-critical betas tested, so that no predicted slope lies inside the band (0.125)
FLAT = 0.5 * min(abs(b - CRITICAL_IID) for b in BETAS if b != CRITICAL_IID)


def iid_regime(beta: float) -> str:
    """The [M25] prediction for iid weights at residual scaling L^-beta."""
    if beta < CRITICAL_IID:
        return "explodes"
    return "stable" if beta == CRITICAL_IID else "identity"


def cell_decision(ci: tuple[float, float], expect: str) -> str:
    """'ok' if the slope interval shows the expected regime, 'contradicts' if it excludes it,
    else 'unresolved' (explodes: slope > FLAT; identity: slope < -FLAT; stable: |slope| < FLAT)."""
    lo, hi = ci
    if expect == "explodes":
        return "ok" if lo > FLAT else ("contradicts" if hi < FLAT else "unresolved")
    if expect == "identity":
        return "ok" if hi < -FLAT else ("contradicts" if lo > -FLAT else "unresolved")
    return "ok" if (lo > -FLAT and hi < FLAT) else ("contradicts" if (hi < -FLAT or lo > FLAT) else "unresolved")


def init_scaling_experiment(ctx: Context) -> dict:
    depths = ctx.pick([64, 128, 256, 512], [64, 128, 256, 512, 1024], [64, 128, 256, 512, 1024, 2048, 4096])
    R = ctx.pick(8, 16, 32)
    q = 16
    x = torch.randn(32, q, generator=member_generator(ctx.seed + 77, 0))
    cells = [("iid", b, iid_regime(b)) for b in BETAS] + [("smooth(0.1)", 1.0, "stable")]
    level = 1 - ALPHA / len(cells)  # Bonferroni over the cells
    rows = []
    for j, (init, beta, expect) in enumerate(cells):
        vals = []
        for L in depths:
            net = ResNet(block="res1", depth=L, dim=q, activation="tanh", beta=beta, init=init, ensemble=R,
                         seed=ctx.seed + L, device=ctx.device)
            fwd, _ = init_ratios(net, x.to(net.device))
            vals.append(fwd)
        vals = np.array(vals)
        fit = scaling_exponent(depths, vals, level=level, seed=ctx.seed + j)
        call = cell_decision(fit.ci, expect)
        ok, bad = call == "ok", call == "contradicts"
        rows.append({"init": init, "beta": beta, "expected": expect, "slope": fit.estimate, "ci": fit.ci,
                     "values": vals, "ok": ok, "contradicts": bad})
        ctx.advance((j + 1) / len(cells))
    # estimate of the critical beta of iid weights: in the identity regime the ratio ~ L^(1/2 - beta)
    ident = [r for r in rows if r["expected"] == "identity"]
    crit = float(np.mean([r["beta"] + r["slope"] for r in ident]))
    crit_ci = (float(np.mean([r["beta"] + r["ci"][0] for r in ident])),
               float(np.mean([r["beta"] + r["ci"][1] for r in ident])))
    verdict = "confirmed" if all(r["ok"] for r in rows) else (
        "refuted" if any(r["contradicts"] for r in rows) else "inconclusive")
    return {"verdict": verdict, "estimate": crit, "ci": crit_ci, "n": len(cells) * len(depths) * R,
            "details": {"depths": depths, "ensemble": R, "block": "res1", "activation": "tanh", "cells": rows,
                        "flat_band": FLAT, "statistic": "||h_L - h_0|| / ||h_0|| at init; estimate: critical beta",
                        "plot": "cells"}}


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
    experiment=init_scaling_experiment)
