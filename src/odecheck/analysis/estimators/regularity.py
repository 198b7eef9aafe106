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

import functools
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from odecheck.analysis.estimators.huge import HUGE, huge_exponent, scaled_back
from odecheck.analysis.estimators.increments import ACF_BAND, AcfSums, within_band, worst_lag
from odecheck.analysis.estimators.jackknife import jackknife_interval
from odecheck.core._errors import invalid

Regime = Literal["ode", "sde", "none", "mixed", "inconclusive"]

# decision thresholds on the Hurst interval (calibrated in docs/calibration.md)
ODE_ABOVE = 0.75
NONE_BELOW = 0.25
# local exponents within +-CROSSOVER_TOLERANCE of each other count as one power law (half the width of
# the sde band); beyond it, shown with a Bonferroni interval, the path is a crossover (`mixed`)
CROSSOVER_TOLERANCE = 0.25
# `sde` needs more: a smooth Gaussian path (squared-exponential kernel, any length scale) plus white
# layer noise can follow one power law with a Hurst exponent inside (0.25, 0.75) over J dyadic lags
# with local exponents spread by only this much (minimum over a grid of length scales and noise
# levels, tests/test_regime_rule.py recomputes it): exactly straight at 3 lags, so no tolerance
# separates the two there. `sde` is called only where the spread is shown below it (capped at
# CROSSOVER_TOLERANCE); 5 lags and more reach the cap.
SDE_MIMIC_SPREAD = {3: 0.0, 4: 0.134, 5: 0.240}
MIN_LAGS = 3  # two local exponents: the least that can test one power law
MIN_ENTRIES = 8  # the jackknife over entries needs this many


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


def normalized_increment_norms(path) -> np.ndarray:
    r"""||Z_{k+1}/||Z_{k+1}|| - Z_k/||Z_k|| ||_F per layer k, (L - 1,): the increments of the layer-normalized
    path, which a weight that feeds a normalization (BatchNorm, LayerNorm) sees; scale-free. A zero layer
    counts as 0 (its normalized direction is taken as 0)."""
    Z = _path(path)
    n = np.sqrt((Z**2).sum(1))
    U = Z / np.where(n > 0, n, 1.0)[:, None]
    return np.sqrt(((U[1:] - U[:-1]) ** 2).sum(1))


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


def jackknife_groups(P: int) -> int:
    return min(P, JACKKNIFE_GROUPS)


def entry_groups(offset: int, count: int, P: int) -> np.ndarray:
    """Jackknife group of the entries (columns) ``offset .. offset + count`` of a path with P entries:
    contiguous blocks, entry j in group floor(j G / P), G = min(P, 64). Contiguous blocks keep
    neighbouring entries (one conv kernel, one matrix row), which are often correlated, in one group."""
    G = jackknife_groups(P)
    return ((offset + np.arange(count)) * G) // P


