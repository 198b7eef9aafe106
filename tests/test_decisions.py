"""The claims' decision rules (estimators/decisions.py) pinned at their documented boundaries, exactly.
Their error rates at planted truth are tests/test_calibration.py; these fix the inequalities."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from odecheck.estimators import decisions as D
from scipy import stats

TARGET = -0.85  # docs/theory.md: the rate boundary L^-0.85
FLAT = 0.125  # half the smallest predicted |1/2 - beta| among 0.25, 0.75, 1


def fit(lo, hi):
    return SimpleNamespace(ci=(lo, hi))


@pytest.mark.parametrize("ci,rate,rough", [
    ((-1.2, -0.86), "confirmed", "refuted"), ((-1.2, TARGET), "inconclusive", "inconclusive"),
    ((-0.84, 0.1), "refuted", "confirmed"), ((TARGET, 0.1), "inconclusive", "inconclusive"),
    ((-0.9, -0.8), "inconclusive", "inconclusive")])
def test_rate_and_rough_rules(ci, rate, rough):
    assert D.rate_decision(fit(*ci)) == rate
    assert D.rough_decision(fit(*ci)) == rough
    assert D.RATE_TARGET == TARGET
    # another target moves both rules
    assert D.rate_decision(fit(-0.6, -0.55), target=-0.5) == "confirmed"
    assert D.rough_decision(fit(-0.6, -0.55), target=-0.5) == "refuted"


@pytest.mark.parametrize("beta,regime", [(0.25, "explodes"), (0.49, "explodes"), (0.5, "stable"),
                                         (0.51, "identity"), (1.0, "identity")])
def test_iid_regime_is_critical_at_one_half(beta, regime):
    assert D.iid_regime(beta) == regime


def test_flat_band_is_derived_from_the_betas():
    assert D.FLAT == FLAT and D.BETAS == (0.25, 0.5, 0.75, 1.0) and D.CRITICAL_IID == 0.5


@pytest.mark.parametrize("expect,ci,call", [
    ("explodes", (0.13, 0.5), "ok"), ("explodes", (FLAT, 0.5), "unresolved"), ("explodes", (-0.2, 0.12), "contradicts"),
    ("explodes", (-0.2, FLAT), "unresolved"),
    ("identity", (-0.5, -0.13), "ok"), ("identity", (-0.5, -FLAT), "unresolved"), ("identity", (-0.12, 0.2), "contradicts"),
    ("identity", (-FLAT, 0.2), "unresolved"),
    ("stable", (-0.12, 0.12), "ok"), ("stable", (-FLAT, 0.1), "unresolved"), ("stable", (-0.1, FLAT), "unresolved"),
    ("stable", (-0.5, -0.13), "contradicts"), ("stable", (0.13, 0.5), "contradicts"),
    ("stable", (-0.5, -FLAT), "unresolved"), ("stable", (FLAT, 0.5), "unresolved"), ("stable", (-0.2, 0.2), "unresolved")])
def test_cell_rule(expect, ci, call):
    assert D.cell_decision(ci, expect) == call


@pytest.mark.parametrize("R,alpha,k", [(16, 0.05, 3), (32, 0.05, 9), (16, 0.2, 4), (5, 0.05, 0), (6, 0.05, 0),
                                       (7, 0.05, 0), (9, 0.05, 1), (1, 0.05, 0)])
def test_median_interval_is_the_binomial_order_statistic(R, alpha, k):
    # k: the largest 0-based index with P(Bin(R, 1/2) <= k) <= alpha / 2 (0 when none, min..max)
    ks = [j for j in range(R) if j < R / 2 and stats.binom.cdf(j, R, 0.5) <= alpha / 2]
    assert (max(ks) if ks else 0) == k
    v = np.random.default_rng(R).permutation(np.arange(R, dtype=float) * 1.5)
    assert D.median_interval(v, alpha) == (1.5 * k, 1.5 * (R - 1 - k))


@pytest.mark.parametrize("lo_value,verdict", [(0.51, "confirmed"), (0.5, "inconclusive"), (0.3, "inconclusive")])
def test_pl_rule_above_the_factor_two(lo_value, verdict):
    # 16 members: the interval is [v_(3), v_(12)] (0-based); put v_(3) at lo_value, v_(12) at 0.9
    v = np.array([0.1, 0.2, 0.25, lo_value] + [0.7] * 8 + [0.9, 1.0, 1.1, 1.2])
    got, median, ci = D.pl_decision(v)
    assert (got, ci) == (verdict, (lo_value, 0.9)) and median == float(np.median(v))
    assert D.KEEP == 0.5 and D.ALPHA == 0.05


@pytest.mark.parametrize("hi_value,verdict", [(0.49, "refuted"), (0.5, "inconclusive")])
def test_pl_rule_below_the_factor_two(hi_value, verdict):
    v = np.array([0.01] * 4 + [0.2] * 8 + [hi_value, 0.6, 0.7, 0.8])
    assert D.pl_decision(v)[0] == verdict
    # alpha and keep are the rule's parameters
    assert D.pl_decision(v, keep=0.1)[0] == "inconclusive"
    assert D.pl_decision(v, alpha=0.5)[2] == D.median_interval(v, 0.5)


def test_relu_rule_convergence_threshold():
    ok = dict(frozen=True, increments=[5.0], C=2.0)
    assert D.CONVERGED == 1e-6
    assert D.relu_decision(max_rel_error=0.99e-6, **ok) == "confirmed"
    assert D.relu_decision(max_rel_error=1e-6, **ok) == "inconclusive"
    # not converged and below the floor: no verdict (the floor applies to converged runs)
    assert D.relu_decision(frozen=True, increments=[0.1], C=2.0, max_rel_error=1e-3) == "inconclusive"
    # the floor is the smallest increment's
    assert D.relu_decision(frozen=True, increments=[5.0, 1.3], C=2.0, max_rel_error=0.0) == "refuted"
    assert D.relu_decision(frozen=True, increments=[5.0, 1.4], C=2.0, max_rel_error=0.0) == "confirmed"


@pytest.mark.parametrize("R,alpha", [(16, 0.8), (5, 0.375), (9, 0.9)])
def test_median_interval_where_the_half_bound_or_a_tie_decides(R, alpha):
    # alpha 0.8 with 16 members: k stops at 6 by the binomial condition (cdf(7) = 0.4018 > 0.4);
    # alpha 0.375 with 5 members: cdf(1) = 6/32 equals alpha/2 exactly, and a tie is admitted
    ks = [j for j in range(R) if j < R / 2 and stats.binom.cdf(j, R, 0.5) <= alpha / 2]
    k = max(ks) if ks else 0
    v = np.arange(R, dtype=float)
    assert D.median_interval(v, alpha) == (float(k), float(R - 1 - k))
    assert {(16, 0.8): 6, (5, 0.375): 1, (9, 0.9): 3}[(R, alpha)] == k


def test_relu_floor_equality_is_not_below_it():
    C = 3.0
    assert D.relu_decision(frozen=True, increments=[2 * np.log(C)], C=C, max_rel_error=0.0) == "confirmed"


def test_median_interval_reaches_the_middle_when_alpha_allows():
    # alpha 0.9, 16 members: cdf(7) = 0.4018 <= 0.45, so the interval closes to [v_(7), v_(8)]
    assert D.median_interval(np.arange(16.0), 0.9) == (7.0, 8.0)


@pytest.mark.parametrize("ci,call", [((-0.74, -0.26), "ok"), ((-0.75, -0.3), "unresolved"), ((-0.7, -0.25), "unresolved"),
                                     ((-1.2, -0.76), "contradicts"), ((-0.24, 0.1), "contradicts"),
                                     ((-0.8, -0.2), "unresolved"), ((-1.0, -0.75), "unresolved"),
                                     ((-0.25, 0.1), "unresolved")])
def test_brownian_band(ci, call):
    assert D.BROWNIAN_BAND == (-0.75, -0.25)
    assert D.brownian_decision(ci) == call


@pytest.mark.parametrize("smooth_ci,brownian_ci,smooth_r,brownian_r,verdict", [
    ((-1.1, -0.9), (-0.6, -0.4), ["ode"] * 3, ["sde"] * 3, "confirmed"),
    ((-1.1, -0.9), (-0.6, -0.4), ["ode", "inconclusive", "ode"], ["sde"] * 3, "inconclusive"),
    ((-1.1, -0.9), (-0.6, -0.4), ["ode"] * 3, ["sde", "none", "sde"], "inconclusive"),
    ((-1.1, -0.85), (-0.6, -0.4), ["ode"] * 3, ["sde"] * 3, "inconclusive"),
    ((-0.8, -0.5), (-0.6, -0.4), ["ode"] * 3, ["sde"] * 3, "refuted"),
    ((-1.1, -0.9), (-0.2, 0.1), ["ode"] * 3, ["sde"] * 3, "refuted"),
    ((-1.1, -0.9), (-0.6, -0.4), ["sde"] * 3, ["sde"] * 3, "refuted"),
    ((-1.1, -0.9), (-0.6, -0.4), ["ode"] * 3, ["ode"] * 3, "refuted"),
])
def test_feature_rule(smooth_ci, brownian_ci, smooth_r, brownian_r, verdict):
    assert D.feature_decision(smooth_ci=smooth_ci, brownian_ci=brownian_ci, smooth_regimes=smooth_r,
                              brownian_regimes=brownian_r) == verdict


@pytest.mark.parametrize("transfer,lazy_ci,expected,verdict,call", [
    ("transfers", (-0.1, 0.1), 0.0, "confirmed", "ok"),
    ("transfers", (-0.3, 0.1), 0.0, "inconclusive", "unresolved"),
    ("transfers", (-0.7, -0.3), 0.0, "refuted", "contradicts"),      # lazier than alpha = 1 predicts
    ("drifts", (-0.1, 0.1), 0.0, "refuted", "ok"),
    ("inconclusive", (-0.1, 0.1), 0.0, "inconclusive", "ok"),
    ("transfers", (-0.6, -0.4), -0.5, "confirmed", "ok"),             # Depth-muP: alpha - 1 = -1/2
    ("transfers", (-0.1, 0.1), -0.5, "refuted", "contradicts"),
    ("transfers", None, 0.0, "confirmed", "not applicable"),          # a block linear in its weights
    ("drifts", None, 0.0, "refuted", "not applicable"),
    ("inconclusive", None, 0.0, "inconclusive", "not applicable"),
])
def test_transfer_rule(transfer, lazy_ci, expected, verdict, call):
    from odecheck.estimators.decisions import LAZY_BAND, transfer_decision

    assert LAZY_BAND == abs(-0.5 - 0.0) / 2  # halfway between the Depth-muP and CompleteP predictions
    assert transfer_decision(transfer, lazy_ci, expected) == (verdict, call)
