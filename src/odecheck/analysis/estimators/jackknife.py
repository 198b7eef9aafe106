"""The grouped jackknife-t interval shared by the regularity estimators."""

from __future__ import annotations

import numpy as np


def jackknife_interval(est: float, reps: np.ndarray, *levels: float):
    """Jackknife-t interval est +- t_{g-1} sqrt((g-1)/g sum (theta_g - mean theta)^2) (NaN replicates
    dropped): (est, interval) at one level, (est, interval, interval, ...) at several, one standard error."""
    from scipy import stats

    est = float(est)
    theta = np.asarray(reps, dtype=float)
    theta = theta[np.isfinite(theta)]
    if len(theta) < 2 or not np.isfinite(est):
        return (est, *[(float("nan"), float("nan"))] * len(levels))
    g = len(theta)
    se = np.sqrt((g - 1) / g * ((theta - theta.mean()) ** 2).sum())
    cis = []
    for level in levels:
        q = stats.t.ppf((1 + level) / 2, g - 1)
        cis.append((float(est - q * se), float(est + q * se)))
    return (est, *cis)
