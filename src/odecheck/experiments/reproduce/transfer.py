"""Depth-wise learning-rate transfer ([Y23], [B23], [CP25]): the figure everyone draws for it (final loss
against the learning rate, one curve per depth, one panel per parametrization) and claim 10's estimator on
each parametrization, run on ``sweep`` (one cell per parametrization x depth x learning rate, the seeds as
the ensemble; resumable, on Dask with ``--workers`` or ``--scheduler``).

The published calls: [CP25]'s GPT sweeps drift under the standard parametrization and alpha = 1/2 and
transfer at alpha = 1 (CompleteP); [Y23] and [B23] have Depth-muP (alpha = 1/2) transfer for one-layer
blocks and [Y23] finds no parametrization of this family fully optimal for blocks of two or more layers.
The mlp block here has two layers (``--variant res1``: one-layer blocks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odecheck.analysis.estimators.decisions import ALPHA
from odecheck.analysis.estimators.transfer import transfer_slope
from odecheck.experiments.parametrizations import PARAMETRIZATIONS, RUN_PARAMETRIZATIONS
from odecheck.experiments.reproduce.base import Reproduction, Result
from odecheck.presentation.plot import pyplot, save, transfer_axes

TRANSFER = {"smoke": {"depths": [4, 8, 16], "log2_lrs": [-4, -3, -2, -1, 0], "seeds": 4, "steps": 20, "n": 16,
                      "dim": 4, "width": 8},
            "paper": {"depths": [8, 16, 32, 64, 128, 256], "log2_lrs": list(range(-8, 3)), "seeds": 16, "steps": 100,
                      "n": 64, "dim": 8, "width": 16}}
# the published call per parametrization, for two-layer (mlp) and one-layer (res1) blocks
PUBLISHED = {"mlp": {"standard": "drifts", "depth-mup": "drifts", "completep": "transfers"},
             "res1": {"standard": "drifts", "depth-mup": "transfers", "completep": "transfers"}}
SOURCES = {"standard": "[CP25]", "depth-mup": "[CP25] (mlp), [Y23], [B23] (res1)", "completep": "[CP25]"}


# the digits through [C21]'s two random convolutions (25 features, one-hot targets padded to 25): identity io
# maps into d = 32
# (the paper scale: 128 digits, L = 8..64, 8 seeds, 2^-6..2^2, about 15 minutes on one core)
DIGITS = {"smoke": {"n": 64, "dim": 32, "width": 32},
          "paper": {"n": 128, "dim": 32, "width": 32, "depths": [8, 16, 32, 64], "seeds": 8,
                    "log2_lrs": list(range(-6, 3))}}


# one-layer blocks have wide loss basins (single seeds scatter by a grid step): twice the seeds at paper scale
BLOCK_SCALES = {"res1": {"smoke": {}, "paper": {"seeds": 32}}}


def _spec(scale: str, block: str = "mlp", task: str = "teacher") -> dict:
    p = {**TRANSFER[scale], **(DIGITS[scale] if task == "digits-conv25" else {}),
         **BLOCK_SCALES.get(block, {}).get(scale, {})}
    names = list(RUN_PARAMETRIZATIONS)
    return {"model": {"block": block, "dim": p["dim"], "width": p["width"], "activation": "gelu", "init": "iid",
                      "ensemble": p["seeds"], "seed": 0, "dtype": "float32"},
            "data": {"task": task, "n": p["n"], "seed": 0},
            "train": {"method": "adam", "steps": p["steps"], "lr": 1.0, "batch_size": p["n"], "snapshots": [],
                      "base_depth": p["depths"][0]},
            "sweep": {"model.depth": p["depths"], "train.lr": [float(2.0 ** x) for x in p["log2_lrs"]],
                      "zip": [{"train.parametrization": names,
                               "model.beta": [PARAMETRIZATIONS[n].alpha for n in names]}],
                      "save_weights": False}}


def _losses(df, name: str, depths, lrs) -> np.ndarray:
    """(depths, learning rates, seeds) final losses of one parametrization; a diverged run counts as NaN."""
    sub = df[df["train.parametrization"] == name]
    out = []
    for L in depths:
        row = []
        for lr in lrs:
            cell = sub[(sub["model.depth"] == L) & np.isclose(sub["train.lr"], lr)].sort_values("member")
            v = cell["final_loss"].to_numpy(dtype=float)
            row.append(np.where(cell["status"].to_numpy() == "done", v, np.nan))
        out.append(row)
    return np.array(out)


def _analyse(df, out: Path, spec: dict):
    depths = [int(L) for L in spec["sweep"]["model.depth"]]
    lrs = spec["sweep"]["train.lr"]
    log2_lrs = [float(np.log2(x)) for x in lrs]
    block = spec["model"]["block"]
    level = 1 - ALPHA
    results, panels = [], []
    for name in RUN_PARAMETRIZATIONS:
        V = _losses(df, name, depths, lrs)
        fit = transfer_slope(depths, log2_lrs, V, level=level)
        published = PUBLISHED[block][name]
        verdict = ("inconclusive" if fit.verdict == "inconclusive"
                   else "confirmed" if fit.verdict == published else "refuted")
        results.append(Result(f"{name}-drift", verdict, fit.slope, fit.ci, f"{published} ({SOURCES[name]})",
                              alpha=ALPHA, note=f"d log2 eta* / d log2 L, members-t over seeds: {fit.verdict}, "
                                                f"{fit.reason}; {block} blocks, Adam, base depth {depths[0]}"))
        panels.append({"name": name, "losses": V, "optimum": fit.optimum, "slope": fit.slope, "ci": fit.ci,
                       "band": fit.band, "call": fit.verdict})
    return results, {"depths": depths, "log2_lrs": log2_lrs, "panels": panels}


def _figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    panels = data["panels"]
    fig, axes = plt.subplots(len(panels), 2, figsize=(10.5, 3.6 * len(panels)), squeeze=False)
    for row, p in zip(axes, panels, strict=True):
        transfer_axes(row, data["depths"], data["log2_lrs"], p["losses"], p["optimum"], p["slope"], tuple(p["ci"]),
                      p["band"], label=f"{p['name']}: {p['call']}")
    return save(fig, path, title)


TRANSFER_REPRODUCTION = Reproduction(
    "depth-transfer", "[CP25] Fig. 1 style, [Y23], [B23]",
    "final loss against the Adam learning rate, one curve per depth, for the standard parametrization, Depth-muP "
    "and CompleteP (teacher task, two-layer mlp blocks); the drift of the optimal learning rate per "
    "parametrization", _spec, _analyse, _figure,
    variants={"res1": (lambda scale: _spec(scale, "res1"), "one-layer res1 blocks, where [Y23] and [B23] have "
                                                          "Depth-muP transfer"),
              "digits": (lambda scale: _spec(scale, task="digits-conv25"), "the digits through [C21]'s two random "
                                                                           "convolutions (25 features, MSE on one-hot "
                                                                           "targets), d = m = 32")})
