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
FLAT = 0.15  # |slope| below this counts as Theta(1)


def init_scaling_experiment(ctx: Context) -> dict:
    depths = ctx.pick([64, 128, 256, 512], [64, 128, 256, 512, 1024], [64, 128, 256, 512, 1024, 2048, 4096])
    R = ctx.pick(8, 16, 32)
    q = 16
    x = torch.randn(32, q, generator=member_generator(ctx.seed + 77, 0))
    cells = [("iid", 0.25, "explodes"), ("iid", 0.5, "stable"), ("iid", 0.75, "identity"), ("iid", 1.0, "identity"),
             ("smooth(0.1)", 1.0, "stable")]
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
        lo, hi = fit.ci
        if expect == "explodes":
            ok, bad = lo > FLAT, hi < FLAT
        elif expect == "identity":
            ok, bad = hi < -FLAT, lo > -FLAT
        else:
            ok, bad = (lo > -FLAT and hi < FLAT), (hi < -FLAT or lo > FLAT)
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
             f"(-{FLAT}, {FLAT}); confirmed if every cell matches",
    experiment=init_scaling_experiment)
