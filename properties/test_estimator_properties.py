"""Estimator invariants on planted paths.

Statistical properties state their family-wise error bound: with k examples per property under
the active profile, each example is tested at level alpha/k (Bonferroni) or with a tolerance whose
per-example failure probability was measured far below 0.01/k (docs/calibration.md).
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from odecheck.estimators import classify_regime, hurst, max_increment, quadratic_variation, scaling_exponent
from odecheck.strategies import derived_seed, weight_paths

from .conftest import examples


@given(weight_paths(kinds=("fbm",), min_depth=256, max_depth=1024, min_entries=16, max_entries=32))
def test_planted_hurst_index_recovered(p):
    # Tolerance 6 sd of the estimator, measured on 400 random draws of (H in [0.2, 0.8], L in [256, 1024],
    # 16-32 entries): bias -0.0002, sd 0.0086, max |error| 0.034. Gaussian tail beyond 6 sd: 2e-9 per example.
    est = hurst(p.sample()).estimate
    assert abs(est - p.hurst) < 6 * 0.0086, (p, est)


@given(weight_paths(min_depth=64, max_depth=256), st.floats(0.01, 100.0), st.floats(-50, 50))
def test_hurst_invariant_under_scaling_and_shift(p, scale, shift):
    Z = p.sample()
    h = hurst(Z).estimate
    assert np.isclose(hurst(scale * Z + shift).estimate, h, atol=1e-9)


@given(weight_paths(min_depth=64, max_depth=256), st.randoms(use_true_random=False))
def test_hurst_invariant_under_reversal_and_entry_permutation(p, rnd):
    Z = p.sample()
    h = hurst(Z).estimate
    perm = list(range(Z.shape[1]))
    rnd.shuffle(perm)
    assert np.isclose(hurst(Z[::-1]).estimate, h, atol=1e-9)
    assert np.isclose(hurst(Z[:, perm]).estimate, h, atol=1e-9)
    assert np.isclose(max_increment(Z[::-1]), max_increment(Z))
    assert np.isclose(quadratic_variation(Z[:, perm]), quadratic_variation(Z))


@given(weight_paths(kinds=("smooth", "brownian", "white"), min_depth=64, max_depth=1024))
def test_regime_of_planted_path(p):
    # the rule never called a wrong regime (`mixed` included: these paths follow one power law) for these
    # families at L >= 48 (docs/calibration.md: 0 of 200 per cell, 95% upper bound 1.5% per cell), so
    # FWER <= k * 0.015; the property asks for no *wrong* regime
    reg = classify_regime(p.sample(), seed=derived_seed(p)).regime
    assert reg in (p.regime, "inconclusive"), (p, reg)


@given(st.floats(-2.0, 1.0), st.floats(0.01, 0.3), st.integers(4, 7), st.integers(4, 16))
def test_planted_power_law_exponent_recovered(p, noise, n_depths, R):
    # Student-t interval over members at level 1 - 0.01/k (exact for Gaussian log-noise): FWER <= 0.01
    k = examples()
    rng = np.random.default_rng(derived_seed(p, noise, n_depths, R))
    depths = 2 ** np.arange(4, 4 + n_depths)
    vals = 2.0 * depths[:, None] ** p * np.exp(noise * rng.standard_normal((n_depths, R)))
    fit = scaling_exponent(depths, vals, level=1 - 0.01 / k)
    assert fit.ci[0] < p < fit.ci[1], (p, fit)


@given(weight_paths(min_depth=5, max_depth=256), st.floats(0.01, 100.0), st.floats(-50, 50))
def test_regime_and_local_exponents_invariant_under_scale_shift_and_reversal(p, scale, shift):
    # m(h) is a mean of norms of differences: scaling multiplies every m(h) by |scale| (log-slopes
    # unchanged), a shift cancels, reversing the layer order permutes the differences of each lag
    Z = p.sample()
    d = classify_regime(Z)
    for other in (classify_regime(scale * Z + shift), classify_regime(Z[::-1].copy())):
        assert other.regime == d.regime, (p, d.reason, other.reason)
        for a, b in zip(d.local, other.local, strict=True):
            assert np.isclose(a.estimate, b.estimate, atol=1e-9) and np.allclose(a.ci, b.ci, atol=1e-8)
