"""Figures from the tidy data of verdicts and analyses (matplotlib, imported lazily)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stem(name: str) -> str:
    """A file name from a path or file name: characters outside [A-Za-z0-9_.-] become _, at most 120."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


def save(fig, path: Path, title: str, *, fontsize: int = 10, dpi: int = 110) -> Path:
    """Title, lay out, write and close a figure; returns ``path``."""
    fig.suptitle(title.replace("$", r"\$"), fontsize=fontsize)  # tensor names are text, never mathtext
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _loglog(ax, depths, values, estimate, ci, intercept, label, reference: float = -1.0,
            points: str = "geometric mean over members"):
    depths = np.asarray(depths, dtype=float)
    V = np.asarray(values, dtype=float)
    if V.ndim == 1:
        V = V[:, None]
    for r in range(V.shape[1]):
        ax.scatter(depths, V[:, r], s=10, color="0.6", zorder=2)
    ax.plot(depths, np.exp(np.log(V).mean(1)), "o", color="C0", label=points, zorder=3)
    if estimate is not None and np.isfinite(estimate):
        xs = np.geomspace(depths.min(), depths.max(), 50)
        lo, hi = ci
        ax.plot(xs, np.exp(intercept) * xs**estimate, "-", color="C1",
                label=f"slope {estimate:.3f} [{lo:.3f}, {hi:.3f}]")
        ax.plot(xs, np.exp(intercept) * xs.min() ** estimate * (xs / xs.min()) ** reference, ":", color="k", lw=1,
                label=f"reference slope {reference:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    depth_ticks(ax, depths)
    ax.set_xlabel("depth L")
    ax.set_ylabel(label)
    ax.legend(fontsize=7)


MAX_DEPTH_TICKS = 10


def depth_ticks(ax, depths) -> None:
    """Label the depths on a log axis: all of them, or MAX_DEPTH_TICKS spread evenly over a longer
    grid (first and last included) so that labels do not overlap."""
    depths = sorted(depths)
    if len(depths) > MAX_DEPTH_TICKS:
        keep = np.unique(np.round(np.linspace(0, len(depths) - 1, MAX_DEPTH_TICKS)).astype(int))
        depths = [depths[i] for i in keep]
    ax.set_xticks([float(d) for d in depths])
    ax.set_xticklabels([str(int(d)) for d in depths])
    ax.minorticks_off()


def loglog_line(v: dict) -> tuple[float, float, tuple[float, float]]:
    """(slope, intercept, slope interval) of the fitted line a log-log verdict figure draws: the
    verdict's estimate, unless the estimate is not itself a slope (``line_slope`` in its details,
    e.g. beta_hat = -slope)."""
    d = v.get("details") or {}
    if "line_slope" in d:
        return d["line_slope"], d.get("intercept", 0.0), tuple(d["line_slope_ci"])
    return v["estimate"], d.get("intercept", 0.0), tuple(v["ci"])


def _further_block_panel(ax, fb: dict, reference: float) -> None:
    """A further block's largest stable lr against its depths, with its fit (slope and intercept as fitted)."""
    _loglog(ax, fb["depths"], fb["values"], fb["slope"], tuple(fb["ci"]), fb["intercept"],
            f"largest stable lr ({fb['block']})", reference=reference)


def _loglog_figure(plt, v: dict, d: dict):
    """The loglog verdict figure: the statistic against L with its fit; a second panel with one weight entry
    along depth (weight_entry) or the ensemble mean's bias (bias_values, mean-ode-rate)."""
    extra = "weight_entry" in d or "bias_values" in d or bool(d.get("further_blocks"))
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(10 if extra else 5.5, 4))
    axes = np.atleast_1d(axes)
    slope, intercept, slope_ci = loglog_line(v)
    _loglog(axes[0], d["depths"], d["values"], slope, slope_ci, intercept, d.get("ylabel", ""),
            reference=d.get("reference_slope", -1.0), points=d.get("points", "geometric mean over members"))
    if "bias_values" in d:  # mean-ode-rate: the ensemble mean's bias through consecutive depths
        b, bci = d["bias_slope"], tuple(d["bias_ci"])
        bv = np.asarray(d["bias_values"], dtype=float)
        bl = np.asarray(d["bias_depths"], dtype=float)
        icpt = float(np.log(bv).mean() - b * np.log(bl).mean()) if b is not None and np.isfinite(b) else 0.0
        _loglog(axes[1], bl, bv, b, bci, icpt, "RMS of E F(L) - E F(2L)", reference=-1.0,
                points="ensemble statistic")
    if d.get("further_blocks"):  # lr-depth-law: the next block's largest stable lr on its own grid
        _further_block_panel(axes[1], d["further_blocks"][0], d.get("reference_slope", -1.0))
        for ax in axes:
            ax.set_xlabel("L_eff = L + 2 (the blocks and the input and output maps)")
    if "weight_entry" in d:
        we = d["weight_entry"]
        for step, ys in sorted(we["by_step"].items(), key=lambda kv: int(kv[0])):
            ys = np.asarray(ys)
            axes[1].plot(np.arange(1, len(ys) + 1) / len(ys), ys, label=f"t = step {step}")
        axes[1].set_xlabel("layer index k / L")
        axes[1].set_ylabel("V_k[0, 0] (member 0)")
        axes[1].set_title(f"one weight entry, L = {we['depth']}", fontsize=9)
        axes[1].legend(fontsize=7)
    return fig


