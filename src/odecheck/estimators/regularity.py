r"""Regularity of a weight path k -> Z_k along the layer index.

Statistics of a path Z (L, ...): max increment max_k ||Z_{k+1} - Z_k||_F, quadratic
variation sum_k ||Z_{k+1} - Z_k||_F^2, max norm max_k ||Z_k||_F, root sum of squares
sqrt(sum_k ||Z_k||_F^2); Hurst / Hoelder exponent: slope of log mean_k ||Z_{k+h} - Z_k||_F
against log h over dyadic lags h = 1, 2, 4, ... <= max(4, L/16). Smooth -> 1, Brownian -> 1/2,
white noise -> 0, fbm(H) -> H.

References
----------
[M24] sec. 5.2; [C21] sec. 4; [M25] (fbm weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._errors import invalid

Regime = Literal["ode", "sde", "none", "inconclusive"]

# decision thresholds on the Hurst interval (calibrated in docs/calibration.md)
ODE_ABOVE = 0.75
NONE_BELOW = 0.25


def _path(path, name: str = "path") -> np.ndarray:
    Z = np.asarray(path, dtype=float)
    if Z.ndim < 1 or Z.shape[0] < 2:
        raise invalid(name, f"<shape {Z.shape}>", "an array with a leading layer axis of length >= 2")
    if not np.all(np.isfinite(Z)):
        raise invalid(name, "<NaN or inf entries>", "finite weights")
    return Z.reshape(Z.shape[0], -1)


def max_increment(path) -> float:
    Z = _path(path)
    return float(np.sqrt(((Z[1:] - Z[:-1]) ** 2).sum(1)).max())


def quadratic_variation(path) -> float:
    Z = _path(path)
    return float(((Z[1:] - Z[:-1]) ** 2).sum())


def max_norm(path) -> float:
    Z = _path(path)
    return float(np.sqrt((Z**2).sum(1)).max())


def root_sum_squares(path) -> float:
    Z = _path(path)
    return float(np.sqrt((Z**2).sum()))


def _lags(L: int) -> np.ndarray:
    top = max(4, L // 16)
    lags = [1]
    while lags[-1] * 2 <= min(top, L - 1):
        lags.append(lags[-1] * 2)
    return np.array(lags)


def _hurst_from(Z: np.ndarray, lags: np.ndarray) -> float:
    m = np.array([np.sqrt(((Z[h:] - Z[:-h]) ** 2).sum(1)).mean() for h in lags])
    if np.any(m <= 0):
        return float("nan")
    return float(np.polyfit(np.log(lags), np.log(m), 1)[0])


JACKKNIFE_GROUPS = 64  # delete-one-entry jackknife up to this many entries, delete-one-group beyond


def _jackknife_interval(Z: np.ndarray, lags: np.ndarray, est: float, level: float) -> tuple[float, float]:
    """Jackknife-t interval of the Hurst slope over the entries (columns) of Z: G = min(P, 64) groups
    (entry i in group i mod G), each left out in turn; per lag the squared increments are summed per
    group once, so the cost is one pass over the path whatever P."""
    from scipy import stats

    L, P = Z.shape
    G = min(P, JACKKNIFE_GROUPS)
    pad = (-P) % G
    logs = []
    for h in lags:
        d = (Z[h:] - Z[:-h]) ** 2
        if pad:
            d = np.concatenate([d, np.zeros((d.shape[0], pad))], axis=1)
        per_group = d.reshape(d.shape[0], -1, G).sum(1)  # (L - h, G): entry i falls in group i mod G
        total = per_group.sum(1, keepdims=True)
        m = np.sqrt(np.maximum(total - per_group, 0.0)).mean(0)  # (G,): m(h) without group g
        logs.append(np.log(np.where(m > 0, m, np.nan)))
    Y = np.array(logs)  # (lags, G)
    x = np.log(lags) - np.log(lags).mean()
    theta = (x[:, None] * (Y - Y.mean(0))).sum(0) / (x**2).sum()  # OLS slope per left-out group
    theta = theta[np.isfinite(theta)]
    if len(theta) < 2:
        return float("nan"), float("nan")
    g = len(theta)
    se = np.sqrt((g - 1) / g * ((theta - theta.mean()) ** 2).sum())
    q = stats.t.ppf((1 + level) / 2, g - 1)
    return float(est - q * se), float(est + q * se)


@dataclass(frozen=True)
class HurstEstimate:
    estimate: float
    ci: tuple[float, float]
    level: float
    lags: tuple[int, ...]
    n: int  # number of entries (replicates) of the path
    constant: bool


def hurst(path, *, level: float = 0.95, n_boot: int = 200, seed: int = 0) -> HurstEstimate:
    r"""Hoelder/Hurst exponent of a weight path with a confidence interval.

    Estimate: slope of log m(h) against log h over dyadic lags h, where
    m(h) = mean_k ||Z_{k+h} - Z_k||_F.

    Interval: with at least 8 entries (columns), a jackknife over the entries (each of G = min(P, 64)
    groups left out in turn; G = P is the delete-one-entry jackknife) and a Student-t quantile,
    H_hat +- t_{G-1, (1+level)/2} sqrt((G-1)/G sum_g (H_(-g) - mean H_(-g))^2), deterministic, one
    pass over the path. (A
    percentile bootstrap over entries covered a planted fbm's H only 87-91 % of the time at the 95 %
    level with 16 entries; the jackknife-t interval 93-96 %, see docs/calibration.md.) With fewer
    entries, a moving-block bootstrap of consecutive increments (block ~ L^(1/3), ``n_boot``
    resamples from ``seed``), percentile interval.
    A constant path (all increments zero) is reported with ``constant=True`` and NaN.
    """
    Z = _path(path)
    L, P = Z.shape
    if L < 3:
        raise invalid("path", f"<depth {L}>", "at least 3 layers to estimate a Hurst exponent")
    lags = _lags(L)
    if np.all(Z == Z[:1]):
        return HurstEstimate(float("nan"), (float("nan"), float("nan")), level, tuple(lags.tolist()), P, True)
    est = _hurst_from(Z, lags)
    if P >= 8:
        lo, hi = _jackknife_interval(Z, lags, est, level)
        return HurstEstimate(est, (lo, hi), level, tuple(lags.tolist()), P, False)
    rng = np.random.default_rng(seed)
    inc = np.diff(Z, axis=0)
    b = max(2, int(round(L ** (1 / 3))))
    nb = int(np.ceil((L - 1) / b))
    boots = []
    for _ in range(n_boot):
        starts = rng.integers(0, L - b, nb)
        pieces = np.concatenate([inc[s:s + b] for s in starts])[: L - 1]
        Zb = np.concatenate([Z[:1], Z[:1] + np.cumsum(pieces, 0)])
        boots.append(_hurst_from(Zb, lags))
    boots = np.array(boots)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if len(boots) else (np.nan, np.nan)
    return HurstEstimate(est, (float(lo), float(hi)), level, tuple(lags.tolist()), P, False)


@dataclass(frozen=True)
class RegimeDecision:
    """Regime of a weight path from its Hurst interval: ode if lo > 0.75, none if hi < 0.25,
    sde if 0.25 < lo and hi < 0.75, else inconclusive."""

    regime: Regime
    hurst: HurstEstimate


def classify_regime(path, *, level: float = 0.95, seed: int = 0) -> RegimeDecision:
    h = hurst(path, level=level, seed=seed)
    if h.constant:
        return RegimeDecision("ode", h)
    lo, hi = h.ci
    if lo > ODE_ABOVE:
        reg: Regime = "ode"
    elif hi < NONE_BELOW:
        reg = "none"
    elif lo > NONE_BELOW and hi < ODE_ABOVE:
        reg = "sde"
    else:
        reg = "inconclusive"
    return RegimeDecision(reg, h)


@dataclass(frozen=True)
class PathStats:
    depth: int
    shape: tuple[int, ...]
    max_increment: float
    quadratic_variation: float
    max_norm: float
    root_sum_squares: float
    hurst: float
    hurst_ci: tuple[float, float]
    regime: Regime


def path_stats(path, *, seed: int = 0) -> PathStats:
    Z = np.asarray(path, dtype=float)
    dec = classify_regime(Z, seed=seed) if Z.shape[0] >= 3 else None
    return PathStats(
        depth=int(Z.shape[0]), shape=tuple(Z.shape[1:]), max_increment=max_increment(Z),
        quadratic_variation=quadratic_variation(Z), max_norm=max_norm(Z), root_sum_squares=root_sum_squares(Z),
        hurst=dec.hurst.estimate if dec else float("nan"), hurst_ci=dec.hurst.ci if dec else (np.nan, np.nan),
        regime=dec.regime if dec else "inconclusive")