class LagSums:
    """Sufficient statistics of a path for its regularity, accumulated over chunks of entries
    (columns): per layer the squared increment and squared norm summed over entries, and per lag h
    of ``lags`` the squared increments Z_{k+h} - Z_k summed per jackknife group (contiguous blocks of
    entries, ``entry_groups``). One pass over the path, linear in its entries; a path larger than
    memory is fed one column chunk at a time (``add(chunk, offset)``)."""

    def __init__(self, L: int, P: int, lags: np.ndarray):
        self.L, self.P, self.lags = L, P, np.asarray(lags)
        self.G = jackknife_groups(P)
        self.increment2 = np.zeros(L - 1)
        self.norm2 = np.zeros(L)
        self.dot = np.zeros(L - 1)  # <Z_{k+1}, Z_k>: with norm2, the increments of the normalized path
        self.groups = [np.zeros((L - h, self.G)) for h in self.lags]
        # below 4 lags the rule names `sde` only from the increments' autocorrelation (estimators.increments)
        self.acf_sums = AcfSums(L, self.G) if 2 < L < minimum_depth(4) else None

    def add(self, Z: np.ndarray, offset: int) -> None:
        """Add the columns ``offset .. offset + Z.shape[1]`` of the (L, P) path."""
        L, c = Z.shape
        d1 = np.diff(Z, axis=0)
        self.increment2 += (d1 * d1).sum(1)
        self.norm2 += (Z * Z).sum(1)
        self.dot += (Z[1:] * Z[:-1]).sum(1)
        ids = entry_groups(offset, c, self.P)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # contiguous: one run per group
        for h, acc in zip(self.lags, self.groups, strict=True):
            d = Z[h:] - Z[:-h] if h > 1 else d1
            acc[:, ids[starts]] += np.add.reduceat(d * d, starts, axis=1)
        if self.acf_sums is not None:
            self.acf_sums.add(d1, ids, starts)

    def normalized_increments(self) -> np.ndarray:
        """||Z_{k+1}/||Z_{k+1}|| - Z_k/||Z_k|| ||_F per layer, from the sums (as normalized_increment_norms)."""
        n = np.sqrt(self.norm2)
        a, b = n[1:], n[:-1]
        ok = (a > 0) & (b > 0)
        cos = np.where(ok, self.dot / np.where(ok, a * b, 1.0), 0.0)
        sq = np.where(ok, 2.0 - 2.0 * cos, (a > 0).astype(float) + (b > 0).astype(float))
        return np.sqrt(np.maximum(sq, 0.0))

    def log_means(self) -> tuple[np.ndarray, np.ndarray]:
        """log m(h) per lag, (J,), and its delete-one-group values, (J, G) (NaN where m is 0)."""
        full, reps = [], []
        for acc in self.groups:
            total = acc.sum(1, keepdims=True)
            m_full = np.sqrt(total[:, 0]).mean()
            full.append(np.log(m_full) if m_full > 0 else np.nan)
            m = np.sqrt(np.maximum(total - acc, 0.0)).mean(0)  # (G,): m(h) without group g
            reps.append(np.log(np.where(m > 0, m, np.nan)))
        return np.array(full), np.array(reps)

    def hurst(self, level: float) -> tuple[float, tuple[float, float]]:
        """The Hurst estimate (slope of log m(h) on log h) and its grouped jackknife-t interval."""
        return _hurst_fit(self.lags, *self.log_means(), level)

    def fit(self, level: float) -> LocalFit:
        full, reps = self.log_means()
        return local_fit(self.lags, full, reps, level)


def _ols(x: np.ndarray, y: np.ndarray):
    """OLS slope of y on centred x along axis 0 (y (J,) or (J, G))."""
    y = y - y.mean(0)
    return (x.reshape(-1, *([1] * (y.ndim - 1))) * y).sum(0) / (x**2).sum()


def _hurst_fit(lags, full: np.ndarray, reps: np.ndarray, level: float) -> tuple[float, tuple[float, float]]:
    """The slope of log m(h) on log h and its jackknife-t interval, from log m (J,) and its replicates (J, G)."""
    x = np.log(np.asarray(lags, dtype=float))
    x = x - x.mean()
    return jackknife_interval(_ols(x, full), _ols(x, reps), level)


@dataclass(frozen=True)
class LocalExponent:
    """Slope of log m(h) between two consecutive lags, with its jackknife-t interval."""

    lags: tuple[int, int]
    estimate: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class LocalFit:
    """Everything the regime rule reads from log m(h): the overall slope (Hurst), the local slopes
    between consecutive lags, and, for every pair (i, k) of local slopes, the difference with its interval
    at the fit's level (for showing one power law) and at the Bonferroni level over the pairs (for
    showing a crossover)."""

    lags: tuple[int, ...]
    hurst: float
    hurst_ci: tuple[float, float]
    local: tuple[LocalExponent, ...]
    differences: tuple[tuple[int, int, float, tuple[float, float], tuple[float, float]], ...]


