"""[M25] (Marion et al., JMLR 2025): Figs. 1 and 3 (signal propagation at initialization) and Fig. 7
(the phase diagram of fbm inits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odecheck.analysis.estimators.decisions import ALPHA, cell_decision, iid_regime
from odecheck.experiments.reproduce.base import Reproduction, Result, by_depth, slope
from odecheck.presentation.plot import depth_ticks, pyplot, save

# ----------------------------------------------------------------------------- m25-init
# [M25]'s networks have width 40 and weights of variance 1/width (its public code: iid entries uniform on
# +-sqrt(3/width), fbm increments divided by sqrt(width)): init_scale 1/sqrt(40).
M25_WIDTH = 40
M25_INIT_SCALE = 1 / np.sqrt(M25_WIDTH)
M25_INIT = {"smoke": {"depths": [10, 20, 50, 100], "draws": 16},
            "paper": {"depths": [10, 20, 50, 100, 200, 500, 1000], "draws": 50}}
M25_BETAS = (0.25, 0.5, 1.0)
# [M25]'s regimes of the ratio for iid weights: the mean square grows like (1 + c L^(-2 beta))^L, so it
# explodes faster than any power below beta = 1/2 (exp(c L^(1 - 2 beta))), stays Theta(1) at 1/2, and
# falls like L^(1/2 - beta) above.
M25_LAW = {"explodes": "explodes (like exp(c L^(1 - 2 beta)), faster than any power)", "stable": "stable, Theta(1)",
           "identity": "identity, -> 0 like L^{e:g}"}


def _m25_init_spec(scale: str) -> dict:
    p = M25_INIT[scale]
    return {"model": {"block": "res1", "dim": M25_WIDTH, "width": M25_WIDTH, "activation": "relu", "init": "iid",
                      "init_scale": M25_INIT_SCALE, "ensemble": p["draws"], "seed": 0, "dtype": "float64"},
            "data": {"task": "gaussian", "n": 64, "seed": 0},
            "train": {"method": "gradient_flow", "steps": 0, "lr": 1e-2, "snapshots": []},
            "sweep": {"model.beta": list(M25_BETAS), "model.depth": p["depths"], "save_weights": False}}


def _cell_slope(depths, V, expect, level):
    """The init-scaling cell rule of the claim: slope of the ratio in L, or overflow = explosion."""
    if not np.all(np.isfinite(V)):
        return ("confirmed" if expect == "explodes" else "refuted"), float("inf"), (float("nan"),) * 2
    f = slope(depths, np.maximum(V, 1e-300), level=level)
    call = cell_decision(f.ci, expect)
    return {"ok": "confirmed", "contradicts": "refuted", "unresolved": "inconclusive"}[call], f.estimate, f.ci


def _m25_init_analyse(df, out: Path, spec: dict):
    level = 1 - ALPHA / (2 * len(M25_BETAS))  # Bonferroni over the six cells
    results, data = [], {"cells": []}
    for beta in M25_BETAS:
        sub = df[df["model.beta"] == beta]
        expect = iid_regime(beta)
        for col, what in (("init_ratio", "output"), ("init_grad_ratio", "gradient")):
            depths, V = by_depth(sub, col)
            verdict, est, ci = _cell_slope(depths, V, expect, level)
            results.append(Result(f"{what}-beta-{beta:g}", verdict, est, ci, M25_LAW[expect].format(e=0.5 - beta),
                                  alpha=ALPHA, note=f"slope of the {what} ratio in L; Bonferroni level {level:.4f}"))
            data["cells"].append({"beta": beta, "what": what, "depths": depths, "values": V, "slope": est,
                                  "expected": expect})
    return results, data


def _m25_init_figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, what in zip(axes, ("output", "gradient"), strict=True):
        for i, c in enumerate(x for x in data["cells"] if x["what"] == what):
            L = np.array(c["depths"], dtype=float)
            V = np.asarray(c["values"], dtype=float)
            with np.errstate(all="ignore"):
                med = np.median(np.log(np.where(np.isfinite(V), V, np.nan)), axis=1)
            ax.loglog(L, np.exp(med), "o-", color=f"C{i}", label=f"beta={c['beta']:g}: ours (median of draws)")
            if c["expected"] != "explodes":  # a power law (L^0 when stable); explosion is faster than any power
                ax.loglog(L, np.exp(med[0]) * (L / L[0]) ** (0.5 - c["beta"]), "--", color=f"C{i}", alpha=0.6,
                          label=f"paper: {c['expected']}, L^(1/2-beta)")
        ax.set_xlabel("depth L")
        depth_ticks(ax, data["cells"][0]["depths"])
        ax.set_ylabel("||h_L - h_0|| / ||h_0||" if what == "output" else "||g_0 - g_L|| / ||g_L||")
        ax.legend(fontsize=6)
    return save(fig, path, title)


# ----------------------------------------------------------------------------- m25-phase
M25_PHASE = {"smoke": {"betas": list(np.round(np.linspace(0.0, 1.3, 6), 4)),
                       "hursts": list(np.round(np.linspace(0.1, 0.9, 5), 4)), "draws": 4, "depth": 200},
             "paper": {"betas": list(np.round(np.linspace(0.0, 1.3, 70), 4)),
                       "hursts": list(np.round(np.linspace(0.05, 0.97, 51), 4)), "draws": 50, "depth": 1000}}
# The boundary's slope in H: 1 by [M25] (beta* = H); 0 if the init's regularity did not matter (the iid
# boundary beta* = 1/2 for every H). The band reaches halfway to that alternative: 1 +- 0.5.
SLOPE_M25, SLOPE_IID = 1.0, 0.0
BOUNDARY_BAND = abs(SLOPE_M25 - SLOPE_IID) / 2


def _m25_phase_spec(scale: str) -> dict:
    p = M25_PHASE[scale]
    return {"model": {"block": "res1", "dim": M25_WIDTH, "width": M25_WIDTH, "activation": "relu",
                      "depth": p["depth"], "init_scale": M25_INIT_SCALE, "ensemble": p["draws"], "seed": 0,
                      "dtype": "float64"},
            "data": {"task": "gaussian", "n": 16, "seed": 0},
            "train": {"method": "gradient_flow", "steps": 0, "lr": 1e-2, "snapshots": []},
            "sweep": {"model.init": [f"fbm({h:g})" for h in p["hursts"]], "model.beta": [float(b) for b in p["betas"]],
                      "save_weights": False}}


def median_log_ratio(ratios) -> float:
    """The phase diagram's colour for one cell: the median over its networks of log10 ||h_L - h_0|| /
    ||h_0|| (a diverged network, a non-finite ratio, counts as 1e300), clipped to [-1, 1]."""
    v = np.asarray(ratios, dtype=float)
    with np.errstate(all="ignore"):
        return float(np.clip(np.median(np.log10(np.where(np.isfinite(v), v, 1e300))), -1, 1))


def boundary_crossing(betas, row) -> float:
    """The stability boundary of one H row: the first beta where the median log10 ratio ``row``
    (one value per beta, increasing betas) goes from >= 0 to < 0, linearly interpolated; NaN if
    it never does."""
    for j in range(len(betas) - 1):
        if row[j] >= 0 > row[j + 1]:
            return float(betas[j] + (betas[j + 1] - betas[j]) * row[j] / (row[j] - row[j + 1]))
    return float("nan")


def _m25_phase_analyse(df, out: Path, spec: dict):
    inits = spec["sweep"]["model.init"]
    betas = np.array(spec["sweep"]["model.beta"], dtype=float)
    hursts = np.array([float(i[4:-1]) for i in inits])
    grid = np.full((len(hursts), len(betas)), np.nan)
    for i, init in enumerate(inits):
        for j, b in enumerate(betas):
            grid[i, j] = median_log_ratio(df[(df["model.init"] == init) & (df["model.beta"] == b)]["init_ratio"])
    crossing = np.array([boundary_crossing(betas, grid[i]) for i in range(len(hursts))])
    ok = np.isfinite(crossing)
    if ok.sum() < 3:
        res = Result("boundary-slope", "inconclusive", float("nan"), (float("nan"),) * 2, "1 (boundary beta = H)",
                     note=f"the ratio crossed 1 in only {int(ok.sum())} of {len(hursts)} rows")
        return [res], {"grid": grid, "betas": betas, "hursts": hursts, "crossing": crossing}
    from scipy import stats

    reg = stats.linregress(hursts[ok], crossing[ok])
    dof = int(ok.sum()) - 2
    h = stats.t.ppf(1 - ALPHA / 2, dof) * reg.stderr
    lo, hi = reg.slope - h, reg.slope + h
    verdict = ("confirmed" if (1 - BOUNDARY_BAND < lo and hi < 1 + BOUNDARY_BAND)
               else "refuted" if (hi < 1 - BOUNDARY_BAND or lo > 1 + BOUNDARY_BAND) else "inconclusive")
    res = Result("boundary-slope", verdict, reg.slope, (lo, hi), "1 (boundary beta = H)",
                 note=f"OLS slope of the crossing beta*(H) on H with a Student-t interval ({dof} df); confirmed if "
                      f"it lies inside 1 +- {BOUNDARY_BAND}. Intercept {reg.intercept:.3f} (the paper's beta = H: 0); "
                      f"weights of variance 1/width as in [M25]")
    return [res], {"grid": grid, "betas": betas, "hursts": hursts, "crossing": crossing,
                   "fit": (reg.slope, reg.intercept)}


def _m25_phase_figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    b, H = data["betas"], data["hursts"]
    im = ax.pcolormesh(b, H, data["grid"], cmap="coolwarm", vmin=-1, vmax=1, shading="nearest")
    fig.colorbar(im, ax=ax, label="log10 ||h_L - h_0|| / ||h_0|| (clipped)")
    ax.plot(H, H, "k--", label="paper [M25 Fig. 7]: beta = H")
    ok = np.isfinite(data["crossing"])
    ax.plot(data["crossing"][ok], H[ok], "ko", ms=3, label="ours: crossing of 1")
    if "fit" in data:
        s, c = data["fit"]
        ax.plot(c + s * H, H, "k-", alpha=0.6, label=f"fitted beta* = {c:.2f} + {s:.2f} H")
    ax.set_xlabel("beta")
    ax.set_ylabel("Hurst index H of the init")
    ax.set_xlim(b.min(), b.max())
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path, title)




M25_REPRODUCTIONS = (
    Reproduction("m25-init", "[M25] Figs. 1 and 3", "iid init, relu: explosion (beta < 1/2), stability "
                             "(1/2), identity (> 1/2) of the output and the gradient", _m25_init_spec,
                             _m25_init_analyse, _m25_init_figure),
    Reproduction("m25-phase", "[M25] Fig. 7", "fbm init with Hurst H: the stability boundary is "
                              "beta = H", _m25_phase_spec, _m25_phase_analyse, _m25_phase_figure),
)
