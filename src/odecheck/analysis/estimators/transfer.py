r"""Does the optimal learning rate drift with depth? The estimator behind claim 10 (``depth-transfer``).

Input: the final loss of every run on a grid of learning rates (powers of 2) x depths x members (seeds).
Per depth and member, eta*(L) is the vertex of a parabola fitted to log(loss) against log2(lr) on the
grid point with the least loss and its two neighbours (a three-point fit: exact through those points);
a member whose least loss sits at the grid's edge has no interior optimum at that depth and the estimate
declines. The drift is the slope s of log2 eta* on log2 L per member (one OLS slope each), with a
members-t interval. Non-finite losses (diverged runs) count as worse than any finite one.

The verdict band comes from the grid's resolution: over the depth range L_min..L_max the optimum may move
by less than half a grid step (1/2 in log2 lr) and still be read as "the same grid point", so the band is
|s| < 1 / (2 log2(L_max / L_min)). ``transfers`` when the interval lies inside the band, ``drifts`` when it
lies outside, else ``inconclusive``.

References
----------
[Y23], [B23], [CP25]: see docs/theory.md, "Depth parametrizations".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odecheck.analysis.estimators.decisions import transfer_call
from odecheck.core._errors import invalid


def optimal_log2_lr(log2_lrs, losses) -> float:
    """The vertex of the parabola through log(loss) at the grid's least loss and its two neighbours, in
    log2 lr; NaN when the least loss is at the grid's edge (no interior optimum) or no loss is finite."""
    x = np.asarray(log2_lrs, dtype=float)
    y = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise invalid("losses", f"<shape {y.shape}>", f"one loss per learning rate ({x.size}, at least 3)")
    if np.any(np.diff(x) <= 0):
        raise invalid("log2_lrs", x.tolist(), "an increasing grid")
    y = np.where(np.isfinite(y) & (y > 0), y, np.inf)
    if not np.isfinite(y).any():
        return float("nan")
    i = int(np.argmin(y))
    if i == 0 or i == x.size - 1 or not np.all(np.isfinite(y[i - 1:i + 2])):
        return float("nan")
    a, b, _ = np.polyfit(x[i - 1:i + 2], np.log(y[i - 1:i + 2]), 2)
    return float(-b / (2 * a)) if a > 0 else float(x[i])


@dataclass(frozen=True)
class TransferFit:
    slope: float  # d log2 eta* / d log2 L, mean over members
    ci: tuple[float, float]
    band: float  # |slope| below it: the optimum moves less than half a grid step over the depths
    optimum: np.ndarray  # (D, R) eta*(L) in log2 lr, NaN where there is no interior optimum
    verdict: str  # "transfers", "drifts" or "inconclusive"
    reason: str


def transfer_slope(depths, log2_lrs, losses, *, level: float = 0.95) -> TransferFit:
    """The drift of eta*(L) from ``losses`` (D, G, R): depths x learning rates (``log2_lrs``, G) x members."""
    from odecheck.analysis.estimators.scaling import mean_interval

    L = np.asarray(depths, dtype=float)
    V = np.asarray(losses, dtype=float)
    if V.ndim != 3 or V.shape[:2] != (L.size, len(log2_lrs)):
        raise invalid("losses", f"<shape {V.shape}>", f"(depths, learning rates, members) = ({L.size}, "
                                                     f"{len(log2_lrs)}, R)")
    if L.size < 3 or np.any(np.diff(L) <= 0):
        raise invalid("depths", L.tolist(), "at least 3 increasing depths")
    D, _, R = V.shape
    opt = np.array([[optimal_log2_lr(log2_lrs, V[d, :, r]) for r in range(R)] for d in range(D)])
    band = 1.0 / (2.0 * np.log2(L[-1] / L[0]))
    edge = [int(L[d]) for d in range(D) if np.isnan(opt[d]).any()]
    if edge:
        return TransferFit(float("nan"), (float("nan"),) * 2, band, opt, "inconclusive",
                           f"the least loss is at the learning-rate grid's edge at L = {edge}: no interior optimum "
                           "(widen the grid)")
    x = np.log2(L)
    xc = x - x.mean()
    slopes = xc @ (opt - opt.mean(0)) / (xc @ xc)  # (R,) one OLS slope per member
    s = float(slopes.mean())
    if R < 2:
        return TransferFit(s, (float("nan"),) * 2, band, opt, "inconclusive", "one member: no interval")
    s, (lo, hi) = mean_interval(slopes, level)
    verdict = transfer_call((lo, hi), band)
    where = {"transfers": "inside", "drifts": "outside", "inconclusive": "across the band"}[verdict]
    return TransferFit(s, (lo, hi), band, opt, verdict, f"interval {where} +-{band:.3g}")


__all__ = ["TransferFit", "optimal_log2_lr", "transfer_slope"]