def local_fit(lags, full: np.ndarray, reps: np.ndarray, level: float) -> LocalFit:
    """The local fit from log m(h) (J,) and its delete-one-group replicates (J, G)."""
    lags = np.asarray(lags)
    H, H_ci = _hurst_fit(lags, full, reps, level)
    dx = np.diff(np.log(lags.astype(float)))
    s_full = np.diff(full) / dx  # (J-1,)
    s_reps = np.diff(reps, axis=0) / dx[:, None]  # (J-1, G)
    local = tuple(LocalExponent((int(lags[j]), int(lags[j + 1])), *jackknife_interval(s_full[j], s_reps[j], level))
                  for j in range(len(s_full)))
    n_pairs = len(s_full) * (len(s_full) - 1) // 2
    wide = 1 - (1 - level) / max(n_pairs, 1)
    diffs = []
    for i in range(len(s_full)):
        for k in range(i + 1, len(s_full)):
            diffs.append((i, k, *jackknife_interval(s_full[k] - s_full[i], s_reps[k] - s_reps[i], level, wide)))
    return LocalFit(tuple(int(h) for h in lags), float(H), H_ci, local, tuple(diffs))


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
    contiguous groups of entries left out in turn; G = P is the delete-one-entry jackknife) and a
    Student-t quantile, H_hat +- t_{G-1, (1+level)/2} sqrt((G-1)/G sum_g (H_(-g) - mean H_(-g))^2),
    deterministic, one pass over the path. (A percentile bootstrap over entries covered a planted
    fbm's H only 87-91 % of the time at the 95 % level with 16 entries; the jackknife-t interval
    93-96 %, see docs/calibration.md.) With fewer entries, a moving-block bootstrap of consecutive
    increments (block ~ L^(1/3), ``n_boot`` resamples from ``seed``), percentile interval; the
    regime rule does not use it (``classify_regime`` needs 8 entries).
    A constant path (all increments zero) is reported with ``constant=True`` and NaN.
    """
    Z = _path(path)
    L, P = Z.shape
    if L < 3:
        raise invalid("path", f"<depth {L}>", "at least 3 layers to estimate a Hurst exponent")
    lags = dyadic_lags(L)
    if np.all(Z == Z[:1]):
        return HurstEstimate(float("nan"), (float("nan"), float("nan")), level, tuple(lags.tolist()), P, True)
    if P >= MIN_ENTRIES:
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
    r"""Regime of a weight path at the observed scales, and why.

    The rule (docs/theory.md, calibrated in docs/calibration.md), with m(h) = mean_k ||Z_{k+h} - Z_k||_F
    over the dyadic lags h_1 < ... < h_J and the local exponents
    s_j = log(m(h_{j+1}) / m(h_j)) / log(h_{j+1} / h_j), each with a grouped jackknife-t interval:

    - ``inconclusive`` when fewer than 3 lags (L < 5) or fewer than 8 entries: no power law can be
      tested, or no interval over entries exists;
    - ``mixed`` (a crossover) when some pair of local exponents differs by more than ``tolerance``
      (0.25) with its Bonferroni interval over the pairs entirely beyond +-0.25;
    - ``ode`` / ``sde`` / ``none`` only when every pair's difference has its interval inside
      (-0.25, 0.25) (one power law shown, an intersection-union test) and the Hurst interval lies above
      0.75 / inside (0.25, 0.75) / below 0.25;
    - ``inconclusive`` otherwise, with the reason.

    ``local`` holds the local exponents (``local[0]`` at the smallest lags, ``local[-1]`` at the
    largest); ``reason`` says in words what decided.
    """

    regime: Regime
    hurst: HurstEstimate
    reason: str = ""
    local: tuple[LocalExponent, ...] = ()


@functools.cache
def minimum_depth(lags: int = MIN_LAGS) -> int:
    """The smallest depth whose dyadic lags number at least ``lags`` (3: to test one power law)."""
    L = 3
    while len(dyadic_lags(L)) < lags:
        L += 1
    return L


def sde_tolerance(n_lags: int) -> float:
    """Spread of the local exponents within which a path over ``n_lags`` lags may be called `sde`."""
    return min(CROSSOVER_TOLERANCE, SDE_MIMIC_SPREAD.get(n_lags, CROSSOVER_TOLERANCE))


def decide_regime(fit: LocalFit | None, *, depth: int, entries: int, constant: bool = False,
                  acf=None) -> tuple[Regime, str]:
    """The regime rule of ``RegimeDecision`` on a local fit: (regime, reason). ``acf``: the increments'
    autocorrelation (``estimators.increments``), which alone can name `sde` below 4 lags."""
    if constant:  # trivially Lipschitz, but nothing moved: no regularity to measure (a frozen or unused layer)
        return "inconclusive", "constant path: every increment is 0, nothing moved along depth to measure"
    if depth < minimum_depth():
        n = len(dyadic_lags(depth)) if depth >= 2 else 0
        return "inconclusive", (f"L = {depth}: {n} lag{'s' if n != 1 else ''}, cannot test one power law "
                                f"(needs {MIN_LAGS} lags, L >= {minimum_depth()})")
    if entries < MIN_ENTRIES:
        return "inconclusive", f"{entries} entries: the interval over entries needs at least {MIN_ENTRIES}"
    assert fit is not None
    if not np.isfinite(fit.hurst) or any(not np.all(np.isfinite(e.ci)) for e in fit.local):
        return "inconclusive", "a lag with no change in any entry: no exponent"
    tol = CROSSOVER_TOLERANCE

    def where(j):
        e = fit.local[j]
        return f"{e.estimate:.3f} [{e.ci[0]:.3f}, {e.ci[1]:.3f}] at lags {e.lags[0]}-{e.lags[1]}"

    beyond = [(abs(d), i, k) for i, k, d, _, (lo, hi) in fit.differences if lo > tol or hi < -tol]
    if beyond:
        _, i, k = max(beyond)
        return "mixed", (f"crossover: local exponents differ by more than {tol}: {where(i)} vs {where(k)}")
    loose = [(max(abs(lo), abs(hi)), i, k, d, (lo, hi)) for i, k, d, (lo, hi), _ in fit.differences
             if not (-tol < lo and hi < tol)]
    if loose:
        _, i, k, d, (lo, hi) = max(loose)
        return "inconclusive", (f"one power law not shown: local exponents {where(i)} and {where(k)} differ by "
                                f"{d:.3f} [{lo:.3f}, {hi:.3f}], not inside +-{tol}")
    regime = regime_of(fit.hurst_ci)
    lo, hi = fit.hurst_ci
    span = f"lags {fit.lags[0]}-{fit.lags[-1]}"
    if regime == "inconclusive":
        return "inconclusive", (f"one power law over {span}, but the Hurst interval [{lo:.3f}, {hi:.3f}] "
                                f"crosses {NONE_BELOW} or {ODE_ABOVE}")
    if regime == "sde" and (call := _sde_call(fit, acf, span)) is not None:
        return call
    shown = sde_tolerance(len(fit.lags)) if regime == "sde" else tol
    return regime, f"one power law over {span} (local exponents within +-{shown:g}); Hurst [{lo:.3f}, {hi:.3f}]"


def _sde_call(fit: LocalFit, acf, span: str) -> tuple[Regime, str] | None:
    """The `sde` band's extra checks: below 4 lags the increments' autocorrelation must be shown within the
    band (`sde`, or `inconclusive` saying why); from 4 lags the local exponents within the mimics' spread
    (`inconclusive` when not shown). None: the band's call stands."""
    J, stol, tol = len(fit.lags), sde_tolerance(len(fit.lags)), CROSSOVER_TOLERANCE
    lo, hi = fit.hurst_ci
    wide = max((max(abs(a), abs(b)) for _, _, _, (a, b), _ in fit.differences), default=0.0)
    if stol == 0 and within_band(acf):
        return "sde", (f"one power law over {span} (local exponents within +-{tol:g}); Hurst [{lo:.3f}, "
                       f"{hi:.3f}]; increments uncorrelated at lags 1-{len(acf)} (|acf| < {ACF_BAND:g}): "
                       "rough, not smooth plus layer noise")
    if wide < stol:
        return None
    why = (f"{J} lags cannot tell a rough path from a smooth path plus layer noise, and the increments' "
           f"autocorrelation was not shown within +-{ACF_BAND:g} at lags 1-{len(acf or ())}" + worst_lag(acf)
           if stol == 0 else
           f"local exponents not shown within +-{stol} (largest difference up to {wide:.3f}), the spread "
           f"a smooth path plus layer noise can have over {J} lags")
    return "inconclusive", f"Hurst [{lo:.3f}, {hi:.3f}] inside the sde band, but {why}"


