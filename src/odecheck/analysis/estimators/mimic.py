"""The smooth path plus white noise that mimics one rough power law best: the search behind the regime rule's
``SDE_MIMIC_SPREAD`` (tests/test_regime_rule.py and scripts/calibrate.py recompute the table with it)."""

from __future__ import annotations

import numpy as np

from odecheck.analysis.estimators.regularity import NONE_BELOW, ODE_ABOVE


def smooth_noise_mimic(n_lags: int, grid: int = 700) -> tuple[float, float, float, np.ndarray]:
    """The smooth path plus white noise that looks most like one rough power law over ``n_lags`` dyadic
    lags: the variogram 1 - exp(-(h/l)^2/2) + a (length scale l layers, noise level a) whose log-log slope
    lies in the sde band (0.25, 0.75) with the least spread of its local exponents; searched on a log
    grid (l in [0.1, 1e5], a in [1e-10, 1e4]), then refined by Nelder-Mead from the five best grid
    points. Returns (spread, l, a, local exponents); SDE_MIMIC_SPREAD holds its spreads."""
    from scipy.optimize import minimize

    lags = 2.0 ** np.arange(n_lags)
    x = np.log(lags) - np.log(lags).mean()

    def curve(log_l, log_a):
        y = 0.5 * np.log(-np.expm1(-((lags / np.exp(log_l)) ** 2) / 2) + np.exp(log_a))
        H = ((y - y.mean(-1, keepdims=True)) * x).sum(-1) / (x**2).sum()
        return H, np.diff(y, axis=-1) / np.log(2.0)

    gl = np.linspace(np.log(0.1), np.log(1e5), grid)[:, None, None]
    ga = np.linspace(np.log(1e-10), np.log(1e4), grid)[None, :, None]
    H, s = curve(gl, ga)
    spread = np.where((H > NONE_BELOW) & (H < ODE_ABOVE), s.max(-1) - s.min(-1), np.inf)

    def penalized(p):
        h, loc = curve(p[0], p[1])
        return loc.max() - loc.min() + 100 * (max(0.0, NONE_BELOW - h) + max(0.0, h - ODE_ABOVE))

    best = (np.inf, 0.0, 0.0)
    for flat in np.argsort(spread, axis=None)[:5]:
        i, j = np.unravel_index(flat, spread.shape)
        r = minimize(penalized, [gl[i, 0, 0], ga[0, j, 0]], method="Nelder-Mead",
                     options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
        h, loc = curve(r.x[0], r.x[1])
        if NONE_BELOW < h < ODE_ABOVE and loc.max() - loc.min() < best[0]:
            best = (float(loc.max() - loc.min()), float(r.x[0]), float(r.x[1]))
    _, loc = curve(best[1], best[2])
    return best[0], float(np.exp(best[1])), float(np.exp(best[2])), loc
