"""Engine invariants for any drawn architecture. These are exact (deterministic) properties:
no statistical error, a failure is a bug."""

import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from odecheck._kernels import loss_and_grads
from odecheck.strategies import architectures, derived_seed, experiments, initializations

import odecheck as oc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import naive_forward, naive_loss_grads, rounding_bound  # noqa: E402


def build(arch, init, **kw):
    return oc.ResNet(**arch, init=init, seed=derived_seed(arch, init), dtype=torch.float64, io_init="gaussian",
                     train_io=True, **kw)


@given(architectures(), initializations(kinds=("iid", "tied", "smooth", "fbm", "counterexample")))
def test_forward_equals_naive_loop(arch, init):
    net = build(arch, init)
    x = torch.randn(5, arch["input_dim"], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x), naive_forward(net, x), rtol=1e-9, atol=1e-9)


@given(architectures(), initializations(kinds=("iid", "smooth")))
def test_gradients_equal_autograd_on_naive_model(arch, init):
    net = build(arch, init)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, arch["input_dim"], dtype=torch.float64, generator=g)
    y = torch.randn(4, arch["output_dim"], dtype=torch.float64, generator=g)
    _, grads = loss_and_grads(net, x, y)
    _, ref = naive_loss_grads(net, x, y)
    w = net.weights
    for k, r in ref.items():
        got = grads[k]
        if k in net.layer_families:  # internal layer-major layout -> (R, L, ...)
            got = (got[:, :, 0, :] if k == "b" else got).transpose(0, 1)
        torch.testing.assert_close(got, r, rtol=1e-8, atol=1e-10)
    assert set(ref) == set(w)


@given(architectures(activations=("identity", "tanh", "gelu", "softplus")), st.integers(0, 3))
def test_gradients_match_finite_differences(arch, which):
    net = build(arch, "iid")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, arch["input_dim"], dtype=torch.float64, generator=g)
    y = torch.randn(3, arch["output_dim"], dtype=torch.float64, generator=g)
    names = net.trainable
    name = names[which % len(names)]
    loss, grads = loss_and_grads(net, x, y)
    p0 = net.weights[name].clone()  # public layout, as the user sees and sets it
    direction = torch.randn(p0.shape, dtype=torch.float64, generator=g)
    eps = 1e-6
    net.load_weights_({name: p0 + eps * direction})
    lp, _ = loss_and_grads(net, x, y)
    net.load_weights_({name: p0 - eps * direction})
    lm, _ = loss_and_grads(net, x, y)
    net.load_weights_({name: p0})
    fd = (lp - lm).sum() / (2 * eps)
    an = (net.public(grads)[name] * direction).sum()
    assert abs(fd - an) <= 1e-5 * (1 + abs(an)), (name, fd, an)


@given(architectures(max_ensemble=4), initializations(kinds=("iid", "smooth", "fbm")))
def test_members_independent_of_ensemble_size(arch, init):
    seed = derived_seed(arch, init)
    big = oc.ResNet(**arch, init=init, seed=seed)
    last = big.ensemble - 1
    small = oc.ResNet(**{**arch, "ensemble": last + 1}, init=init, seed=seed)
    for k, v in big.weights.items():
        torch.testing.assert_close(v[: last + 1], small.weights[k])
    if big.ensemble > 1:
        fam = big.layer_families[0]
        assert not torch.equal(big.weights[fam][0], big.weights[fam][1])


@given(experiments(max_ensemble=3, max_steps=6))
def test_member_alone_trains_like_in_ensemble(exp):
    arch = exp["arch"]
    net = build(arch, exp["init"])
    x, y = exp["data"].sample()
    r = net.ensemble - 1
    alone = net.select(r)
    t_all = oc.gradient_flow(net, x, y, steps=exp["steps"], lr=exp["lr"])
    t_one = oc.gradient_flow(alone, x, y, steps=exp["steps"], lr=exp["lr"])
    np.testing.assert_allclose(t_one.loss[:, 0], t_all.loss[:, r], rtol=1e-9, atol=1e-12)


@given(st.integers(2, 5), st.integers(2, 6), st.sampled_from(("tanh", "gelu", "softplus")), st.integers(4, 12))
def test_ode_gap_shrinks_from_L_to_4L_for_lipschitz_weights(q, m, act, L):
    # deterministic Lipschitz weight functions Z(s), sampled at the left end of each layer
    def stack(depth):
        s = torch.arange(depth, dtype=torch.float64) / depth
        ph = torch.arange(q * m, dtype=torch.float64)
        V = torch.sin(2 * s[:, None] + ph).reshape(1, depth, q, m)
        W = torch.cos(3 * s[:, None] + 0.5 * ph).reshape(1, depth, m, q)
        return oc.ResNet.from_weights(block="mlp", V=V, W=W, activation=act)

    x = torch.randn(6, q, dtype=torch.float64, generator=torch.Generator().manual_seed(q * m))
    fine = 256
    limit = oc.neural_ode(stack(fine), x, interpolation="linear", rtol=1e-10, atol=1e-12)
    gap = lambda net: float((net(x) - limit).norm(dim=-1).max())
    g1, g4 = gap(stack(L)), gap(stack(4 * L))
    assert g4 < 4**-0.85 * g1, (g1, g4)  # at least the project's rate boundary L^-0.85 (theory: L^-1)


@given(architectures(blocks=("mlp",), min_depth=1, max_depth=12, max_ensemble=5),
       st.sampled_from([(16, 16), (16, 32), (32, 16), (32, 32), (16, 64), (32, 64)]),
       st.integers(1, 40), initializations(kinds=("iid", "tied", "smooth", "fbm")))
def test_fused_cpu_kernels_agree_with_float64_batched_path(arch, qm, n, init):
    """The fused float32 kernels (when built) against the float64 batched path, on any drawn mlp
    architecture whose (q, m) has a compiled kernel: loss and every gradient to float32 rounding."""
    from odecheck import _kernels as K
    from odecheck import _native

    q, m = qm
    arch = {**arch, "dim": q, "width": m, "input_dim": min(arch["input_dim"], q), "output_dim": arch["output_dim"]}
    net64 = build(arch, init)
    net32 = net64.to(dtype=torch.float32)
    g = torch.Generator().manual_seed(derived_seed(arch, init, n))
    x = torch.randn(n, arch["input_dim"], dtype=torch.float64, generator=g)
    y = torch.randn(n, arch["output_dim"], dtype=torch.float64, generator=g)
    loss64, g64 = loss_and_grads(net64, x, y)
    out32, cache32 = K.forward(net32, x.float())
    assert (cache32.d is not None) == (_native.library() is not None)
    loss32, g32 = loss_and_grads(net32, x.float(), y.float())
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max().clamp(min=1e-30)).item()
    tol = rounding_bound(arch["depth"], q, m, n)
    assert rel(loss32, loss64) < tol
    for k in g64:
        assert rel(g32[k], g64[k]) < tol, k