def regime_from_sums(sums: LagSums, level: float = 0.95) -> RegimeDecision:
    """``classify_regime`` from a path's accumulated ``LagSums`` (in memory or streamed in chunks)."""
    L, P = sums.L, sums.P
    lags = tuple(int(h) for h in sums.lags)
    if not np.any(sums.increment2 > 0):
        h = HurstEstimate(float("nan"), (float("nan"), float("nan")), level, lags, P, True)
        regime, reason = decide_regime(None, depth=L, entries=P, constant=True)
        return RegimeDecision(regime, h, reason, ())
    fit = sums.fit(level)
    h = HurstEstimate(fit.hurst, fit.hurst_ci, level, fit.lags, P, False)
    acf = sums.acf_sums.acf(level) if sums.acf_sums is not None else None
    regime, reason = decide_regime(fit if L >= minimum_depth() else None, depth=L, entries=P, acf=acf)
    return RegimeDecision(regime, h, reason, fit.local if L >= minimum_depth() else ())


def classify_regime(path, *, level: float = 0.95, seed: int = 0) -> RegimeDecision:
    """The regime of one path (L, ...) at the observed scales: ``RegimeDecision``'s rule."""
    Z = _path(path)
    L, P = Z.shape
    if L >= 3 and P >= MIN_ENTRIES:
        sums = LagSums(L, P, dyadic_lags(L))
        sums.add(Z, 0)
        return regime_from_sums(sums, level)
    h = hurst(Z, level=level, seed=seed)
    regime, reason = decide_regime(None, depth=L, entries=P, constant=h.constant)
    return RegimeDecision(regime, h, reason, ())


