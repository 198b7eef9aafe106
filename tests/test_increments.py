"""The increments' autocorrelation (the regime rule's `sde` test below 4 lags) against a direct computation, a plain
delete-one-group jackknife, streamed chunks, and the smooth-plus-noise bound it rests on."""

import numpy as np
import pytest
from scipy import stats

from odecheck.analysis.estimators.increments import ACF_BAND, acf_lags, within_band
from odecheck.analysis.estimators.regularity import LagSums, classify_regime, dyadic_lags, entry_groups


def _direct(Z, j):
    D = np.diff(Z, axis=0)
    n = D.shape[0]
    return ((D[j:] * D[: n - j]).sum() / (n - j)) / ((D * D).sum() / n)


def _sums(Z, chunks=1):
    L, P = Z.shape
    s = LagSums(L, P, dyadic_lags(L))
    for cols in np.array_split(np.arange(P), chunks):
        s.add(Z[:, cols], int(cols[0]))
    return s.acf_sums


def test_acf_is_the_pooled_ratio_and_its_jackknife_the_plain_one():
    rng = np.random.default_rng(0)
    Z = np.cumsum(rng.standard_normal((40, 20)), axis=0)
    acf = _sums(Z).acf(0.95)
    assert acf_lags(40) == 9 and [a[0] for a in acf] == list(range(1, 10))
    G = 20  # 20 entries: one entry per group
    for j, est, (lo, hi) in acf:
        assert est == pytest.approx(_direct(Z, j), rel=1e-12)
        reps = np.array([_direct(np.delete(Z, g, axis=1), j) for g in range(G)])
        se = np.sqrt((G - 1) / G * ((reps - reps.mean()) ** 2).sum())
        q = stats.t.ppf(0.975, G - 1)
        assert (lo, hi) == pytest.approx((est - q * se, est + q * se), rel=1e-9)


def test_streamed_chunks_give_the_same_sums():
    rng = np.random.default_rng(1)
    Z = np.cumsum(rng.standard_normal((30, 200)), axis=0)
    np.testing.assert_allclose(_sums(Z, 1).sums, _sums(Z, 7).sums, rtol=1e-12)
    assert entry_groups(0, 200, 200).max() == 63  # 64 groups: the jackknife is over groups of entries


def test_planted_laws_at_lag_one():
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((60, 4096))  # a white-noise path: increments correlate -1/2 at lag 1
    assert _sums(noise).acf(0.95)[0][1] == pytest.approx(-0.5, abs=0.02)
    walk = np.cumsum(noise, axis=0)  # Brownian: 0 at every lag
    acf = _sums(walk).acf(0.95)
    assert max(abs(e) for _, e, _ in acf) < 0.03 and within_band(acf)
    line = np.outer(np.arange(60.0), rng.standard_normal(4096))  # a linear drift is smooth: 1 at every lag
    assert all(e == pytest.approx(1.0) for _, e, _ in _sums(line).acf(0.95))


def test_no_smooth_path_plus_white_noise_lies_inside_the_band_at_lags_one_and_two():
    # increments of a smooth path correlate ~1 at lags 1 and 2 (variance s); white noise of variance v adds
    # increments of variance 2v correlated -1/2 at lag 1: rho(1) = (s - v) / (s + 2v), rho(2) = s / (s + 2v)
    ratios = np.geomspace(1e-4, 1e4, 20001)  # s / v
    rho1 = (ratios - 1) / (ratios + 2)
    rho2 = ratios / (ratios + 2)
    worst = np.maximum(np.abs(rho1), np.abs(rho2)).min()
    assert worst == pytest.approx(0.2, abs=1e-4) and ACF_BAND < worst


@pytest.mark.parametrize("L", [24, 48, 96])
def test_the_worst_mixture_is_not_called_sde(L):
    # smooth (slow sinusoids, increments correlated ~1 at small lags) plus white noise at the ratio where
    # max(|rho(1)|, |rho(2)|) is least (rho(2) = 1/5, s / v = 1/2), 4096 entries, 20 paths: never `sde`
    rng = np.random.default_rng(L)
    for _ in range(20):
        w, ph = rng.uniform(0.2, 0.6, 4096), rng.uniform(0, 2 * np.pi, 4096)
        k = np.arange(L)[:, None]
        smooth = np.sin(2 * np.pi * w * k / L + ph)
        s = np.diff(smooth, axis=0).var()
        Z = smooth + np.sqrt(2 * s) * rng.standard_normal((L, 4096))  # v = 2 s ... s / v = 1/2
        assert classify_regime(Z).regime != "sde"