def _pl_figure(plt, v: dict, d: dict):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    t = np.asarray(d["time"])
    axes[0].plot(t, np.asarray(d["pl_ratio"]), color="C0", alpha=0.6)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("flow time t")
    axes[0].set_ylabel("PL ratio r(t)")
    axes[1].plot(t, np.asarray(d["loss"]), color="C1", alpha=0.6)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("flow time t")
    axes[1].set_ylabel("loss l(t)")
    return fig


def _cells_figure(plt, v: dict, d: dict):
    fig, ax = plt.subplots(figsize=(9.5, 4))
    for i, c in enumerate(d["cells"]):
        V = np.asarray(c["values"])
        label = c.get("label") or f"{c['init']}, beta={c['beta']}: slope {c['slope']:.2f} ({c['expected']})"
        ax.plot(d["depths"], np.exp(np.log(V).mean(1)), "o-", color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    depth_ticks(ax, d["depths"])
    ax.set_xlabel("depth L")
    ax.set_ylabel(d.get("ylabel", "||h_L - h_0|| / ||h_0|| at init"))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _transfer_figure(plt, v: dict, d: dict):
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    transfer_axes(axes, d["depths"], d["log2_lrs"], d["losses"], d["optimum"], v["estimate"], tuple(v["ci"]), d["band"])
    return fig


FIGURES = {"loglog": _loglog_figure, "pl": _pl_figure, "cells": _cells_figure, "transfer": _transfer_figure}


def verdict_figure(v: dict, path: Path) -> Path | None:
    """One PNG for a verdict (its JSON form). Returns the path, or None if there is nothing to draw."""
    d = v.get("details") or {}
    kind = d.get("plot")
    if kind not in FIGURES:
        return None
    fig = FIGURES[kind](pyplot(), v, d)
    save(fig, path, f"{v['id']}: {v['verdict']} (expected {v['expected']})")
    return path


def transfer_axes(axes, depths, log2_lrs, losses, optimum, slope, ci, band, label: str = "") -> None:
    """Claim 10's two panels: the final loss against the learning rate, one curve per depth (geometric mean
    over seeds, the optima marked), and eta*(L) against L with the fitted drift and the band of no drift."""
    depths = np.asarray(depths, dtype=float)
    x = np.asarray(log2_lrs, dtype=float)
    V = np.asarray(losses, dtype=float)  # (D, G, R)
    opt = np.asarray(optimum, dtype=float)  # (D, R)
    colors = pyplot().cm.viridis(np.linspace(0, 0.9, len(depths)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a learning rate where every seed diverged: NaN
        curves = np.exp(np.nanmean(np.log(np.where(np.isfinite(V) & (V > 0), V, np.nan)), axis=2))
    for d, L in enumerate(depths):
        axes[0].plot(x, curves[d], "o-", ms=3, color=colors[d], label=f"L = {int(L)}")
        o = np.nanmean(opt[d]) if np.isfinite(opt[d]).any() else np.nan
        if np.isfinite(o):
            axes[0].axvline(o, color=colors[d], lw=0.8, ls=":")
    axes[0].set_yscale("log")
    if np.isfinite(curves).any():  # diverging learning rates would squash the curves' bottoms
        axes[0].set_ylim(0.5 * np.nanmin(curves), 30 * np.nanmedian(curves))
    axes[0].set_xlabel("log2 learning rate")
    axes[0].set_ylabel("final loss (geometric mean over seeds)")
    axes[0].legend(fontsize=7)
    if label:
        axes[0].set_title(label, fontsize=9)
    for r in range(opt.shape[1]):
        axes[1].scatter(depths, opt[:, r], s=8, color="0.6", zorder=2)
    mean = np.array([np.nanmean(o) if np.isfinite(o).any() else np.nan for o in opt])
    axes[1].plot(depths, mean, "o", color="C0", label="eta*(L), mean over seeds", zorder=3)
    if np.isfinite(slope) and np.isfinite(mean).all():
        xs = np.log2(depths)
        c = mean.mean() - slope * xs.mean()
        axes[1].plot(depths, c + slope * xs, "-", color="C1", label=f"drift {slope:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
        mid = mean.mean()
        for b in (-band, band):
            axes[1].plot(depths, mid + b * (xs - xs.mean()), "--", color="k", lw=0.8)
        axes[1].plot([], [], "--", color="k", lw=0.8, label=f"no-drift band +-{band:.3g}")
    axes[1].set_xscale("log", base=2)
    depth_ticks(axes[1], depths)
    axes[1].set_xlabel("depth L")
    axes[1].set_ylabel("log2 eta*")
    axes[1].legend(fontsize=7)


def path_figures(rows: list[dict], folder: Path) -> list[Path]:
    """One PNG per analyzed path: ||Z_{k+1} - Z_k|| and ||Z_k|| against the layer index k."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    out = []
    for r in rows:
        if "increments" not in r or "norms" not in r:
            continue
        inc, norms = np.asarray(r["increments"], dtype=float), np.asarray(r["norms"], dtype=float)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].plot(np.arange(len(inc)), inc, "o-", ms=3)
        axes[0].set_xlabel("layer index k")
        axes[0].set_ylabel("||Z_k+1 - Z_k||_F")
        axes[1].plot(np.arange(len(norms)), norms, "o-", ms=3, color="C1")
        axes[1].set_xlabel("layer index k")
        axes[1].set_ylabel("||Z_k||_F")
        lo, hi = r["hurst_ci"]
        stem = _stem(r["name"])
        path = save(fig, folder / f"{len(out):03d}-{stem}.png",
                    f"{r['name']}: {r['regime']}, Hurst {r['hurst']:.2f} [{lo:.2f}, {hi:.2f}]", fontsize=9, dpi=100)
        out.append(path)
    return out


FAMILY_STATS = (("max_increment", "max_k ||Z_k+1 - Z_k||"), ("max_normalized_increment", "normalized max increment"),
                ("max_norm", "max_k ||Z_k||"))


def family_figures(rows: list[dict], scaling: list[dict], folder: Path) -> list[Path]:
    """One figure per family seen at several depths, in [C21]'s style: each statistic against the depth L,
    log-log, the fitted slope and the reference slopes -1, -1/2 and 0."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    out = []
    from odecheck.analysis.checkpoints import family_name

    for name in dict.fromkeys(s["name"] for s in scaling):
        fits = {s["statistic"]: s for s in scaling if s["name"] == name}
        limit_from = "max_normalized_increment" if "max_normalized_increment" in fits else "max_increment"
        fig, axes = plt.subplots(1, len(FAMILY_STATS), figsize=(4.2 * len(FAMILY_STATS), 3.6))
        for ax, (stat, label) in zip(axes, FAMILY_STATS, strict=True):
            pts = [(r["depth"], r[stat]) for r in rows if family_name(r["name"]) == name and stat in r and r[stat] > 0]
            if not pts:
                ax.set_visible(False)
                continue
            L, v = (np.array(a, dtype=float) for a in zip(*pts, strict=True))
            ax.loglog(L, v, "o", color="C0", ms=4)
            ref = np.array([L.min(), L.max()])
            base = np.exp(np.log(v).mean())
            for slope, style in ((-1.0, "--"), (-0.5, "-."), (0.0, ":")):
                ax.loglog(ref, base * (ref / np.sqrt(ref[0] * ref[1])) ** slope, style, color="gray", lw=0.8,
                          label=f"slope {slope:g}")
            f = fits.get(stat)
            if f is not None:
                lo, hi = f["ci"]
                limit = f", family limit {f['limit']}" if "limit" in f and stat == limit_from else ""
                ax.set_title(f"slope {f['exponent']:.2f} [{lo:.2f}, {hi:.2f}]{limit}", fontsize=8)
            depth_ticks(ax, sorted(set(L.astype(int))))
            ax.set_xlabel("depth L (layers in the path)")
            ax.set_ylabel(label)
            ax.legend(fontsize=6)
        stem = _stem(name)
        out.append(save(fig, folder / f"family-{len(out):03d}-{stem}.png", f"{name}: across depths", fontsize=9))
    return out


REGIME_COLOURS = {"ode": "C2", "sde": "C1", "none": "C3", "mixed": "C4", "inconclusive": "0.6"}


def file_overviews(rows: list[dict], folder: Path) -> list[Path]:
    """One figure per file: every path's normalized increments ||Z_k+1/||Z_k+1|| - Z_k/||Z_k|| ||, or its
    raw increments relative to their median where the normalized ones are absent, against k / L, coloured
    by its regime: the regularity of a whole checkpoint at a glance."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    out = []
    for file in dict.fromkeys(r["file"] for r in rows):
        mine = [r for r in rows if r["file"] == file and r.get("increments")]
        if not mine:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        seen = set()
        for r in mine:
            inc = np.asarray(r["increments"], dtype=float)
            norms = np.asarray(r.get("norms") or [], dtype=float)
            if len(norms) == len(inc) + 1 and np.all(norms > 0):
                y = inc / np.sqrt(norms[1:] * norms[:-1])  # relative to the layers' size
            else:
                y = inc / max(np.median(inc), 1e-300)
            k = (np.arange(len(inc)) + 0.5) / len(inc)
            lab = r["regime"] if r["regime"] not in seen else None
            seen.add(r["regime"])
            ax.semilogy(k, np.maximum(y, 1e-12), "-", lw=0.8, alpha=0.7, color=REGIME_COLOURS.get(r["regime"], "k"),
                        label=lab)
        ax.set_xlabel("layer index k / L")
        ax.set_ylabel("||Z_k+1 - Z_k|| / sqrt(||Z_k|| ||Z_k+1||)")
        ax.legend(fontsize=7, title="regime", title_fontsize=7)
        stem = _stem(Path(file).name)
        out.append(save(fig, folder / f"overview-{len(out):03d}-{stem}.png", f"{Path(file).name}: {len(mine)} paths",
                        fontsize=9))
    return out