def regime_of(ci: tuple[float, float]) -> Regime:
    """The band rule on a Hurst interval: ode above 0.75, none below 0.25, sde strictly between. Only a
    path shown to follow one power law gets it (``decide_regime``)."""
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
    regime_reason: str = ""
    local: tuple[LocalExponent, ...] = ()  # local exponents between consecutive lags, smallest lags first
    max_normalized_increment: float = float("nan")  # max_k ||Z_k+1/||Z_k+1|| - Z_k/||Z_k|| ||: scale-free

    def to_json(self) -> dict:
        """The record as a JSON object (sequences as lists, local exponents as objects)."""
        d = asdict(self)
        return {**d, **{k: list(d[k]) for k in ("shape", "hurst_ci", "increments", "norms", "local")}}


def path_stats(path, *, seed: int = 0) -> PathStats:
    """Every statistic of one path (L, ...). A path with entries above HUGE (about 2.6e120) is computed on
    Z 2^-e, e its largest binary exponent (exact: only the exponent changes), and the statistics that carry
    the scale are multiplied back; Hurst exponent, regime and normalized increments are scale-free. A
    quadratic variation beyond float64 is inf."""
    Z = np.asarray(path, dtype=float)
    big = float(np.max(np.abs(Z))) if Z.size else 0.0
    if np.isfinite(big) and big > HUGE:
        e = huge_exponent(big)
        return scaled_back(path_stats(np.ldexp(Z, -e), seed=seed), e)
    inc, norms = increment_norms(Z), layer_norms(Z)
    if Z.shape[0] >= 3:
        dec = classify_regime(Z, seed=seed)
        H, ci, regime, reason, local = dec.hurst.estimate, dec.hurst.ci, dec.regime, dec.reason, dec.local
    else:
        H, ci, local = float("nan"), (float("nan"), float("nan")), ()
        regime, reason = decide_regime(None, depth=int(Z.shape[0]), entries=int(np.prod(Z.shape[1:])))
    return PathStats(
        depth=int(Z.shape[0]), shape=tuple(Z.shape[1:]), max_increment=float(inc.max()),
        quadratic_variation=quadratic_variation(Z), max_norm=float(norms.max()), root_sum_squares=root_sum_squares(Z),
        hurst=H, hurst_ci=ci, regime=regime, increments=tuple(inc.tolist()), norms=tuple(norms.tolist()),
        regime_reason=reason, local=local, max_normalized_increment=float(normalized_increment_norms(Z).max()))
