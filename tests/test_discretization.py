"""Claim 12's estimators (odecheck.analysis.estimators.discretization) against independent references:
the matrix products of a linear ResNet written out in numpy, the engine's own forward pass, autograd
through a naive per-layer loop, and finite differences."""

import numpy as np
import pytest
import torch

from odecheck.analysis.estimators.decisions import ORDER_SLACK, all_of, order_call
from odecheck.analysis.estimators.discretization import (
    branch,
    gradient_error,
    heun_gain,
    reconstruction_error,
    trajectory,
    weight_gradients,
)
from odecheck.core._errors import InvalidArgument
from odecheck.engine.blocks.mlp import MLP
from odecheck.engine.models import ResNet


def _linear(V):
    """res1 with the identity activation: h_{k+1} = (I + V_k / L) h_k, the linear ResNet of [S22]."""
    return ResNet.from_weights(block="res1", V=V, activation="identity", dtype=torch.float64)


def _rng_V(R, L, q, seed, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal((R, L, q, q))


def _rel_err_reference(V, h0, scheme):
    """The reconstruction error of a linear ResNet from its matrices: forward and reverse products."""
    R, L, q, _ = V.shape
    out = np.zeros(R)
    eye = np.eye(q)
    for r in range(R):
        M = eye.copy()
        if scheme == "euler":
            c = 1.0 / L
            for k in range(L):
                M = (eye + c * V[r, k]) @ M
            for k in range(L - 1, -1, -1):
                M = (eye - c * V[r, k]) @ M
        else:
            c = 1.0 / (L - 1)
            for k in range(L - 1):  # h + c/2 (V_k h + V_{k+1} (h + c V_k h))
                M = (eye + 0.5 * c * (V[r, k] + V[r, k + 1] + c * V[r, k + 1] @ V[r, k])) @ M
            for k in range(L - 2, -1, -1):  # h - c/2 (V_{k+1} h + V_k (h - c V_{k+1} h))
                M = (eye - 0.5 * c * (V[r, k + 1] + V[r, k] - c * V[r, k] @ V[r, k + 1])) @ M
        err = (h0 @ (M - eye).T)
        out[r] = (np.linalg.norm(err, axis=1) / np.linalg.norm(h0, axis=1)).max()
    return out


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_reconstruction_error_of_a_linear_resnet_matches_its_matrix_products(scheme):
    V = _rng_V(3, 12, 4, 1)
    h0 = np.random.default_rng(2).standard_normal((5, 4))
    got = reconstruction_error(_linear(V), torch.tensor(h0), scheme).numpy()
    np.testing.assert_allclose(got, _rel_err_reference(V, h0, scheme), rtol=1e-10, atol=1e-15)


def test_constant_linear_weights_closed_form_orders():
    # V_k = V for every k: Euler reversed gives (I - V^2/L^2)^L = I - V^2/L + O(L^-2) (order 1); Heun reversed is
    # the method at step -c after the method at step c, whose c^3 terms cancel: O(L^-3) overall
    V0 = np.diag([1.0, -0.5, 0.25])
    h0 = np.ones((1, 3))
    e = {s: [] for s in ("euler", "heun")}
    Ls = [16, 32, 64, 128]
    for L in Ls:
        V = np.broadcast_to(V0, (1, L, 3, 3)).copy()
        for s in e:
            e[s].append(reconstruction_error(_linear(V), torch.tensor(h0), s).item())
        # Euler's closed form, per diagonal entry: (1 - v^2/L^2)^L - 1
        exact = np.abs((1 - np.diag(V0) ** 2 / L**2) ** L - 1)
        assert e["euler"][-1] == pytest.approx(np.linalg.norm(exact) / np.sqrt(3), rel=1e-9)
    slope = {s: np.polyfit(np.log(Ls), np.log(v), 1)[0] for s, v in e.items()}
    assert slope["euler"] == pytest.approx(-1.0, abs=0.02)
    assert slope["heun"] == pytest.approx(-3.0, abs=0.1)


def test_euler_trajectory_is_the_networks_own_forward_pass():
    net = ResNet(block="mlp", depth=10, dim=5, width=7, activation="tanh", init="iid", ensemble=2, seed=3,
                 dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    hs = trajectory(branch(net), x.expand(2, 4, 5), 10, 1.0 / 10, "euler")
    torch.testing.assert_close(hs[-1], net(x), rtol=1e-12, atol=1e-12)  # A = B = I


def test_weight_gradients_with_stored_activations_match_autograd_through_a_naive_loop():
    R, L, q, m = 2, 6, 3, 4
    net = ResNet(block="mlp", depth=L, dim=q, width=m, activation="tanh", init="iid", ensemble=R, seed=5,
                 dtype=torch.float64)
    x = torch.randn(5, q, dtype=torch.float64)
    y = torch.randn(5, q, dtype=torch.float64)
    got = weight_gradients(net, x, y, "euler")
    w = net.numpy_weights()
    for r in range(R):
        V = torch.tensor(w["V"][r], requires_grad=True)
        W = torch.tensor(w["W"][r], requires_grad=True)
        h = x
        for k in range(L):
            h = h + MLP.naive_update(h, {"V": V[k], "W": W[k]}, depth=L, beta=1.0, q=q, m=m, activation="tanh")
        loss = ((h - y) ** 2).sum(-1).mean()
        gV, gW = torch.autograd.grad(loss, (V, W))
        # node by node, families in the engine's order (V then W); the engine layout of one node is the public one
        ref = torch.cat([torch.cat([gV[k].reshape(-1), gW[k].reshape(-1)]) for k in range(L)])
        torch.testing.assert_close(got[r], ref, rtol=1e-10, atol=1e-12)


def test_heun_weight_gradient_matches_finite_differences():
    V = _rng_V(1, 5, 3, 7, 0.5)
    x = torch.tensor(np.random.default_rng(8).standard_normal((4, 3)))
    y = torch.tensor(np.random.default_rng(9).standard_normal((4, 3)))
    g = weight_gradients(_linear(V), x, y, "heun")[0].numpy()

    def loss(Vp):
        net = _linear(Vp)
        bra = branch(net)
        hN = trajectory(bra, x.expand(1, 4, 3), 4, 1.0 / 4, "heun")[-1][0]
        return float(((hN - y) ** 2).sum(-1).mean())

    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 2, 1, 2), (0, 4, 2, 1)]:
        Vp, Vm = V.copy(), V.copy()
        Vp[idx] += eps
        Vm[idx] -= eps
        fd = (loss(Vp) - loss(Vm)) / (2 * eps)
        flat = idx[1] * 9 + idx[2] * 3 + idx[3]
        assert g[flat] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_gradient_error_vanishes_when_reconstruction_is_exact_and_scales_like_reconstruction():
    # V_k = 0 except one layer: identity branches elsewhere; every reconstruction is then exact up to rounding
    V = np.zeros((1, 8, 3, 3))
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    assert gradient_error(_linear(V), x, y, "euler").item() == 0.0
    V = _rng_V(2, 8, 3, 11)
    e = gradient_error(_linear(V), x, y, "euler")
    assert torch.all(e > 1e-6) and torch.all(e < 1.0)


