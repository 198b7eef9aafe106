"""[C21] (Cohen et al., ICML 2021), sec. 4: scaling and regularity of weights trained by Adam."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odecheck.analysis.estimators import max_norm
from odecheck.analysis.estimators.decisions import ALPHA, rough_decision
from odecheck.experiments.reproduce.base import Reproduction, Result, by_depth, cell_weights, slope, smoothness_verdict
from odecheck.presentation.plot import depth_ticks, pyplot, save


# ----------------------------------------------------------------------------- c21-beta
def c21_depths(lo: int = 3, hi: int = 1000, base: float = 1.2) -> list[int]:
    """[C21]'s depth grid: the distinct floor(base^n) in [lo, hi]."""
    out, n = [], 0
    while (L := int(np.floor(base ** n))) <= hi:
        if L >= lo and L not in out:
            out.append(L)
        n += 1
    return out


C21_BETA = {"smoke": {"depths": [4, 8, 16, 32], "steps": 60, "ensemble": 4, "n": {"c21": 256, "digits": 256}},
            "paper": {"depths": c21_depths(), "steps": 1000, "ensemble": 4, "n": {"c21": 1024, "digits": 1347}}}
C21_TASKS = ("c21", "digits")
C21_ACTIVATIONS = ("tanh", "relu")
C21_PAPER = {"beta-max-norm": "beta from max_k ||A_k|| ~ L^-beta depends on the activation ([C21]'s values are not "
                              "stored with odecheck: measured, not compared)",
             "beta-update": "not in [C21]: the same exponent for the change A_k(T) - A_k(0) that training made",
             "increment-slope": "no neural-ODE scaling: increments do not shrink like 1/L",
             "hurst": "k -> A_k is not smooth (an SDE-like regime or neither)",
             "update-hurst": "not in [C21]: the regularity in k of what training changed, A_k(T) - A_k(0)"}


