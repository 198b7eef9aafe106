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
from odecheck.init import member_generator

import odecheck as oc


def test_scaling_exponent_recovers_planted_power_law():
    rng = np.random.default_rng(0)
    depths = np.array([16, 32, 64, 128, 256])
    vals = 3.0 * depths[:, None] ** -0.7 * np.exp(0.05 * rng.standard_normal((5, 8)))
    # least-squares slope of one member: sd 0.05 / sqrt(sum (log L - mean)^2); mean of 8 members
    se = 0.05 / np.sqrt(((np.log(depths) - np.log(depths).mean()) ** 2).sum() * 8)
    for method in ("bootstrap", "theil-sen"):
        fit = scaling_exponent(depths, vals, method=method)
        assert fit.ci[0] < -0.7 < fit.ci[1]
        assert abs(fit.estimate + 0.7) < 6 * se  # 6 standard errors (Theil-Sen is less efficient, still inside)


def test_scaling_interval_coverage_is_nominal():
    from scipy.stats import binom

    rng = np.random.default_rng(1)
    depths = np.array([16, 32, 64, 128])
    hits = 0
    for _ in range(200):
        vals = depths[:, None] ** -1.0 * np.exp(0.2 * rng.standard_normal((4, 4)))
        lo, hi = scaling_exponent(depths, vals).ci
        hits += lo < -1.0 < hi
    # the Student-t interval over members is exact here: coverage 0.95; fail only below the 0.1% quantile
    assert hits >= binom.ppf(0.001, 200, 0.95), hits


def test_scaling_rejects_bad_input():
    with pytest.raises(oc.InvalidArgument, match="values"):
        scaling_exponent([1, 2], [[1.0], [-1.0]])
    with pytest.raises(oc.InvalidArgument, match="depths"):
        scaling_exponent([4], [1.0])


def test_path_statistics_on_known_path():
    Z = np.arange(5, dtype=float)[:, None] * np.array([[3.0, 4.0]])  # increments of norm 5
    assert max_increment(Z) == pytest.approx(5.0)
    assert quadratic_variation(Z) == pytest.approx(4 * 25.0)
    assert max_norm(Z) == pytest.approx(20.0)
    assert root_sum_squares(Z) == pytest.approx(np.sqrt(25 * (0 + 1 + 4 + 9 + 16)))


@pytest.mark.parametrize("H", [0.2, 0.35, 0.5, 0.65, 0.8])
def test_hurst_recovers_planted_fbm(H):
    path = oc.fbm_paths(32, 512, H, member_generator(3, 0)).T.numpy()
    est = hurst(path)
    # 6 sd of the estimator (sd 0.0086 measured over 400 draws, properties/test_estimator_properties.py)
    assert abs(est.estimate - H) < 6 * 0.0086, est
    assert est.ci[0] < H < est.ci[1]


def test_regimes_of_planted_paths():
    g = member_generator(4, 0)
    assert classify_regime(oc.gp_paths(16, 256, 0.1, g).T.numpy()).regime == "ode"
    assert classify_regime(oc.fbm_paths(16, 256, 0.5, g).T.numpy()).regime == "sde"
    assert classify_regime(torch.randn(256, 16, generator=g).numpy()).regime == "none"
    for flat in (np.ones((10, 3)), np.zeros((300, 20)), np.full((64, 8), 7.5)):  # constant, all-zero: no regime
        d = classify_regime(flat)
        assert d.regime == "inconclusive" and d.reason.startswith("constant path"), d


def test_hurst_invariances():
    g = member_generator(5, 0)
    Z = oc.fbm_paths(16, 256, 0.4, g).T.numpy()
    h = hurst(Z).estimate
    assert hurst(3.7 * Z).estimate == pytest.approx(h)
    assert hurst(Z + 11.0).estimate == pytest.approx(h)
    assert hurst(Z[::-1]).estimate == pytest.approx(h)
    assert hurst(Z[:, ::-1]).estimate == pytest.approx(h)


def test_hurst_small_path_uses_block_bootstrap():
    path = oc.fbm_paths(1, 512, 0.5, member_generator(6, 0)).T.numpy()
    est = hurst(path)
    assert est.n == 1 and est.ci[0] < est.estimate < est.ci[1]


def test_l2_distance_exact_on_refinement():
    a = np.array([[0.0], [1.0]])  # Z^2: 0 on [0, 1/2), 1 on [1/2, 1]
    b = np.array([[0.0], [0.0], [1.0], [2.0]])  # Z^4
    # differences: [0, .25): 0, [.25, .5): 0, [.5, .75): 0, [.75, 1]: 1 -> sqrt(0.25)
    assert l2_distance(a, b) == pytest.approx(0.5)
    with pytest.raises(oc.InvalidArgument, match="reference"):
        l2_distance(a, np.zeros((4, 2)))


def test_pl_summary_on_exact_exponential():
    from odecheck.flow import Trajectory

    t = np.arange(101) * 0.1
    loss = np.exp(-0.5 * t)[:, None] * np.array([[1.0, 2.0]])
    tr = Trajectory(method="gradient_flow", lr=0.1, depth=4, loss=loss, pl_ratio=np.full((101, 2), 0.5),
                    grad_norm=np.zeros((101, 2)), max_increment=np.zeros((101, 2)), diverged_at=np.array([-1, -1]))
    s = pl_summary(tr)
    np.testing.assert_allclose(s.rate, 0.5)
    np.testing.assert_allclose(s.mu_hat, 0.5)


def test_init_ratios_identity_at_large_beta():
    x = torch.randn(8, 6)
    small = init_ratios(oc.ResNet(block="res1", depth=256, dim=6, activation="tanh", beta=1.0, init="iid",
                                  ensemble=4), x)[0]
    big = init_ratios(oc.ResNet(block="res1", depth=256, dim=6, activation="tanh", beta=0.5, init="iid",
                                ensemble=4), x)[0]
    assert (small < big).all()
    zero = init_ratios(oc.ResNet(block="res1", depth=8, dim=6, init="zero", ensemble=2), x)
    np.testing.assert_allclose(zero[0], 0.0)
    np.testing.assert_allclose(zero[1], 0.0)


def test_path_stats_rejects_nan():
    with pytest.raises(oc.InvalidArgument, match="path"):
        path_stats(np.full((5, 2), np.nan))


def test_huge_values_are_computed_scaled_exactly():
    # entries near 1e300: squares overflow float64. The statistics are those of the path scaled by a power of
    # two (exact), the scale-bearing ones multiplied back; nothing warns, nothing is NaN
    import warnings

    from odecheck.estimators import path_stats

    Z = np.cumsum(np.random.default_rng(6).standard_normal((64, 20)), 0)
    e = 997  # 2^997 is about 1.3e300
    k = int(np.frexp(np.abs(Z).max())[1])  # the huge path is computed as Z 2^-k: compare with exactly that
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big, ref = path_stats(np.ldexp(Z, e)), path_stats(np.ldexp(Z, -k))
    assert big.regime == ref.regime and big.hurst == ref.hurst and big.hurst_ci == ref.hurst_ci
    assert big.max_increment == np.ldexp(ref.max_increment, e + k) and big.max_norm == np.ldexp(ref.max_norm, e + k)
    assert big.max_normalized_increment == ref.max_normalized_increment
    assert big.increments == tuple(np.ldexp(x, e + k) for x in ref.increments)
    assert big.quadratic_variation == np.inf  # 2^1994 x ...: beyond float64, stated as inf
    assert abs(big.hurst - path_stats(Z).hurst) < 1e-12  # and the same as the unscaled path's, to rounding
