"""The depth law of the learning rate ([W26], [AM25]) as practitioners draw it: log eta against log L_eff, one line
per parametrization, with the slope lines -3/2 (the law) and 0 (transfer), from claim 13's experiment: the largest
stable base learning rate (bisection per seed) under the residual-aware initialization, CompleteP and the standard
parametrization, on mlp and res1 blocks.

References
----------
[W26] arXiv 2602.07494.  [AM25] arXiv 2510.04327.  [CP25] arXiv 2505.01618.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from odecheck.analysis.estimators.decisions import ALPHA, law_call, transfer_call
from odecheck.core._io import atomic_write
from odecheck.core.events import report
from odecheck.experiments.reproduce.base import Reproduction, Result, study_folder
from odecheck.presentation.plot import depth_ticks, pyplot, save

LAW = {"smoke": {"depths": [4, 8, 16], "ensemble": 3, "steps": 20, "blocks": ["mlp"]},
       "paper": {"depths": [4, 8, 16, 32, 64, 128], "ensemble": 12, "steps": 50, "blocks": ["mlp", "res1", "conv"]}}
SHAPES = {"conv": {"dim": 64, "width": 4}}  # a block's own state shape: conv's 4 channels on 4 x 4 maps
NAMES = ("residual-aware", "completep", "standard")
PUBLISHED = {"residual-aware": "-3/2 ([W26], [AM25])", "completep": "0 ([CP25], Adam; SGD rule second-hand)",
             "standard": "not stated (measured)"}


def _spec(scale: str) -> dict:
    return dict(LAW[scale])


def run_law(settings: dict, folder: Path, *, device: str = "cpu", progress=None):
    """Every (block, parametrization, depth) of ``settings``: the seeds' largest stable log2 lr, written to
    ``folder/runs/`` as each finishes (a rerun reuses them). A table, one row per seed."""
    import pandas as pd

    from odecheck.core._errors import invalid
    from odecheck.experiments.claims.lr_law import LawConfig, effective_depth, max_stable_log2_lr

    if device != "cpu":
        raise invalid("device", device, "'cpu': lr-depth-law runs in process on the CPU")
    folder = study_folder(folder, settings, "lr-depth-law")
    jobs = [(b, n, L) for b in settings["blocks"] for n in NAMES for L in settings["depths"]]
    rows = []
    for i, (block, name, L) in enumerate(jobs):
        path = folder / "runs" / f"{block}-{name}-{L:05d}.json"
        if path.exists():
            recs = json.loads(path.read_text())
        else:
            cfg = LawConfig(block=block, depths=tuple(settings["depths"]), ensemble=settings["ensemble"],
                            lazy_members=2, steps=settings["steps"], controls=(), **SHAPES.get(block, {}))
            edge = max_stable_log2_lr(cfg, L, name)
            recs = [{"block": block, "parametrization": name, "depth": L, "effective_depth": effective_depth(L),
                     "member": r, "status": "done", "log2_max_stable_lr": None if np.isnan(e) else float(e)}
                    for r, e in enumerate(edge)]
            atomic_write(path, lambda f, r=recs: f.write(json.dumps(r).encode()))
        rows += recs
        report(progress, "reproduce", i + 1, len(jobs), f"{block}, {name}, L = {L}", "done", recs)
    return pd.DataFrame(rows)


def _analyse(df, out: Path, spec: dict):
    from odecheck.experiments.claims.lr_law import LAW_SLOPE, edge_fit

    results, lines = [], []
    level = 1 - ALPHA / 2
    for block in spec["blocks"]:
        for name in NAMES:
            sub = df[(df["block"] == block) & (df["parametrization"] == name)]
            Leff = sorted(int(x) for x in sub["effective_depth"].unique())
            E = np.array([sub[sub["effective_depth"] == L].sort_values("member")["log2_max_stable_lr"]
                          .to_numpy(dtype=float) for L in Leff])
            fit = edge_fit(Leff, E, level, 0)
            band = 1.0 / (2.0 * np.log2(Leff[-1] / Leff[0]))
            if fit["declined"]:
                verdict = "inconclusive"
            elif name == "residual-aware":
                verdict = law_call(fit["ci"], LAW_SLOPE, band)
            elif name == "completep":
                verdict = {"transfers": "confirmed", "drifts": "refuted", "inconclusive": "inconclusive"}[
                    transfer_call(fit["ci"], band)]
            else:
                verdict = "inconclusive"  # nothing published to compare with: the slope is reported
            results.append(Result(f"{block}-{name}", verdict, fit["slope"], fit["ci"], PUBLISHED[name], alpha=ALPHA / 2,
                                  note=(fit["declined"] or f"d log eta_max / d log L_eff over L_eff {Leff[0]}..{Leff[-1]}, "
                                        f"band +-{band:.3f}") + f"; {block} blocks, full-batch SGD, {spec['steps']} steps"))
            lines.append({"block": block, "name": name, "Leff": Leff, "E": E, **fit})
    return results, {"lines": lines}


def _figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    blocks = sorted({ln["block"] for ln in data["lines"]})
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.5 * len(blocks), 4), squeeze=False)
    for ax, block in zip(axes[0], blocks, strict=True):
        for j, ln in enumerate(x for x in data["lines"] if x["block"] == block):
            L, E = np.asarray(ln["Leff"], float), np.asarray(ln["E"], float)
            ok = ~np.isnan(E).any(axis=1)
            if ok.any():
                ax.plot(L[ok], np.exp2(np.nanmean(E[ok], axis=1)), "o-", color=f"C{j}",
                        label=f"{ln['name']}: slope {ln['slope']:.2f}" if ln["declined"] is None else ln["name"])
        anchor = [ln for ln in data["lines"] if ln["block"] == block and ln["name"] == "residual-aware"][0]
        L0 = float(anchor["Leff"][0])
        y0 = float(np.exp2(np.nanmean(anchor["E"][0])))
        xs = np.geomspace(L0, float(anchor["Leff"][-1]), 20)
        ax.plot(xs, y0 * (xs / L0) ** -1.5, ":", color="k", lw=1, label="slope -3/2 (the law)")
        ax.plot(xs, y0 * (xs / L0) ** 0.0, "--", color="0.5", lw=1, label="slope 0 (transfer)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        depth_ticks(ax, anchor["Leff"])
        ax.set_xlabel("effective depth L_eff = L + 2")
        ax.set_ylabel("largest stable base lr")
        ax.set_title(f"{block} blocks", fontsize=9)
        ax.legend(fontsize=7)
    return save(fig, path, title)


LR_LAW_REPRODUCTION = Reproduction(
    "lr-depth-law", "[W26] TL;DR, [AM25] abstract (the -3/2 law; bodies not read)",
    "the largest stable base learning rate of full-batch SGD against the effective depth under the residual-aware "
    "initialization, CompleteP and the standard parametrization, with the slope lines -3/2 and 0",
    _spec, _analyse, _figure, run=run_law)
