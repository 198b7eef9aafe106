import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import odecheck as oc


def test_neural_ode_agrees_with_scipy_solve_ivp():
    net = oc.ResNet(depth=4, dim=3, width=5, activation="tanh", init="iid", ensemble=2, seed=3,
                    dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = oc.neural_ode(net, x, rtol=1e-10, atol=1e-12).numpy()
    w = net.numpy_weights()
    L = net.depth
    for r in range(2):
        for i in range(4):
            h = w["A"][r] @ x[i].numpy()
            for k in range(L):
                V, W = w["V"][r, k], w["W"][r, k]
                f = lambda s, h: V @ np.tanh(W @ h / math.sqrt(3)) / math.sqrt(5)
                h = solve_ivp(f, (k / L, (k + 1) / L), h, rtol=1e-12, atol=1e-13).y[:, -1]
            np.testing.assert_allclose(got[r, i], w["B"][r] @ h, rtol=1e-8, atol=1e-9)


def test_linear_interpolation_agrees_with_scipy():
    net = oc.ResNet(block="res1", depth=5, dim=3, activation="softplus", init="smooth(0.3)", ensemble=1,
                    dtype=torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    got = oc.neural_ode(net, x, rtol=1e-10, atol=1e-12, interpolation="linear").numpy()
    V = net.numpy_weights()["V"][0]

    def f(s, h):
        pos = s * 4
        k = min(int(np.floor(pos)), 3)
        w = pos - k
        Vs = (1 - w) * V[k] + w * V[k + 1]
        return Vs @ np.log1p(np.exp(h))

    for i in range(2):
        h = solve_ivp(f, (0, 1), x[i].numpy(), rtol=1e-12, atol=1e-13, max_step=0.25).y[:, -1]
        np.testing.assert_allclose(got[0, i], h, rtol=1e-7, atol=1e-8)


def test_ode_gap_shrinks_like_one_over_L_for_lipschitz_weights():
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    depths = [8, 16, 32, 64]
    gaps = []
    for L in depths:
        # fixed weight function Z(s) = smooth deterministic curve, sampled at s = (k+1)/L
        s = torch.arange(1, L + 1, dtype=torch.float64) / L
        V = torch.stack([torch.sin(3 * s + i) for i in range(4 * 4)], -1).reshape(1, L, 4, 4)
        W = torch.stack([torch.cos(2 * s + i) for i in range(4 * 4)], -1).reshape(1, L, 4, 4)
        net = oc.ResNet.from_weights(block="mlp", V=V, W=W, activation="tanh")
        ref = oc.neural_ode(oc.ResNet.from_weights(block="mlp", V=V, W=W, activation="tanh"), x,
                            interpolation="linear", rtol=1e-10, atol=1e-12)
        gaps.append(float((net(x) - ref).norm(dim=-1).max()))
    slope = np.polyfit(np.log(depths), np.log(gaps), 1)[0]
    assert -1.2 < slope < -0.8, (slope, gaps)


def test_ode_distance_is_euler_error():
    net = oc.ResNet(depth=32, dim=4, width=4, activation="gelu", init="smooth(0.2)", ensemble=2, seed=0)
    x = torch.randn(5, 4)
    d = oc.ode_distance(net, x)
    assert d.shape == (2,) and (d > 0).all() and (d < 1).all()


def test_neural_ode_rejects_bad_arguments():
    net = oc.ResNet(depth=4, dim=3)
    x = torch.randn(2, 3)
    with pytest.raises(oc.InvalidArgument, match="interpolation"):
        oc.neural_ode(net, x, interpolation="cubic")
    with pytest.raises(oc.InvalidArgument, match="rtol"):
        oc.neural_ode(net, x, rtol=-1)


def test_single_block_without_bias_and_bad_method():
    net = oc.ResNet(block="single", depth=8, dim=3, activation="tanh", init="iid", bias=False, ensemble=2,
                    dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    gap = oc.ode_distance(net, x)
    assert gap.shape == (2,) and torch.isfinite(gap).all()
    with pytest.raises(oc.InvalidArgument, match="method"):
        oc.neural_ode(net, x, method="dopri")
