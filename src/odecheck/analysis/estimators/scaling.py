r"""Scaling exponents across depth: slope of log(statistic) against log L, with an interval.

References
----------
[M24] sec. 5 (log-log plots of the max increment against L); [C21] (beta from max_k ||A_k|| ~ L^-beta).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from odecheck.core._errors import invalid

Method = Literal["members", "bootstrap", "theil-sen"]
MIN_BOOTSTRAP_MEMBERS = 8  # below, the bootstrap interval under-covers (docs/calibration.md)


@dataclass(frozen=True)
class ScalingFit:
    """Fitted exponent p in statistic ~ C L^p.

    estimate: slope of the mean log statistic per depth; ci: (lo, hi) at ``level``;
    n: number of depths; members: replicates per depth (ensemble members).
    """

    estimate: float
    ci: tuple[float, float]
    intercept: float
    level: float
    n: int
    members: int
    method: str


def _as_panel(depths, values) -> tuple[np.ndarray, np.ndarray]:
    L = np.asarray(depths, dtype=float)
    if L.ndim != 1 or len(L) < 2 or np.any(L <= 0):
        raise invalid("depths", depths, "at least two positive depths")
    V = np.asarray(values, dtype=float)
    if V.ndim == 1:
        V = V[:, None]
    if V.ndim != 2 or V.shape[0] != len(L):
        raise invalid("values", f"<shape {V.shape}>", f"({len(L)}, R): one row per depth")
    if not np.all(np.isfinite(V)) or np.any(V <= 0):
        raise invalid("values", "<non-positive or non-finite entries>", "positive finite statistics")
    return L, V


def _bootstrap_interval(x, logv, *, level: float, n_boot: int, seed: int, paired: bool) -> tuple[float, float]:
    """The expanded percentile interval of the OLS slope of mean log values on x, members resampled within
    each depth (or whole columns, ``paired``)."""
    L, R = logv.shape
    rng = np.random.default_rng(seed)
    if paired:
        idx = np.broadcast_to(rng.integers(0, R, size=(n_boot, 1, R)), (n_boot, L, R))
    else:
        idx = rng.integers(0, R, size=(n_boot, L, R))
    means = np.take_along_axis(np.broadcast_to(logv, (n_boot, *logv.shape)), idx, axis=2).mean(2)
    xc = x - x.mean()
    slopes = (means - means.mean(1, keepdims=True)) @ xc / (xc @ xc)
    # Expanded percentile interval (Hesterberg 2015, "What teachers should know about the bootstrap",
    # sec. 5): the plain percentile interval is too narrow with few resampled units (it has the
    # spread of a z-interval with the biased variance). Take the percentiles at the tail
    # probability whose normal quantile is sqrt(R / (R - 1)) times Student's t quantile (R - 1 df).
    from scipy.stats import norm
    from scipy.stats import t as tdist

    tail = float(norm.cdf(-np.sqrt(R / (R - 1)) * tdist.ppf(0.5 + level / 2, R - 1)))
    lo, hi = np.quantile(slopes, [tail, 1 - tail])
    return float(lo), float(hi)


def _ols_t_fit(x: np.ndarray, y: np.ndarray, slope: float, icpt: float, level: float) -> ScalingFit:
    """One replicate per depth: the t-interval of the OLS slope (no interval from two points)."""
    from scipy.stats import t as tdist

    if len(x) < 3:  # two points, one replicate: no information about the uncertainty
        return ScalingFit(float(slope), (float("nan"), float("nan")), float(icpt), level, len(x), 1, "ols-t")
    resid = y - (slope * x + icpt)
    dof = max(len(x) - 2, 1)
    se = np.sqrt((resid**2).sum() / dof / ((x - x.mean()) ** 2).sum())
    h = tdist.ppf(0.5 + level / 2, dof) * se
    return ScalingFit(float(slope), (float(slope - h), float(slope + h)), float(icpt), level, len(x), 1, "ols-t")


def scaling_exponent(depths, values, *, method: Method = "members", level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0, paired: bool = False) -> ScalingFit:
    r"""Exponent p of ``values ~ C depths^p``.

    Parameters
    ----------
    depths : (D,) depths L
    values : (D,) or (D, R) positive statistics, R replicates (ensemble members) per depth
    method : "members" (default: one OLS slope per column, i.e. per ensemble member, and a Student-t
        interval over the members; exact for Gaussian log-noise, valid for any number of members >= 2),
        "bootstrap" (members resampled within each depth, OLS on mean logs, expanded percentile
        interval: the percentiles moved out so that few members do not make it too narrow) or "theil-sen" (robust slope on all
        points, scipy's interval)
    paired : column r is the same replicate (e.g. one weight function) at every depth: resample
        whole columns instead of each depth independently
    """
    if not (0 < level < 1):
        raise invalid("level", level, "a float in (0, 1)")
    L, V = _as_panel(depths, values)
    x = np.log(L)
    logv = np.log(V)
    slope, icpt = np.polyfit(x, logv.mean(1), 1)
    if method == "theil-sen":
        from scipy.stats import theilslopes

        xs = np.repeat(x, V.shape[1])
        res = theilslopes(logv.ravel(), xs, alpha=level)
        return ScalingFit(float(res[0]), (float(res[2]), float(res[3])), float(res[1]), level, len(L), V.shape[1],
                          "theil-sen")
    if method not in ("bootstrap", "members"):
        raise invalid("method", method, "'members', 'bootstrap' or 'theil-sen'")
    R = V.shape[1]
    if R == 1:
        return _ols_t_fit(x, logv[:, 0], slope, icpt, level)
    if method == "members":
        from scipy.stats import t as tdist

        xc = x - x.mean()
        slopes = xc @ (logv - logv.mean(0)) / (xc @ xc)  # (R,) one slope per member
        se = slopes.std(ddof=1) / np.sqrt(R)
        h = tdist.ppf(0.5 + level / 2, R - 1) * se
        return ScalingFit(float(slope), (float(slope - h), float(slope + h)), float(icpt), level, len(L), R,
                          "members-t")
    if R < MIN_BOOTSTRAP_MEMBERS:
        # paired resampling of 4 columns has 35 distinct resamples and stays inside the members'
        # own slopes: it missed a planted exponent 15 % of the time at the 95 % level
        raise invalid("method", method, f"'members' or 'theil-sen' with {R} members per depth (the bootstrap "
                                        f"needs at least {MIN_BOOTSTRAP_MEMBERS})")
    lo, hi = _bootstrap_interval(x, logv, level=level, n_boot=n_boot, seed=seed, paired=paired)
    return ScalingFit(float(slope), (float(lo), float(hi)), float(icpt), level, len(L), R, "bootstrap")


def mean_interval(values, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean of the finite ``values`` with its Student-t interval at ``level`` (NaN bounds for fewer than two)."""
    from scipy.stats import t as tdist

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return (float(v.mean()) if v.size else float("nan")), (float("nan"), float("nan"))
    h = float(tdist.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean()), (float(v.mean() - h), float(v.mean() + h))