def test_heun_gain_grows_with_depth_for_smooth_weights_only():
    x = torch.randn(8, 6, dtype=torch.float64)
    gains = {}
    for init in ("smooth(0.3)", "iid"):
        gains[init] = [heun_gain(ResNet(block="mlp", depth=L, dim=6, width=6, activation="tanh", init=init,
                                        ensemble=3, seed=1, dtype=torch.float64), x).median().item()
                       for L in (16, 64)]
    assert gains["smooth(0.3)"][1] > 8 * gains["smooth(0.3)"][0]  # ~ L^2 more at 4x the depth
    assert gains["iid"][1] < 4 * gains["iid"][0]


def test_bad_arguments_name_themselves():
    net = _linear(_rng_V(1, 1, 2, 0))
    x = torch.randn(2, 2, dtype=torch.float64)
    with pytest.raises(InvalidArgument) as e:
        reconstruction_error(net, x, "rk4")
    assert e.value.argument == "scheme"
    with pytest.raises(InvalidArgument) as e:
        reconstruction_error(net, x, "heun")
    assert e.value.argument == "depth"
    conv = ResNet(block="conv", depth=2, dim=2, width=2, init="iid", seed=0)
    with pytest.raises(InvalidArgument) as e:
        heun_gain(conv, torch.randn(1, 2, 4, 4))
    assert e.value.argument == "block"


