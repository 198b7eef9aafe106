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


def increment_norms(path) -> np.ndarray:
    """||Z_{k+1} - Z_k||_F per layer k, (L - 1,)."""
    Z = _path(path)
    return np.sqrt(((Z[1:] - Z[:-1]) ** 2).sum(1))


def layer_norms(path) -> np.ndarray:
    """||Z_k||_F per layer k, (L,)."""
    Z = _path(path)
    return np.sqrt((Z**2).sum(1))


def max_increment(path) -> float:
    return float(increment_norms(path).max())


def quadratic_variation(path) -> float:
    Z = _path(path)
    return float(((Z[1:] - Z[:-1]) ** 2).sum())


def max_norm(path) -> float:
    return float(layer_norms(path).max())


def root_sum_squares(path) -> float:
    Z = _path(path)
    return float(np.sqrt((Z**2).sum()))


def dyadic_lags(L: int) -> np.ndarray:
    """Lags 1, 2, 4, ... up to max(4, L // 16), below L."""
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


class LagSums:
    """Sufficient statistics of a path for its regularity, accumulated over chunks of entries
    (columns): per layer the squared increment and squared norm summed over entries, and per lag h
    of ``lags`` the squared increments Z_{k+h} - Z_k summed per jackknife group (entry i in group
    i mod G, G = min(P, 64)). One pass over the path, linear in its entries; a path larger than
    memory is fed one column chunk at a time (``add(chunk, offset)``)."""

    def __init__(self, L: int, P: int, lags: np.ndarray):
        self.L, self.P, self.lags = L, P, lags
        self.G = min(P, JACKKNIFE_GROUPS)
        self.increment2 = np.zeros(L - 1)
        self.norm2 = np.zeros(L)
        self.groups = [np.zeros((L - h, self.G)) for h in lags]

    def add(self, Z: np.ndarray, offset: int) -> None:
        """Add the columns ``offset .. offset + Z.shape[1]`` of the (L, P) path."""
        L, c = Z.shape
        d1 = np.diff(Z, axis=0)
        self.increment2 += (d1 * d1).sum(1)
        self.norm2 += (Z * Z).sum(1)
        G = self.G
        ids = (offset + np.arange(c)) % G
        for h, acc in zip(self.lags, self.groups, strict=True):
            d = Z[h:] - Z[:-h] if h > 1 else d1
            d = d * d
            if offset % G == 0 and c % G == 0:  # aligned: column j of the chunk falls in group j mod G
                acc += d.reshape(d.shape[0], -1, G).sum(1)
            else:
                np.add.at(acc.T, ids, d.T)

    def hurst(self, level: float) -> tuple[float, tuple[float, float]]:
        """The Hurst estimate (slope of log mean_k ||Z_{k+h} - Z_k|| on log h) and its grouped
        jackknife-t interval at ``level``."""
        from scipy import stats

        logs, full = [], []
        for acc in self.groups:
            total = acc.sum(1, keepdims=True)
            m_full = np.sqrt(total[:, 0]).mean()
            full.append(np.log(m_full) if m_full > 0 else np.nan)
            m = np.sqrt(np.maximum(total - acc, 0.0)).mean(0)  # (G,): m(h) without group g
            logs.append(np.log(np.where(m > 0, m, np.nan)))
        x = np.log(self.lags) - np.log(self.lags).mean()
        full = np.array(full)
        est = float((x * (full - full.mean())).sum() / (x**2).sum()) if np.all(np.isfinite(full)) else float("nan")
        Y = np.array(logs)  # (lags, G)
        theta = (x[:, None] * (Y - Y.mean(0))).sum(0) / (x**2).sum()  # OLS slope per left-out group
        theta = theta[np.isfinite(theta)]
        if len(theta) < 2 or not np.isfinite(est):
            return est, (float("nan"), float("nan"))
        g = len(theta)
        se = np.sqrt((g - 1) / g * ((theta - theta.mean()) ** 2).sum())
        q = stats.t.ppf((1 + level) / 2, g - 1)
        return est, (float(est - q * se), float(est + q * se))


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
    lags = dyadic_lags(L)
    if np.all(Z == Z[:1]):
        return HurstEstimate(float("nan"), (float("nan"), float("nan")), level, tuple(lags.tolist()), P, True)
    if P >= 8:
        sums = LagSums(L, P, lags)
        sums.add(Z, 0)
        est, ci = sums.hurst(level)
        return HurstEstimate(est, ci, level, tuple(lags.tolist()), P, False)
    est = _hurst_from(Z, lags)
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
    return RegimeDecision(regime_of(h.ci), h)


def regime_of(ci: tuple[float, float]) -> Regime:
    """The regime rule on a Hurst interval: ode above 0.75, none below 0.25, sde strictly between."""
    lo, hi = ci
    if lo > ODE_ABOVE:
        return "ode"
    if hi < NONE_BELOW:
        return "none"
    if lo > NONE_BELOW and hi < ODE_ABOVE:
        return "sde"
    return "inconclusive"


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
    increments: tuple[float, ...] = ()  # ||Z_{k+1} - Z_k||_F per layer k
    norms: tuple[float, ...] = ()  # ||Z_k||_F per layer k


def path_stats(path, *, seed: int = 0) -> PathStats:
    Z = np.asarray(path, dtype=float)
    dec = classify_regime(Z, seed=seed) if Z.shape[0] >= 3 else None
    inc, norms = increment_norms(Z), layer_norms(Z)
    return PathStats(
        depth=int(Z.shape[0]), shape=tuple(Z.shape[1:]), max_increment=float(inc.max()),
        quadratic_variation=quadratic_variation(Z), max_norm=float(norms.max()), root_sum_squares=root_sum_squares(Z),
        hurst=dec.hurst.estimate if dec else float("nan"), hurst_ci=dec.hurst.ci if dec else (np.nan, np.nan),
        regime=dec.regime if dec else "inconclusive", increments=tuple(inc.tolist()), norms=tuple(norms.tolist()))
