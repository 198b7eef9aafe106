import numpy as np
import pytest
import torch
from odecheck.init import as_init, member_generator

import odecheck as oc


def test_fgn_autocovariance_matches_theory():
    H, n_paths, length = 0.75, 4000, 64
    z = oc.fgn(n_paths, length, H, member_generator(0, 0)).numpy()
    for lag in range(6):
        emp = (z[:, : length - lag] * z[:, lag:]).mean()
        k = lag
        theory = 0.5 * (abs(k + 1) ** (2 * H) - 2 * abs(k) ** (2 * H) + abs(k - 1) ** (2 * H))
        prods = (z[:, : length - lag] * z[:, lag:]).mean(1)
        se = prods.std() / np.sqrt(n_paths)
        assert abs(emp - theory) < 5 * se, (lag, emp, theory, se)


@pytest.mark.parametrize("H", [0.2, 0.5, 0.8])
def test_fbm_increment_variance_scales_like_h_to_2H(H):
    b = oc.fbm_paths(3000, 256, H, member_generator(1, 0)).numpy()
    for lag in (1, 4, 16):
        var = ((b[:, lag:] - b[:, :-lag]) ** 2).mean()
        # each path's mean square has sd <= sqrt(2) var (fully correlated increments at worst);
        # 3000 independent paths: 5 standard errors
        assert var == pytest.approx((lag / 256) ** (2 * H), rel=5 * np.sqrt(2 / 3000))


def test_gp_covariance_matches_kernel():
    ell, L = 0.1, 50
    z = oc.gp_paths(6000, L, ell, member_generator(2, 0)).numpy()
    s = np.arange(1, L + 1) / L
    emp = np.cov(z.T, bias=True)
    ker = np.exp(-((s[:, None] - s[None, :]) ** 2) / (2 * ell**2))
    # a sample covariance of N pairs of unit-variance normals has sd sqrt((1 + rho^2) / N) <= sqrt(2 / N);
    # 5 sd over the 1275 distinct entries: family-wise error below 1e-3
    assert np.abs(emp - ker).max() < 5 * np.sqrt(2 / 6000)


def test_counterexample_alternates():
    net = oc.ResNet(block="single", depth=6, dim=1, activation="relu", init="counterexample")
    w = net.weights["W"][0, :, 0, 0].numpy()
    np.testing.assert_allclose(w, [(-1) ** k / 6 for k in range(1, 7)], rtol=1e-6)


def test_smooth_weights_have_small_increments_and_iid_do_not():
    sm = oc.ResNet(depth=256, dim=4, width=4, init="smooth(0.1)", ensemble=2).increments()
    iid = oc.ResNet(depth=256, dim=4, width=4, init="iid", ensemble=2).increments()
    # 32 unit-variance entries (V and W, 4 x 4): iid increments have norm ~ sqrt(2 * 32) = 8; a smooth
    # path with length scale 0.1 moves ~ sqrt(32) / (256 * 0.1) = 0.22 per layer. Every smooth increment
    # is below every iid one:
    assert sm.max() < iid.min()


@pytest.mark.parametrize("text,kind", [("tied", "tied"), ("fbm(0.3)", "fbm"), ("smooth(0.2)", "smooth")])
def test_as_init_parses(text, kind):
    assert as_init(text).kind == kind


@pytest.mark.parametrize("text", ["tied(2)", "foo", "fbm(x)", 3])
def test_as_init_rejects(text):
    with pytest.raises(oc.InvalidArgument, match="init"):
        as_init(text)


def test_generator_reproducible():
    a = torch.randn(3, generator=member_generator(4, 2))
    b = torch.randn(3, generator=member_generator(4, 2))
    assert torch.equal(a, b)


def test_a_correlated_stack_is_sampled_once_and_never_shared():
    """Networks that differ only in beta reuse the last fbm / smooth stack: equal to a fresh sample,
    and each network gets its own copy (training one leaves the next untouched)."""
    from odecheck import init as init_mod

    for ensemble in (1, 2):  # one member: the (R, L) -> (L, R) transpose is already contiguous
        kw = dict(block="res1", depth=16, dim=3, activation="relu", ensemble=ensemble, seed=5, dtype=torch.float64)
        for scheme, init in (("fbm(0.3)", oc.Init(kind="fbm", hurst=0.3)),
                             ("smooth(0.2)", oc.Init(kind="smooth", length_scale=0.2))):
            a = oc.ResNet(init=scheme, beta=0.5, **kw)
            assert init_mod._last_stack and init_mod._last_stack[0][0][0] == init
            wa = a.numpy_weights()["V"]
            a.update_({"V": torch.ones(wa.shape, dtype=torch.float64)}, lr=1.0)  # train the first network
            assert not np.array_equal(a.numpy_weights()["V"], wa)
            b = oc.ResNet(init=scheme, beta=1.0, **kw).numpy_weights()["V"]
            np.testing.assert_array_equal(b, wa)
            init_mod._last_stack.clear()
            np.testing.assert_array_equal(oc.ResNet(init=scheme, beta=0.7, **kw).numpy_weights()["V"], wa)
    oc.ResNet(init="iid", block="res1", depth=16, dim=3, seed=5)  # iid stacks are cheap to draw and not kept
    assert not init_mod._last_stack