@pytest.mark.parametrize("order,t", [(1, -0.85), (2, -1.85)])  # written out: -p + 0.15 (docs/theory.md)
def test_order_call_at_its_boundary(order, t):
    assert ORDER_SLACK == pytest.approx(0.15)
    assert order_call((t - 0.3, t - 1e-9), order) == "confirmed"
    assert order_call((t - 0.3, t), order) == "inconclusive"  # touching the boundary is not below it
    assert order_call((t + 1e-9, t + 0.3), order) == "refuted"
    assert order_call((t - 0.3, t - 1e-9), order, reaches=False) == "refuted"
    assert order_call((t + 1e-9, t + 0.3), order, reaches=False) == "confirmed"
    assert order_call((t - 0.1, t + 0.1), order, reaches=False) == "inconclusive"


def test_all_of():
    assert all_of(["confirmed"] * 3) == "confirmed"
    assert all_of(["confirmed", "inconclusive", "confirmed"]) == "inconclusive"
    assert all_of(["confirmed", "inconclusive", "refuted"]) == "refuted"
    with pytest.raises(ValueError, match="^all_of needs at least one call$"):
        all_of([])


def test_an_nn_module_gets_the_same_statistics_as_its_resnet():
    import odecheck.nn as onn
    from odecheck.estimators import heun_gain as exported

    mod = onn.StackedResNet(depth=24, dim=4, width=6, activation="tanh", init="smooth(0.3)", ensemble=2, seed=4,
                            dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(exported(mod, x), heun_gain(mod.to_resnet(), x), rtol=0, atol=0)
    torch.testing.assert_close(gradient_error(mod, x, x), gradient_error(mod.to_resnet(), x, x), rtol=0, atol=0)


def _linear_gradients_reference(V, x, y, scheme, reconstructed):
    """dl/dV_k of a linear ResNet, l = (1/n) sum_i ||h_N - y_i||^2, by the adjoint recursion written out in numpy on
    the stored or the recovered states: the reference for weight_gradients and gradient_error."""
    L, q = V.shape[0], V.shape[1]
    eye = np.eye(q)
    if scheme == "euler":
        c, steps = 1.0 / L, L
        fwd = [eye + c * V[k] for k in range(steps)]
        back = [eye - c * V[k] for k in range(steps)]
    else:
        c, steps = 1.0 / (L - 1), L - 1
        fwd = [eye + 0.5 * c * (V[k] + V[k + 1] + c * V[k + 1] @ V[k]) for k in range(steps)]
        back = [eye - 0.5 * c * (V[k + 1] + V[k] - c * V[k] @ V[k + 1]) for k in range(steps)]
    hs = [x]
    for k in range(steps):
        hs.append(hs[-1] @ fwd[k].T)
    states = hs
    if reconstructed:
        states = [None] * (steps + 1)
        states[steps] = hs[-1]
        for k in range(steps - 1, -1, -1):
            states[k] = states[k + 1] @ back[k].T
    n = x.shape[0]
    adj = 2.0 * (hs[-1] - y) / n
    g = np.zeros_like(V)
    for k in range(steps - 1, -1, -1):
        h = states[k]
        if scheme == "euler":  # out = h + c V_k h
            g[k] += c * adj.T @ h
        else:  # out = h + c/2 (V_k h + V_{k+1} (h + c V_k h))
            p = h + c * h @ V[k].T
            g[k] += 0.5 * c * (adj.T @ h + c * (adj @ V[k + 1]).T @ h)
            g[k + 1] += 0.5 * c * adj.T @ p
        adj = adj @ fwd[k]
    return g.reshape(-1)


@pytest.mark.parametrize("scheme", ["euler", "heun"])
@pytest.mark.parametrize("reconstructed", [False, True])
def test_weight_gradients_on_stored_and_recovered_states_match_the_adjoint_written_out(scheme, reconstructed):
    V = _rng_V(1, 7, 3, 21, 2.0)
    x = 0.3 * np.random.default_rng(22).standard_normal((4, 3))  # norms below 1
    y = np.random.default_rng(23).standard_normal((4, 3))
    got = weight_gradients(_linear(V), torch.tensor(x), torch.tensor(y), scheme, reconstructed=reconstructed)[0]
    ref = _linear_gradients_reference(V[0], x, y, scheme, reconstructed)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_gradient_error_is_the_relative_gap_of_the_two_gradients(scheme):
    V = _rng_V(2, 7, 3, 31, 2.0)  # two members: one ratio each
    x = 0.3 * np.random.default_rng(32).standard_normal((4, 3))
    y = 0.3 * np.random.default_rng(33).standard_normal((4, 3))
    got = gradient_error(_linear(V), torch.tensor(x), torch.tensor(y), scheme).numpy()
    for r in range(2):
        exact = _linear_gradients_reference(V[r], x, y, scheme, False)
        approx = _linear_gradients_reference(V[r], x, y, scheme, True)
        assert got[r] == pytest.approx(np.linalg.norm(approx - exact) / np.linalg.norm(exact), rel=1e-9)


def test_float32_networks_and_small_inputs_are_computed_in_float64():
    V = _rng_V(2, 9, 3, 41)
    h0 = 1e-3 * np.random.default_rng(42).standard_normal((5, 3))  # ||h_0|| << 1: no clamping of the ratio
    net32 = ResNet.from_weights(block="res1", V=V.astype(np.float32), activation="identity", dtype=torch.float32)
    V32 = V.astype(np.float32).astype(np.float64)
    for scheme in ("euler", "heun"):
        got = reconstruction_error(net32, torch.tensor(h0, dtype=torch.float32), scheme).numpy()
        ref = _rel_err_reference(V32, h0.astype(np.float32).astype(np.float64), scheme)
        np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_two_layers_are_enough_for_heun_and_errors_name_their_argument_exactly():
    V = _rng_V(1, 2, 2, 51)
    x = torch.randn(3, 2, dtype=torch.float64)
    assert np.isfinite(reconstruction_error(_linear(V), x, "heun").item())  # one Heun step over two nodes
    net = _linear(_rng_V(1, 1, 2, 0))
    cases = [(lambda: reconstruction_error(net, x, "rk4"), "scheme='rk4': expected 'euler' or 'heun'"),
             (lambda: reconstruction_error(net, x, "heun"), "depth=1: expected at least 2 layers for Heun's scheme")]
    for call, text in cases:
        with pytest.raises(InvalidArgument) as e:
            call()
        assert str(e.value) == text
    conv = ResNet(block="conv", depth=2, dim=4, width=1, init="iid", seed=0)
    with pytest.raises(InvalidArgument) as e:
        heun_gain(conv, torch.randn(1, 4))
    assert str(e.value) == "block='conv': expected a block acting on vectors (mlp, res1, single, meanfield)"
    single = ResNet(block="single", depth=3, dim=2, delta="shared", init="iid", seed=0)
    with pytest.raises(InvalidArgument) as e:
        heun_gain(single, torch.randn(2, 2))
    assert str(e.value) == "delta='shared': expected 'fixed' (a trained residual scale is not a weight path)"
