"""The claims' decision rules, one home for all of them: pure functions of an estimate and its
interval (or of a run's measured facts) returning the verdict. Their calibration at planted truth
is tests/test_calibration.py; their mutation score is in docs/calibration.md.

References
----------
[M24] Marion et al., ICLR 2024; [M25] Marion et al., JMLR 2025.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Outcome = Literal["confirmed", "refuted", "inconclusive", "diverged"]
ALPHA = 0.05
RATE_TARGET = -0.85  # rate claims: error <= C/L is confirmed when the slope interval lies below L^-0.85;
# a stated margin (docs/theory.md, "The rate margin -0.85": why, what it controls, what it changes)


def rate_decision(fit, *, target: float = RATE_TARGET) -> Outcome:
    """Rate claims (error <= C/L): confirmed if the whole interval lies below ``target``,
    refuted if it lies above, else inconclusive."""
    return rate_call(fit.ci, target=target)


def rate_call(ci: tuple[float, float], *, target: float = RATE_TARGET) -> Outcome:
    """:func:`rate_decision` on the slope interval itself."""
    lo, hi = ci
    if hi < target:
        return "confirmed"
    if lo > target:
        return "refuted"
    return "inconclusive"


def rough_decision(fit, *, target: float = RATE_TARGET) -> Outcome:
    """The mirror image (iid-init-rough: increments do not shrink like 1/L): confirmed if the whole
    interval lies above ``target``, refuted if below, else inconclusive."""
    return {"confirmed": "refuted", "refuted": "confirmed", "inconclusive": "inconclusive"}[
        rate_decision(fit, target=target)]


# Order claims (error ~ L^-p, claim 12): the same margin as the rate claims, 1 + RATE_TARGET = 0.15 above -p
ORDER_SLACK = 1.0 + RATE_TARGET


def order_call(ci: tuple[float, float], order: int, *, reaches: bool = True) -> Outcome:
    """An error ``reaches`` order p (slope interval below -p + ORDER_SLACK: confirmed, above: refuted), or,
    with ``reaches=False``, stays slower than order p (the mirror image)."""
    call = rate_call(ci, target=-order + ORDER_SLACK)
    if reaches:
        return call
    return {"confirmed": "refuted", "refuted": "confirmed", "inconclusive": "inconclusive"}[call]


def all_of(calls) -> Outcome:
    """Several predictions at once: confirmed if every call is, refuted if any is, else inconclusive."""
    calls = list(calls)
    if not calls:
        raise ValueError("all_of needs at least one call")
    if any(c == "refuted" for c in calls):
        return "refuted"
    return "confirmed" if all(c == "confirmed" for c in calls) else "inconclusive"


CRITICAL_IID = 0.5  # iid weights: ||h_L - h_0|| / ||h_0|| ~ L^(1/2 - beta) [M25]
BETAS = (0.25, 0.5, 0.75, 1.0)
# |slope| below FLAT counts as Theta(1): half the smallest predicted |1/2 - beta| among the
# non-critical betas tested, so that no predicted slope lies inside the band (0.125)
FLAT = 0.5 * min(abs(b - CRITICAL_IID) for b in BETAS if b != CRITICAL_IID)


def iid_regime(beta: float) -> str:
    """The [M25] prediction for iid weights at residual scaling L^-beta."""
    if beta < CRITICAL_IID:
        return "explodes"
    return "stable" if beta == CRITICAL_IID else "identity"


def cell_decision(ci: tuple[float, float], expect: str) -> str:
    """'ok' if the slope interval shows the expected regime, 'contradicts' if it excludes it,
    else 'unresolved' (explodes: slope > FLAT; identity: slope < -FLAT; stable: |slope| < FLAT)."""
    lo, hi = ci
    if expect == "explodes":
        return "ok" if lo > FLAT else ("contradicts" if hi < FLAT else "unresolved")
    if expect == "identity":
        return "ok" if hi < -FLAT else ("contradicts" if lo > -FLAT else "unresolved")
    return "ok" if (lo > -FLAT and hi < FLAT) else ("contradicts" if (hi < -FLAT or lo > FLAT) else "unresolved")


# The overparameterized argument keeps the PL constant within a factor 2 of its value at
# initialization along the flow (min_t r(t) >= r(0) / 2). Confirmed when the median member's
# retained fraction is above 1/2 with confidence, refuted when it is below 1/2 with confidence.
KEEP = 0.5


def pl_decision(retained, *, alpha: float = ALPHA, keep: float = KEEP) -> tuple[str, float, tuple[float, float]]:
    """The PL rule on the members' retained fractions rho = min_t r(t) / r(0): the median with its
    distribution-free (1 - alpha) interval; confirmed if the interval lies above ``keep`` (1/2),
    refuted if below, else inconclusive. Returns (verdict, median, interval)."""
    lo, hi = median_interval(retained, alpha)
    verdict = "confirmed" if lo > keep else ("refuted" if hi < keep else "inconclusive")
    return verdict, float(np.median(retained)), (lo, hi)


def median_interval(values, alpha: float) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics with binomial coverage >= 1 - alpha
    (the widest, min..max, when the sample is too small for the nominal level)."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, dtype=float))
    R = len(v)
    # P(median < v_(k)) = P(Bin(R, 1/2) <= k) (0-based k): take the largest k with that <= alpha/2
    k = -1
    while k + 1 < R / 2 and binom.cdf(k + 1, R, 0.5) <= alpha / 2:
        k += 1
    k = max(k, 0)
    return float(v[k]), float(v[R - 1 - k])


CONVERGED = 1e-6  # relative distance of the even layers to w* that counts as converged


def relu_decision(*, frozen: bool, max_rel_error: float, increments, C: float) -> str:
    """The counterexample's rule: refuted if an odd layer moved, or if the even layers converged to
    w* and some depth's max increment fell below 2 log C (the Omega(1) floor: w* >= 2 log C);
    confirmed if they converged and every increment stays above it; else inconclusive."""
    converged = max_rel_error < CONVERGED
    if not frozen or (converged and float(np.min(increments)) < 2 * np.log(C)):
        return "refuted"
    return "confirmed" if converged else "inconclusive"


# Slopes of max_k ||h_{k+1} - h_k|| (or of a weight path's max increment) in L for the three regimes
# (docs/theory.md): smooth L^-1, Brownian L^-1/2, white noise L^0. The Brownian band reaches halfway
# to each neighbour, so that no other regime's slope lies inside it.
SLOPE_SMOOTH, SLOPE_BROWNIAN, SLOPE_NOISE = -1.0, -0.5, 0.0
BROWNIAN_BAND = ((SLOPE_SMOOTH + SLOPE_BROWNIAN) / 2, (SLOPE_BROWNIAN + SLOPE_NOISE) / 2)  # (-0.75, -0.25)


def brownian_decision(ci: tuple[float, float], band: tuple[float, float] = BROWNIAN_BAND) -> str:
    """Diffusive increments (L^-1/2): 'ok' if the slope interval lies inside ``band``, 'contradicts' if
    it lies wholly outside it, else 'unresolved'."""
    lo, hi = ci
    if band[0] < lo and hi < band[1]:
        return "ok"
    if hi < band[0] or lo > band[1]:
        return "contradicts"
    return "unresolved"


def limit_decision(ci: tuple[float, float], band: tuple[float, float] = BROWNIAN_BAND) -> str:
    """The limit of a family of depths from the slope interval of its max increment in L: 'ode' if it lies
    below the Brownian band (toward L^-1), 'sde' if inside it (L^-1/2), 'none' if above it (toward
    L^0: increments that do not shrink, no limit; the word a path's regime uses for the same), else
    'inconclusive'. Each wrong call needs the interval to miss
    the true slope on one side: at most alpha/2 at a band's edge, less beyond it."""
    lo, hi = ci
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if hi < band[0]:
        return "ode"
    if lo > band[1]:
        return "none"
    if band[0] < lo and hi < band[1]:
        return "sde"
    return "inconclusive"


def feature_decision(*, smooth_ci, brownian_ci, smooth_regimes, brownian_regimes) -> str:
    """feature-regularity: confirmed if the smooth setting's increments fall faster than L^-0.85 and
    every member's feature path is 'ode', and the iid setting's increments scale like L^-1/2 (the
    band) and every member's path is 'sde'; refuted if a slope interval contradicts its prediction or
    every member of a setting gets the other setting's regime; else inconclusive."""
    rate = rate_call(tuple(smooth_ci))
    brown = brownian_decision(brownian_ci)
    if (rate == "confirmed" and brown == "ok" and all(r == "ode" for r in smooth_regimes)
            and all(r == "sde" for r in brownian_regimes)):
        return "confirmed"
    if (rate == "refuted" or brown == "contradicts" or all(r == "sde" for r in smooth_regimes)
            or all(r == "ode" for r in brownian_regimes)):
        return "refuted"
    return "inconclusive"


def transfer_call(ci: tuple[float, float], band: float) -> str:
    """The transfer estimator's call on the drift slope's interval: "transfers" when it lies strictly inside
    +-``band``, "drifts" when it lies strictly outside (wholly below -band or above +band), else
    "inconclusive"."""
    lo, hi = ci
    if -band < lo and hi < band:
        return "transfers"
    if hi < -band or lo > band:
        return "drifts"
    return "inconclusive"


def law_call(ci: tuple[float, float], law: float, band: float) -> Outcome:
    """A depth law for eta*(L) (claim 13: slope -3/2): confirmed when the slope interval lies strictly inside
    law +- ``band`` (claim 10's grid-resolution band), refuted when it lies strictly outside, else inconclusive."""
    lo, hi = ci
    return {"transfers": "confirmed", "drifts": "refuted", "inconclusive": "inconclusive"}[
        transfer_call((lo - law, hi - law), band)]


# Claim 10's second estimate: [CP25]'s laziness scales like L^(alpha - 1). The band reaches halfway to the
# neighbouring rule's prediction (Depth-muP alpha - 1 = -1/2, CompleteP 0), so no other rule's slope lies in it.
LAZY_BAND = 0.25


def transfer_decision(transfer: str, lazy_ci: tuple[float, float] | None, expected_lazy: float,
                      band: float = LAZY_BAND) -> tuple[Outcome, str]:
    """depth-transfer: ``transfer`` is the transfer estimator's call ("transfers", "drifts", "inconclusive"),
    ``lazy_ci`` the laziness slope's interval. The laziness call is 'ok' inside expected_lazy +- band,
    'contradicts' wholly outside it, else 'unresolved'. Confirmed if it transfers and the laziness is 'ok';
    refuted if it drifts or the laziness contradicts; else inconclusive. ``lazy_ci`` None: a block linear in
    its weights, whose laziness is 0 by construction (call 'not applicable'): the transfer decides alone.
    Returns (verdict, laziness call)."""
    if lazy_ci is None:
        return {"transfers": "confirmed", "drifts": "refuted"}.get(transfer, "inconclusive"), "not applicable"
    lazy = brownian_decision(tuple(lazy_ci), (expected_lazy - band, expected_lazy + band))
    if transfer == "transfers" and lazy == "ok":
        return "confirmed", lazy
    if transfer == "drifts" or lazy == "contradicts":
        return "refuted", lazy
    return "inconclusive", lazy


# Claim 11: the run-to-run spread ~ L^-1/2 and the ensemble mean's bias ~ L^-1. Each band reaches halfway to
# the neighbouring rate on a half-integer grid of exponents (0, -1/2, -1, -3/2), so no neighbour lies in it.
SPREAD_SLOPE, BIAS_SLOPE, RATE_BAND = -0.5, -1.0, 0.25


def mean_ode_decision(spread_ci, bias_ci) -> tuple[Outcome, tuple[str, str]]:
    """mean-ode-rate: each slope interval is 'ok' inside its band (-1/2 +- 1/4, -1 +- 1/4), 'contradicts' wholly
    outside it, else 'unresolved' (a declined bias slope, NaN, is unresolved). Confirmed if both are 'ok',
    refuted if either contradicts, else inconclusive. Returns (verdict, (spread call, bias call))."""
    calls = tuple("unresolved" if not np.all(np.isfinite(ci)) else
                  brownian_decision(tuple(ci), (target - RATE_BAND, target + RATE_BAND))
                  for ci, target in ((spread_ci, SPREAD_SLOPE), (bias_ci, BIAS_SLOPE)))
    if all(c == "ok" for c in calls):
        return "confirmed", calls
    return ("refuted" if "contradicts" in calls else "inconclusive"), calls
