"""The estimators and decision rules pinned exactly: every formula recomputed here independently
(numpy/scipy written out, constants from the documentation), every branch and every error
message. These are the tests the mutation score of docs/calibration.md rests on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from odecheck.estimators import (
    classify_regime,
    hurst,
    init_ratios,
    l2_distance,
    max_increment,
    max_norm,
    path_stats,
    pl_summary,
    quadratic_variation,
    root_sum_squares,
    scaling_exponent,
)
from odecheck.init import fbm_paths, member_generator
from scipy import stats

import odecheck as oc

DEPTHS = np.array([16.0, 32.0, 64.0, 128.0, 256.0])


def _panel(R: int, seed: int = 0, slope: float = -1.0, sigma: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 2.0 * DEPTHS[:, None] ** slope * np.exp(sigma * rng.standard_normal((len(DEPTHS), R)))


def _message(excinfo) -> str:
    return str(excinfo.value)


# ----------------------------------------------------------------------------- scaling exponent
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_members_interval_is_the_student_t_interval_over_member_slopes(level):
    V = _panel(6, seed=1)
    x = np.log(DEPTHS)
    slopes = np.array([np.polyfit(x, np.log(V[:, r]), 1)[0] for r in range(6)])
    center = np.polyfit(x, np.log(V).mean(1), 1)
    h = stats.t.ppf((1 + level) / 2, 5) * slopes.std(ddof=1) / np.sqrt(6)
    f = scaling_exponent(DEPTHS, V, level=level)
    assert f.estimate == pytest.approx(center[0], abs=1e-12) == pytest.approx(slopes.mean(), abs=1e-12)
    assert f.intercept == pytest.approx(center[1], abs=1e-12)
    assert f.ci == pytest.approx((center[0] - h, center[0] + h), abs=1e-12)
    assert (f.level, f.n, f.members, f.method) == (level, 5, 6, "members-t")


def test_one_replicate_gets_the_ols_t_interval_and_two_points_none():
    v = _panel(1, seed=2)[:, 0]
    res = stats.linregress(np.log(DEPTHS), np.log(v))
    h = stats.t.ppf(0.975, len(DEPTHS) - 2) * res.stderr
    for vals in (v, v[:, None]):
        f = scaling_exponent(DEPTHS, vals)
        assert f.estimate == pytest.approx(res.slope, abs=1e-12)
        assert f.intercept == pytest.approx(res.intercept, abs=1e-12)
        assert f.ci == pytest.approx((res.slope - h, res.slope + h), abs=1e-10)
        assert (f.members, f.method, f.n) == (1, "ols-t", 5)
    two = scaling_exponent([8, 32], [1.0, 0.25])
    assert two.estimate == pytest.approx(-1.0) and all(np.isnan(two.ci)) and two.intercept == pytest.approx(
        np.log(8.0))
    assert (two.members, two.method, two.n) == (1, "ols-t", 2)
    # three points: one degree of freedom
    three = scaling_exponent([4, 8, 16], [1.0, 0.6, 0.2])
    r3 = stats.linregress(np.log([4, 8, 16]), np.log([1.0, 0.6, 0.2]))
    h3 = stats.t.ppf(0.975, 1) * r3.stderr
    assert three.ci == pytest.approx((r3.slope - h3, r3.slope + h3), abs=1e-10)


def test_theil_sen_is_scipys_on_every_point():
    V = _panel(3, seed=3)
    xs = np.repeat(np.log(DEPTHS), 3)
    ref = stats.theilslopes(np.log(V).ravel(), xs, alpha=0.9)
    f = scaling_exponent(DEPTHS, V, method="theil-sen", level=0.9)
    assert (f.estimate, f.ci[0], f.ci[1], f.intercept) == pytest.approx((ref[0], ref[2], ref[3], ref[1]), abs=1e-12)
    assert (f.level, f.n, f.members, f.method) == (0.9, 5, 3, "theil-sen")


def test_bootstrap_is_the_expanded_percentile_interval_of_resampled_mean_log_slopes():
    V = _panel(10, seed=4)
    logv, x = np.log(V), np.log(DEPTHS)
    xc = x - x.mean()
    for paired in (False, True):
        rng = np.random.default_rng(9)
        if paired:
            idx = np.repeat(rng.integers(0, 10, size=(500, 1, 10)), len(DEPTHS), axis=1)
        else:
            idx = rng.integers(0, 10, size=(500, len(DEPTHS), 10))
        boot = np.array([[logv[d, idx[b, d]].mean() for d in range(len(DEPTHS))] for b in range(500)])
        slopes = np.array([np.polyfit(x, row, 1)[0] for row in boot])
        tail = stats.norm.cdf(-np.sqrt(10 / 9) * stats.t.ppf(0.975, 9))
        lo, hi = np.quantile(slopes, [tail, 1 - tail])
        f = scaling_exponent(DEPTHS, V, method="bootstrap", n_boot=500, seed=9, paired=paired)
        assert f.ci == pytest.approx((lo, hi), abs=1e-10), paired
        assert f.estimate == pytest.approx(np.polyfit(x, logv.mean(1), 1)[0], abs=1e-12)
        assert (f.members, f.method, f.n, f.level) == (10, "bootstrap", 5, 0.95)
        assert abs(xc @ xc) > 0


def test_bootstrap_resamples_and_pairs_columns():
    # member offsets shared across depths: pairing keeps them and the slope's spread is small;
    # resampling each depth apart mixes them and widens the interval
    rng = np.random.default_rng(5)
    offsets = np.exp(rng.standard_normal(12))
    V = DEPTHS[:, None] ** -1.0 * offsets[None, :] * np.exp(0.01 * rng.standard_normal((len(DEPTHS), 12)))
    paired = scaling_exponent(DEPTHS, V, method="bootstrap", paired=True, seed=1)
    unpaired = scaling_exponent(DEPTHS, V, method="bootstrap", paired=False, seed=1)
    assert paired.ci[1] - paired.ci[0] < 0.2 * (unpaired.ci[1] - unpaired.ci[0])
    assert abs(paired.estimate + 1.0) < 0.02  # noise sd 0.01 per entry
    # a different seed draws other resamples; the same seed the same ones
    assert scaling_exponent(DEPTHS, V, method="bootstrap", seed=2).ci != unpaired.ci
    assert scaling_exponent(DEPTHS, V, method="bootstrap", seed=1).ci == unpaired.ci


@pytest.mark.parametrize("depths,values,name,expected", [
    ([4], [1.0], "depths", "at least two positive depths"),
    ([[4, 8]], [1.0, 1.0], "depths", "at least two positive depths"),
    ([0, 8], [1.0, 1.0], "depths", "at least two positive depths"),
    ([-4, 8], [1.0, 1.0], "depths", "at least two positive depths"),
    ([4, 8], [1.0, 1.0, 1.0], "values", "(2, R): one row per depth"),
    ([4, 8], np.ones((2, 2, 2)), "values", "(2, R): one row per depth"),
    ([4, 8], [1.0, 0.0], "values", "positive finite statistics"),
    ([4, 8], [1.0, np.inf], "values", "positive finite statistics"),
    ([4, 8], [1.0, np.nan], "values", "positive finite statistics"),
])
def test_scaling_rejects_bad_panels_naming_the_argument(depths, values, name, expected):
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent(depths, values)
    assert e.value.argument == name and _message(e).endswith("expected " + expected)


def test_scaling_rejects_bad_level_and_method():
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(oc.InvalidArgument) as e:
            scaling_exponent(DEPTHS, _panel(4), level=level)
        assert _message(e) == f"level={level!r}: expected a float in (0, 1)"
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent(DEPTHS, _panel(4), method="ols")
    assert _message(e) == "method='ols': expected 'members', 'bootstrap' or 'theil-sen'"
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent(DEPTHS, _panel(7), method="bootstrap")
    assert _message(e) == ("method='bootstrap': expected 'members' or 'theil-sen' with 7 members per depth "
                           "(the bootstrap needs at least 8)")
    scaling_exponent(DEPTHS, _panel(8), method="bootstrap")  # 8 is enough


# ----------------------------------------------------------------------------- path statistics
def test_path_statistics_flatten_every_axis_after_the_layer_axis():
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((7, 3, 2))
    F = Z.reshape(7, 6)
    inc = np.linalg.norm(F[1:] - F[:-1], axis=1)
    assert max_increment(Z) == pytest.approx(inc.max())
    assert quadratic_variation(Z) == pytest.approx((inc**2).sum())
    assert max_norm(Z) == pytest.approx(np.linalg.norm(F, axis=1).max())
    assert root_sum_squares(Z) == pytest.approx(np.linalg.norm(F))
    assert max_increment(np.arange(4.0)) == pytest.approx(1.0)  # a 1-d path: one entry per layer
    s = path_stats(Z)
    assert (s.depth, s.shape) == (7, (3, 2))
    assert (s.max_increment, s.quadratic_variation, s.max_norm, s.root_sum_squares) == pytest.approx(
        (inc.max(), (inc**2).sum(), np.linalg.norm(F, axis=1).max(), np.linalg.norm(F)))
    h = hurst(Z)
    assert s.hurst == h.estimate and s.hurst_ci == h.ci and s.regime == classify_regime(Z).regime


def test_path_stats_of_two_layers_has_no_hurst_exponent():
    s = path_stats(np.array([[0.0, 1.0], [3.0, 5.0]]))
    assert s.depth == 2 and s.max_increment == pytest.approx(5.0) and s.regime == "inconclusive"
    assert np.isnan(s.hurst) and all(np.isnan(s.hurst_ci))


@pytest.mark.parametrize("bad,expected", [
    (np.zeros((1, 3)), "an array with a leading layer axis of length >= 2"),
    (np.float64(3.0), "an array with a leading layer axis of length >= 2"),
    (np.array([[0.0], [np.inf]]), "finite weights"),
    (np.array([[0.0], [np.nan]]), "finite weights"),
])
def test_paths_are_validated_with_the_argument_named(bad, expected):
    for f in (max_increment, quadratic_variation, max_norm, root_sum_squares, hurst):
        with pytest.raises(oc.InvalidArgument) as e:
            f(bad)
        assert e.value.argument == "path" and _message(e).endswith("expected " + expected), f
    with pytest.raises(oc.InvalidArgument) as e:
        hurst(np.zeros((2, 3)) + np.arange(2)[:, None])
    assert _message(e) == "path='<depth 2>': expected at least 3 layers to estimate a Hurst exponent"


# ----------------------------------------------------------------------------- Hurst exponent
@pytest.mark.parametrize("L,lags", [(3, [1, 2]), (5, [1, 2, 4]), (64, [1, 2, 4]), (80, [1, 2, 4]),
                                    (128, [1, 2, 4, 8]), (256, [1, 2, 4, 8, 16]), (1024, [1, 2, 4, 8, 16, 32, 64])])
def test_dyadic_lags_up_to_max_4_and_L_over_16(L, lags):
    # lags 1, 2, 4, ... <= max(4, L // 16), and below L
    h = hurst(np.cumsum(np.random.default_rng(L).standard_normal((L, 8)), axis=0))
    assert list(h.lags) == lags


def test_hurst_estimate_is_the_log_log_slope_of_mean_increment_norms():
    Z = fbm_paths(10, 200, 0.6, member_generator(7, 0)).T.numpy()
    lags = np.array([1, 2, 4, 8])
    m = [np.linalg.norm(Z[h:] - Z[:-h], axis=1).mean() for h in lags]
    h = hurst(Z, level=0.9)
    assert h.estimate == pytest.approx(np.polyfit(np.log(lags), np.log(m), 1)[0], abs=1e-12)
    assert (h.level, h.n, h.constant) == (0.9, 10, False)


def test_grouped_jackknife_with_a_ragged_last_group():
    # 100 entries, 64 contiguous groups: entry i in group floor(64 i / 100) (36 groups of 2, 28 of 1),
    # each left out in turn
    Z = fbm_paths(100, 128, 0.4, member_generator(8, 0)).T.numpy()
    lags = np.array([1, 2, 4, 8])

    def slope(M):
        m = [np.linalg.norm(M[h:] - M[:-h], axis=1).mean() for h in lags]
        return np.polyfit(np.log(lags), np.log(m), 1)[0]

    groups = [(np.arange(100) * 64) // 100 == g for g in range(64)]
    assert sorted(np.bincount([int(i * 64 // 100) for i in range(100)])) == [1] * 28 + [2] * 36
    jk = np.array([slope(Z[:, ~grp]) for grp in groups])
    se = np.sqrt(63 / 64 * ((jk - jk.mean()) ** 2).sum())
    for level in (0.8, 0.95):
        q = stats.t.ppf((1 + level) / 2, 63)
        h = hurst(Z, level=level)
        assert h.ci == pytest.approx((slope(Z) - q * se, slope(Z) + q * se), abs=1e-10)


def test_hurst_of_a_constant_path_and_of_a_period_two_path():
    c = hurst(np.ones((10, 3)))
    assert c.constant and np.isnan(c.estimate) and all(np.isnan(c.ci)) and c.n == 3 and c.lags == (1, 2, 4)
    # period two: every even lag has zero increments, so no slope exists
    Z = np.tile(np.array([[0.0], [1.0]]), (20, 9))
    p = hurst(Z)
    assert not p.constant and np.isnan(p.estimate)
    assert classify_regime(np.ones((10, 3))).regime == "inconclusive"  # constant: nothing moved to measure


def test_few_entries_take_the_moving_block_bootstrap():
    Z = fbm_paths(3, 300, 0.5, member_generator(9, 0)).T.numpy()  # 3 < 8 entries
    a, b, c = hurst(Z, seed=1), hurst(Z, seed=1), hurst(Z, seed=2)
    assert a.ci == b.ci and a.ci != c.ci and a.n == 3
    # independently: blocks of round(L^(1/3)) = 7 increments from seed 1's stream, percentile interval
    rng = np.random.default_rng(1)
    inc = np.diff(Z, axis=0)
    lags = np.array(a.lags)
    est = []
    for _ in range(200):
        starts = rng.integers(0, 300 - 7, 43)
        pieces = np.concatenate([inc[s:s + 7] for s in starts])[:299]
        Zb = np.concatenate([Z[:1], Z[:1] + np.cumsum(pieces, 0)])
        m = [np.linalg.norm(Zb[h:] - Zb[:-h], axis=1).mean() for h in lags]
        est.append(np.polyfit(np.log(lags), np.log(m), 1)[0])
    assert a.ci == pytest.approx(tuple(np.quantile(est, [0.025, 0.975])), abs=1e-10)
    narrow = hurst(Z, seed=1, level=0.5)
    assert narrow.ci[1] - narrow.ci[0] < a.ci[1] - a.ci[0]
    assert hurst(Z, seed=1, n_boot=50).ci != a.ci


@pytest.mark.parametrize("ci,regime", [
    ((0.76, 1.2), "ode"), ((0.75, 1.2), "inconclusive"), ((0.74, 0.9), "inconclusive"),
    ((-0.3, 0.24), "none"), ((-0.3, 0.25), "inconclusive"), ((0.1, 0.3), "inconclusive"),
    ((0.26, 0.74), "sde"), ((0.25, 0.6), "inconclusive"), ((0.3, 0.75), "inconclusive"), ((0.2, 0.8), "inconclusive"),
])
def test_regime_thresholds_are_the_documented_ones(ci, regime):
    # docs/theory.md: ode if the Hurst interval lies above 0.75, none below 0.25, sde strictly between
    from odecheck.estimators import regularity

    assert regularity.regime_of(ci) == regime


def test_classify_regime_passes_level_and_seed_to_the_interval():
    Z = fbm_paths(4, 256, 0.5, member_generator(10, 0)).T.numpy()
    for level, seed in ((0.9, 3), (0.99, 4)):
        assert classify_regime(Z, level=level, seed=seed).hurst == hurst(Z, level=level, seed=seed)


# ----------------------------------------------------------------------------- L2 distance
def test_l2_distance_of_equal_grids_and_of_a_refinement():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((8, 2, 3)), rng.standard_normal((8, 2, 3))
    assert l2_distance(a, b) == pytest.approx(np.linalg.norm(a - b) / np.sqrt(8))
    assert l2_distance(a, b) == pytest.approx(l2_distance(b, a))
    # a path and its refinement by repetition are the same function
    assert l2_distance(a, np.repeat(a, 3, axis=0)) == pytest.approx(0.0, abs=1e-12)
    # Z^3 against Z^2 on the cuts 0, 1/3, 1/2, 2/3, 1
    z3, z2 = np.array([[1.0], [2.0], [4.0]]), np.array([[0.0], [10.0]])
    want = np.sqrt(1 / 3 * 1 + 1 / 6 * 4 + 1 / 6 * 64 + 1 / 3 * 36)
    assert l2_distance(z3, z2) == pytest.approx(want)
    with pytest.raises(oc.InvalidArgument) as e:
        l2_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    assert _message(e) == "reference='<shape (4, 3)>': expected per-layer shape (2,) like path"
    with pytest.raises(oc.InvalidArgument, match="^reference="):
        l2_distance(np.zeros(4), np.float64(1.0))


# ----------------------------------------------------------------------------- PL summary, init ratios
def test_pl_summary_fields_and_a_member_whose_loss_reaches_zero():
    from odecheck.flow import Trajectory

    lr, T = 0.05, 41
    t = np.arange(T) * lr
    loss = np.stack([3.0 * np.exp(-0.4 * t), 2.0 * np.exp(-1.5 * t)], axis=1)
    loss[-1, 1] = 0.0  # log 0: no fitted rate for that member
    pl = np.stack([0.4 + t, 1.5 + 0 * t], axis=1)
    pl[3, 0] = np.nan  # a NaN ratio is skipped by the minimum
    tr = Trajectory(method="gradient_flow", lr=lr, depth=4, loss=loss, pl_ratio=pl, grad_norm=np.zeros((T, 2)),
                    max_increment=np.zeros((T, 2)), diverged_at=np.array([-1, -1]))
    s = pl_summary(tr)
    np.testing.assert_allclose(s.mu_hat, [0.4, 1.5])
    assert s.rate[0] == pytest.approx(0.4) and np.isnan(s.rate[1])
    np.testing.assert_allclose(s.loss_ratio, [np.exp(-0.4 * t[-1]), 0.0])
    assert s.horizon == pytest.approx((T - 1) * lr)


def test_init_ratios_against_a_plain_loop():
    net = oc.ResNet(block="res1", depth=6, dim=3, activation="tanh", beta=0.5, init="iid", ensemble=2, seed=3,
                    dtype=torch.float64)
    V = net.weights["V"]  # (R, L, q, q)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    c = 6 ** -0.5  # alpha_L = L^-beta from the configuration
    fwd, bwd = init_ratios(net, x, y)
    fwd0, _ = init_ratios(net, x)
    for r in range(2):
        h0 = x.clone().requires_grad_(True)
        h = h0
        for k in range(6):
            h = h + c * torch.tanh(h) @ V[r, k].T
        hL = h
        hL.retain_grad()
        loss = 0.5 * ((hL - y) ** 2).sum(-1).mean()  # any positive multiple: the ratios are scale-free
        loss.backward()
        assert fwd[r] == pytest.approx(float((hL - h0).detach().norm() / h0.detach().norm()), rel=1e-10)
        assert fwd0[r] == pytest.approx(fwd[r], rel=1e-12)  # the forward ratio does not see y
        assert bwd[r] == pytest.approx(float((h0.grad - hL.grad).norm() / hL.grad.norm()), rel=1e-8)


# ----------------------------------------------------------------------------- pinned by the mutation run
def test_error_messages_show_what_was_received():
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent([4, 8], [1.0, 1.0, 1.0])
    assert _message(e) == "values='<shape (3, 1)>': expected (2, R): one row per depth"
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent([4, 8], [1.0, -1.0])
    assert _message(e) == "values='<non-positive or non-finite entries>': expected positive finite statistics"
    with pytest.raises(oc.InvalidArgument) as e:
        scaling_exponent([4], [1.0])
    assert _message(e) == "depths=[4]: expected at least two positive depths"
    with pytest.raises(oc.InvalidArgument) as e:
        max_increment(np.zeros((1, 3)))
    assert _message(e) == "path='<shape (1, 3)>': expected an array with a leading layer axis of length >= 2"
    with pytest.raises(oc.InvalidArgument) as e:
        max_norm(np.array([[0.0], [np.nan]]))
    assert _message(e) == "path='<NaN or inf entries>': expected finite weights"


def test_integer_inputs_are_computed_in_floating_point():
    # squares of int64 differences of 1e10 overflow: the estimators convert to float first
    big = np.array([[0], [10_000_000_000], [30_000_000_000]], dtype=np.int64)
    assert max_increment(big) == pytest.approx(2e10)
    assert quadratic_variation(big) == pytest.approx(5e20)
    ref = np.zeros((3, 1), dtype=np.int64)
    assert l2_distance(big, ref) == pytest.approx(np.sqrt((1e20 + 9e20) / 3))
    assert l2_distance(ref, big) == pytest.approx(np.sqrt((1e20 + 9e20) / 3))
    # scalar weights per layer: a 1-d path is one entry per layer
    assert l2_distance(np.array([0.0, 1.0]), np.array([0.0, 0.0, 1.0, 2.0])) == pytest.approx(0.5)


def test_defaults_are_the_documented_ones():
    V = _panel(10, seed=12)
    assert scaling_exponent(DEPTHS, V, method="bootstrap") == scaling_exponent(
        DEPTHS, V, method="bootstrap", n_boot=2000, seed=0)
    f = scaling_exponent(DEPTHS, V, method="bootstrap")
    assert f.intercept == pytest.approx(np.polyfit(np.log(DEPTHS), np.log(V).mean(1), 1)[1], abs=1e-12)
    for vals in (_panel(1, seed=13)[:, 0], [1.0, 0.5]):
        d = DEPTHS if len(vals) == len(DEPTHS) else [4, 8]
        assert scaling_exponent(d, vals, level=0.8).level == 0.8
    Z = fbm_paths(3, 64, 0.5, member_generator(14, 0)).T.numpy()
    assert classify_regime(Z).hurst == classify_regime(Z, seed=0).hurst != classify_regime(Z, seed=5).hurst


def test_hurst_branches_at_their_edges():
    import warnings

    c = hurst(np.ones((10, 3)), level=0.8)
    assert c.level == 0.8
    d = classify_regime(np.ones((10, 3)))
    assert d.regime == "inconclusive" and d.hurst.constant and d.hurst.n == 3 and d.hurst.lags == (1, 2, 4)
    # 8 entries: the jackknife (no seed); 7: the block bootstrap (seeded)
    Z8 = fbm_paths(8, 64, 0.5, member_generator(15, 0)).T.numpy()
    assert hurst(Z8, seed=1).ci == hurst(Z8, seed=2).ci
    Z7 = Z8[:, :7]
    assert hurst(Z7, seed=1).ci != hurst(Z7, seed=2).ci
    small = hurst(Z7, seed=1, level=0.9)
    assert small.level == 0.9 and small.constant is False and small.n == 7
    # a period-two path: its even lags have no increments, so no slope, and no warning either
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(hurst(np.tile(np.array([[0.0], [1.0]]), (20, 9))).estimate)


def test_block_bootstrap_on_a_short_path():
    # L = 10: blocks of max(2, round(10^(1/3))) = 2 increments, ceil(9 / 2) = 5 blocks, cut to 9
    Z = fbm_paths(2, 10, 0.5, member_generator(16, 0)).T.numpy()
    rng = np.random.default_rng(4)
    inc = np.diff(Z, axis=0)
    lags = np.array([1, 2, 4])
    est = []
    for _ in range(100):
        starts = rng.integers(0, 8, 5)
        pieces = np.concatenate([inc[s:s + 2] for s in starts])[:9]
        Zb = np.concatenate([Z[:1], Z[:1] + np.cumsum(pieces, 0)])
        m = [np.linalg.norm(Zb[h:] - Zb[:-h], axis=1).mean() for h in lags]
        if min(m) > 0:
            est.append(np.polyfit(np.log(lags), np.log(m), 1)[0])
    h = hurst(Z, seed=4, n_boot=100)
    assert h.lags == (1, 2, 4)
    assert h.ci == pytest.approx(tuple(np.quantile(est, [0.025, 0.975])), abs=1e-10)


def test_path_stats_edges():
    smooth = np.sin(np.linspace(0, 3, 64))[:, None] * np.arange(1, 9)[None, :]
    assert path_stats(smooth).regime == "ode" == classify_regime(smooth).regime
    three = path_stats(np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0]]))  # 3 layers: a Hurst exponent exists
    assert np.isfinite(three.hurst)
    wide = path_stats(np.cumsum(np.random.default_rng(17).standard_normal((5, 2)), axis=0))  # 5 layers, 2 entries
    assert np.isfinite(wide.hurst)
    Z = fbm_paths(3, 64, 0.5, member_generator(18, 0)).T.numpy()
    assert path_stats(Z, seed=3).hurst_ci == hurst(Z, seed=3).ci != hurst(Z, seed=0).ci


def test_pl_summary_of_a_zero_loss_warns_nothing():
    import warnings

    from odecheck.flow import Trajectory

    t = np.arange(5) * 0.1
    loss = np.stack([np.exp(-t), np.array([1.0, 0.5, 0.25, 0.0, 0.0])], axis=1)
    tr = Trajectory(method="gradient_flow", lr=0.1, depth=2, loss=loss, pl_ratio=np.ones((5, 2)),
                    grad_norm=np.zeros((5, 2)), max_increment=np.zeros((5, 2)), diverged_at=np.array([-1, -1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = pl_summary(tr)
    assert s.rate[0] == pytest.approx(1.0) and np.isnan(s.rate[1])


def test_three_layer_path_without_a_slope_has_no_interval():
    # lags 1 and 2; |Z_2 - Z_0| = 0, so m(2) = 0: no slope (and no log-of-zero warning), and every
    # block resample is the path itself
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = hurst(np.array([[0.0], [1.0], [0.0]]))
    assert np.isnan(h.estimate) and all(np.isnan(h.ci)) and not h.constant


def test_normalized_increments_see_directions_not_scales():
    # unit vectors turned by a known angle theta_k per layer: the normalized increment is 2 sin(theta_k / 2)
    # whatever scale each layer is given (a conv before BatchNorm is scale-invariant)
    from odecheck.estimators.regularity import LagSums, dyadic_lags, normalized_increment_norms

    theta = np.linspace(0.05, 0.6, 11)
    phi = np.concatenate([[0.0], np.cumsum(theta)])
    Z = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=1)  # (12, 3)
    scales = np.exp(np.random.default_rng(0).standard_normal(12))
    for path in (Z, Z * scales[:, None]):
        np.testing.assert_allclose(normalized_increment_norms(path), 2 * np.sin(theta / 2), rtol=1e-12)
    assert path_stats(Z * scales[:, None]).max_normalized_increment == pytest.approx(2 * np.sin(0.3), rel=1e-12)
    big = np.random.default_rng(1).standard_normal((12, 40)) * scales[:, None]
    sums = LagSums(12, 40, dyadic_lags(12))
    for a, b in ((0, 13), (13, 40)):
        sums.add(big[:, a:b], a)
    np.testing.assert_allclose(sums.normalized_increments(), normalized_increment_norms(big), rtol=1e-12)


def test_mean_interval_is_the_student_t_interval_written_out():
    from scipy import stats

    from odecheck.analysis.estimators.scaling import mean_interval

    v = [0.3, 1.1, -0.4, 2.0, 0.9]
    m, s = np.mean(v), np.std(v, ddof=1)
    for level in (0.9, 0.95, 0.99):
        h = stats.t.ppf((1 + level) / 2, df=4) * s / np.sqrt(5)
        est, (lo, hi) = mean_interval(v, level)
        assert est == pytest.approx(m, rel=1e-15) and (lo, hi) == pytest.approx((m - h, m + h), rel=1e-13)
    est, (lo, hi) = mean_interval([1.0, np.nan, 3.0, np.inf])  # the finite values only: 1 and 3
    h = stats.t.ppf(0.975, df=1) * np.std([1.0, 3.0], ddof=1) / np.sqrt(2)
    assert est == 2.0 and (lo, hi) == pytest.approx((2.0 - h, 2.0 + h), rel=1e-13)
    one = mean_interval([4])
    assert one[0] == 4.0 and all(np.isnan(one[1]))
    none = mean_interval([np.nan])
    assert np.isnan(none[0]) and all(np.isnan(none[1]))


def test_streamed_normalized_increments_with_zero_layers_match_the_formula():
    # a zero layer has no direction: its normalized layer counts as 0, so the step into or out of it is 1
    # and between two zero layers 0 (normalized_increment_norms' rule), streamed sums and arrays alike
    from odecheck.analysis.estimators.regularity import LagSums, dyadic_lags, normalized_increment_norms

    rng = np.random.default_rng(5)
    Z = rng.standard_normal((9, 70))
    Z[3] = 0.0
    Z[6] = Z[7] = 0.0
    Z[2] *= 0.5 / np.linalg.norm(Z[2])  # a layer of norm below 1 beside a zero one
    Z[8] *= 0.25 / np.linalg.norm(Z[8])
    U = np.array([z / np.linalg.norm(z) if np.linalg.norm(z) > 0 else np.zeros_like(z) for z in Z])
    ref = np.linalg.norm(U[1:] - U[:-1], axis=1)
    assert ref[2] == pytest.approx(1.0) and ref[3] == pytest.approx(1.0) and ref[6] == 0.0
    sums = LagSums(9, 70, dyadic_lags(9))
    sums.add(Z[:, :40], 0)
    sums.add(Z[:, 40:], 40)
    np.testing.assert_allclose(sums.normalized_increments(), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(normalized_increment_norms(Z), ref, rtol=1e-12, atol=1e-14)


def test_increment_autocorrelation_against_its_definition():
    # rho(j) = (n / (n - j)) sum_k <D_k, D_k+j> / sum_k <D_k, D_k> over the increments D_k of the path, n = L - 1;
    # the jackknife replicates drop one group of columns; nothing to test when the path has no lag 1..K to spare
    from odecheck.analysis.estimators.increments import AcfSums, acf_lags
    from odecheck.analysis.estimators.regularity import LagSums, dyadic_lags

    rng = np.random.default_rng(9)
    L, P = 21, 256
    Z = np.cumsum(rng.standard_normal((L, P)), 0)
    sums = LagSums(L, P, dyadic_lags(L))
    sums.add(Z, 0)
    acf = sums.acf_sums.acf(0.95)
    D = np.diff(Z, axis=0)
    n = L - 1
    assert [j for j, _, _ in acf] == list(range(1, acf_lags(L) + 1)) == [1, 2, 3, 4, 5]
    for j, est, (lo, hi) in acf:
        full = n / (n - j) * (D[j:] * D[: n - j]).sum() / (D * D).sum()
        assert est == pytest.approx(full, rel=1e-12) and lo < est < hi
    flat = AcfSums(21, 4)  # no increments added: every sum 0, so every rho is NaN, declined by the band test
    assert all(np.isnan(est) for _, est, _ in flat.acf(0.95))
    short = AcfSums(3, 4)  # L = 3: n = 2 increments, K = 1 lag: n - K = 1 pair, still a value
    assert len(short.acf(0.95)) == 1
    assert AcfSums(2, 4).acf(0.95) == ()  # L = 2: one increment, no pair at lag 1
    tiny = LagSums(L, P, dyadic_lags(L))  # increments far below 1: the same correlations (scale-free)
    tiny.add(Z * 1e-4, 0)
    for (j, est, ci), (j2, est2, ci2) in zip(acf, tiny.acf_sums.acf(0.95), strict=True):
        assert j == j2 and est2 == pytest.approx(est, rel=1e-9) and ci2 == pytest.approx(ci, rel=1e-9)


def test_worst_lag_names_the_interval_reaching_farthest_from_zero():
    from odecheck.analysis.estimators.increments import worst_lag

    assert worst_lag(()) == ""
    acf = ((1, 0.05, (-0.02, 0.12)), (2, -0.1, (-0.31, 0.11)), (3, 0.2, (0.1, 0.3)))
    assert worst_lag(acf) == " (lag 2: -0.100 [-0.310, 0.110])"  # its lower end reaches 0.31
    nan = ((1, 0.05, (-0.02, 0.12)), (2, float("nan"), (float("nan"), float("nan"))))
    assert worst_lag(nan) == " (lag 2: nan [nan, nan])"  # an interval that could not be computed comes first