def _c21_beta_spec(scale: str) -> dict:
    p = C21_BETA[scale]
    return {"model": {"block": "single", "dim": 10, "activation": "tanh", "init": "iid", "beta": 1.0,
                      "io_init": "identity", "train_io": False, "ensemble": p["ensemble"], "seed": 0},
            "data": {"task": "c21", "n": p["n"]["c21"], "seed": 0},
            "train": {"method": "adam", "steps": p["steps"], "lr": 1e-3, "batch_size": 32, "loss": "mse",
                      "snapshots": [0, p["steps"]], "checkpoint_every": max(1, p["steps"] // 4)},
            "sweep": {"zip": [{"data.task": list(C21_TASKS), "data.n": [p["n"][t] for t in C21_TASKS],
                               "model.dim": [10, 64], "model.io_init": ["identity", "gaussian"],
                               "model.train_io": [False, True], "train.loss": ["mse", "cross_entropy"]}],
                      "model.activation": list(C21_ACTIVATIONS), "model.depth": p["depths"]}}


def _c21_norms(out: Path, sub) -> tuple[np.ndarray, np.ndarray]:
    """(D, R) max_k ||W_k||_F of the trained weights and of the change W_k(T) - W_k(0), per depth."""
    norms, updates = [], []
    for L in sorted(sub["model.depth"].unique()):
        w = cell_weights(out, sub[sub["model.depth"] == L]["cell"].iloc[0], keys=("final/W", "step0/W"))
        W, W0 = w["final/W"].astype(np.float64), w["step0/W"].astype(np.float64)
        norms.append([max_norm(W[r]) for r in range(W.shape[0])])
        updates.append([max_norm(W[r] - W0[r]) for r in range(W.shape[0])])
    return np.array(norms, dtype=float), np.array(updates, dtype=float)


def _c21_update_regularity(out: Path, cell: str, L: int) -> list:
    """The calibrated regime decision of k -> (W_k(T) - W_k(0), b_k(T) - b_k(0)) per network."""
    from odecheck.analysis.estimators import classify_regime

    w = cell_weights(out, cell, keys=("final/W", "step0/W", "final/b", "step0/b"))
    dW = w["final/W"].astype(np.float64) - w["step0/W"]
    db = w["final/b"].astype(np.float64) - w["step0/b"]
    return [classify_regime(np.concatenate([dW[r].reshape(L, -1), db[r].reshape(L, -1)], axis=1), seed=0)
            for r in range(dW.shape[0])]


def _c21_beta_analyse(df, out: Path, spec: dict):
    from odecheck.analysis.estimators.decisions import median_interval

    results, data = [], {"panels": []}
    nan2 = (float("nan"),) * 2
    for task in C21_TASKS:
        for act in C21_ACTIVATIONS:
            sub = df[(df["data.task"] == task) & (df["model.activation"] == act)]
            tag = f"{task}-{act}"
            if set(sub["status"]) != {"done"}:
                results += [Result(f"{tag}-{k}", "diverged", float("nan"), nan2, p,
                                   note=f"{int((sub['status'] != 'done').sum())} rows not done")
                            for k, p in C21_PAPER.items()]
                continue
            depths, inc = by_depth(sub, "max_increment")
            norms, updates = _c21_norms(out, sub)
            fits = {k: slope(depths, v) for k, v in (("beta-max-norm", norms), ("beta-update", updates),
                                                       ("increment-slope", inc))}
            for k in ("beta-max-norm", "beta-update"):  # beta = -slope: the interval negated and reversed
                f = fits[k]
                results.append(Result(f"{tag}-{k}", "measured", -f.estimate, (-f.ci[1], -f.ci[0]), C21_PAPER[k],
                                      note=f"-slope of log max_k ||{'W_k' if k == 'beta-max-norm' else 'W_k(T) - W_k(0)'}"
                                           f"|| on log L, members-t interval over {norms.shape[1]} networks"))
            f = fits["increment-slope"]
            results.append(Result(f"{tag}-increment-slope", rough_decision(f), f.estimate, f.ci,
                                  C21_PAPER["increment-slope"],
                                  note="slope of log max_k ||W_{k+1} - W_k|| (trained weights) on log L; confirmed if "
                                       "the interval lies above -0.85, as iid-init-rough decides"))
            deepest = sub[sub["model.depth"] == max(depths)].sort_values("member")
            hurst = deepest["hurst"].to_numpy(dtype=float)
            regimes = list(deepest["regime"])
            results.append(Result(f"{tag}-hurst", smoothness_verdict(regimes, smooth_expected=False),
                                  float(np.median(hurst)), median_interval(hurst, ALPHA), C21_PAPER["hurst"],
                                  note=f"Hurst exponent of k -> (W_k, b_k) at L = {max(depths)} (median, "
                                       f"distribution-free interval) and the calibrated regime per network: {regimes}"))
            upd = _c21_update_regularity(out, deepest["cell"].iloc[0], max(depths))
            uh = np.array([d.hurst.estimate for d in upd])
            results.append(Result(f"{tag}-update-hurst", "measured", float(np.median(uh)), median_interval(uh, ALPHA),
                                  C21_PAPER["update-hurst"],
                                  note=f"Hurst exponent of k -> (W_k(T) - W_k(0), b_k(T) - b_k(0)) at L = {max(depths)} "
                                       f"(median, distribution-free interval); regime per network: "
                                       f"{[d.regime for d in upd]}"))
            data["panels"].append({"task": task, "activation": act, "depths": depths, "norms": norms,
                                   "updates": updates, "increments": inc,
                                   "slopes": {k: fits[k].estimate for k in fits}})
    return results, data


def _c21_beta_figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    stats = (("norms", "max_k ||W_k||"), ("updates", "max_k ||W_k(T) - W_k(0)||"),
             ("increments", "max_k ||W_k+1 - W_k||"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, pnl in enumerate(data["panels"]):
        L = np.array(pnl["depths"], dtype=float)
        for ax, (key, label) in zip(axes, stats, strict=True):
            med = np.median(pnl[key], axis=1)
            fitted = pnl["slopes"][{"norms": "beta-max-norm", "updates": "beta-update",
                                    "increments": "increment-slope"}[key]]
            ax.loglog(L, med, "o-" if pnl["task"] == "c21" else "s--", ms=3, color=f"C{i}",
                      label=f"{pnl['task']}, {pnl['activation']}: slope {fitted:.2f}")
            ax.set_ylabel(label)
    for ax in axes:
        ax.set_xlabel("depth L")
        depth_ticks(ax, data["panels"][0]["depths"])
        ax.legend(fontsize=6)
    axes[2].set_title("neural-ODE scaling would be slope -1; [C21]: it is not", fontsize=8)
    return save(fig, path, title)




C21_BETA_REPRODUCTION = Reproduction("c21-beta", "[C21] sec. 4", "single-layer blocks (iid init, delta = 1/L) trained by Adam "
                             "on [C21]'s synthetic task and on the digits: scaling exponents of the trained weights and "
                             "their regularity in k, for tanh and relu", _c21_beta_spec, _c21_beta_analyse,
                             _c21_beta_figure)
