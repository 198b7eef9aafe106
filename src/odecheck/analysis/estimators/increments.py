r"""The autocorrelation of a path's increments, the regime rule's test for `sde` below 4 dyadic lags.

Over 3 dyadic lags (L = 5..127) a smooth path plus white layer noise can follow one power law in the sde band
exactly, so the variogram alone cannot name `sde` there (docs/calibration.md). The increments
D_k = Z_{k+1} - Z_k tell them apart at every lag j = 1..K, K = max(1, floor((L - 1) / 4)):

    rho(j) = [sum_k <D_k, D_{k+j}> / (L - 1 - j)] / [sum_k ||D_k||^2 / (L - 1)]

(pooled over entries, not centred, so a linear drift counts as the smooth part it is) is 0 at every lag for
Brownian increments, -1/2 at lag 1 for white noise, near 1 at small lags for a smooth path. A smooth path (its
increments' correlation about 1 at lags 1 and 2) plus white noise has rho(1) = (3 rho(2) - 1) / 2, so
max(|rho(1)|, |rho(2)|) >= 1/5 whatever the noise: no such mixture lies within +-ACF_BAND = 0.15 at both lags.
`sde` needs every lag's interval inside +-ACF_BAND (an intersection-union test: its size is at most the
per-lag level, with no multiplicity correction). Intervals: grouped jackknife-t over entries, like the
local exponents'.
"""

from __future__ import annotations

import numpy as np

from odecheck.analysis.estimators.jackknife import jackknife_interval

ACF_BAND = 0.15  # below 1/5, the least max(|rho(1)|, |rho(2)|) of a smooth path plus white noise


def acf_lags(L: int) -> int:
    """K: the lags 1..K whose autocorrelation the rule tests, up to a quarter of the path."""
    return max(1, (L - 1) // 4)


class AcfSums:
    """Per jackknife group: sum over entries and layers of <D_k, D_{k+j}> for j = 0..K, accumulated over column
    chunks of the path (like ``regularity.LagSums``)."""

    def __init__(self, L: int, G: int):
        self.L, self.K = L, acf_lags(L)
        self.sums = np.zeros((self.K + 1, G))

    def add(self, d1: np.ndarray, ids: np.ndarray, starts: np.ndarray) -> None:
        """Add the increments ``d1`` (L - 1, c) of a column chunk whose columns fall in groups ``ids`` (runs
        starting at ``starts``)."""
        n = d1.shape[0]
        for j in range(min(self.K, n - 1) + 1):
            prod = d1[j:] * d1[: n - j]
            self.sums[j, ids[starts]] += np.add.reduceat(prod.sum(0), starts)

    def acf(self, level: float) -> tuple[tuple[int, float, tuple[float, float]], ...]:
        """(lag, rho, interval) for lags 1..K, with delete-one-group jackknife-t intervals."""
        n = self.L - 1
        if n - self.K < 1:
            return ()
        total = self.sums.sum(1)
        out = []
        for j in range(1, self.K + 1):
            scale = n / (n - j)
            full = scale * total[j] / total[0] if total[0] > 0 else float("nan")
            rest0 = total[0] - self.sums[0]
            reps = np.where(rest0 > 0, scale * (total[j] - self.sums[j]) / np.where(rest0 > 0, rest0, 1.0), np.nan)
            est, ci = jackknife_interval(full, reps, level)
            out.append((j, float(est), ci))
        return tuple(out)


def within_band(acf) -> bool:
    """Whether every lag's interval lies strictly inside +-ACF_BAND (and there is at least one lag)."""
    return bool(acf) and all(np.isfinite(lo) and -ACF_BAND < lo and hi < ACF_BAND for _, _, (lo, hi) in acf)


def worst_lag(acf) -> str:
    """The lag whose autocorrelation interval reaches farthest from 0, for a reason text."""
    if not acf:
        return ""
    j, est, (lo, hi) = max(acf, key=lambda a: max(abs(a[2][0]), abs(a[2][1])) if np.isfinite(a[2][0]) else np.inf)
    return f" (lag {j}: {est:.3f} [{lo:.3f}, {hi:.3f}])"
