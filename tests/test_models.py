import math

import numpy as np
import pytest
import scipy.linalg
import torch
from helpers import naive_forward, naive_loss_grads
from odecheck._kernels import backward, forward, loss_and_grads, mse

import odecheck as oc
from odecheck import _native

CASES = [(b, a, d) for b in oc.BLOCKS for a in oc.ACTIVATIONS
         for d in (["fixed", "shared", "per_layer", "shared_abs", "per_layer_gaussian"] if b == "single" else ["fixed"])]


@pytest.fixture(params=["fused", "batched"])
def path(request, monkeypatch):
    """Run a correctness test on both engine paths: the fused CPU kernels (which the small float64
    mlp layers here take when they are built) and the batched torch path. The conv block's two layouts
    ride along: its small maps as dense matrices (bmm) on "fused", as grouped convolutions on "batched"."""
    from odecheck.engine.blocks import conv

    if request.param == "batched":
        monkeypatch.setattr(conv, "DENSE_MAX_Q", 0)
        with _native.disabled():
            yield "batched"
    else:
        if _native.library() is None:
            pytest.skip("fused CPU kernels unavailable")
        yield "fused"


def make(block, act, delta="fixed", **kw):
    args = dict(block=block, depth=5, dim=4, width=3, input_dim=3, output_dim=2, activation=act, init="iid",
                ensemble=3, seed=1, dtype=torch.float64, delta=delta, train_io=True, io_init="gaussian")
    if block == "conv":  # 2 channels of 2 x 2 maps: q = c S^2 = 8
        args.update(dim=8, width=2)
    args.update(kw)
    return oc.ResNet(**args)


def public(net, grads):
    out = {}
    for k, g in grads.items():
        if k in ("V", "W") or (k == "delta" and g.ndim == 2):
            g = g.transpose(0, 1)
        if k == "b":
            g = g[:, :, 0, :].transpose(0, 1)
        out[k] = g
    return out


@pytest.mark.parametrize("block,act,delta", CASES)
def test_forward_matches_naive_loop(block, act, delta, path):
    net = make(block, act, delta)
    if block == "mlp":
        assert (forward(net, torch.zeros(2, 3, dtype=torch.float64))[1].d is not None) == (path == "fused")
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), naive_forward(net, x), rtol=1e-12, atol=1e-12)
    hs = net.hidden_states(x)
    assert hs.shape == (3, 6, 7, net.dim)


@pytest.mark.parametrize("block,act,delta", CASES)
def test_gradients_match_autograd_on_naive_model(block, act, delta, path):
    net = make(block, act, delta)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, dtype=torch.float64, generator=g)
    y = torch.randn(7, 2, dtype=torch.float64, generator=g)
    loss, grads = loss_and_grads(net, x, y)
    loss_ref, grads_ref = naive_loss_grads(net, x, y)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    ours = public(net, grads)
    assert set(grads_ref) <= set(ours) | {"delta"}
    for k, ref in grads_ref.items():
        torch.testing.assert_close(ours[k], ref, rtol=1e-10, atol=1e-12, msg=k)


@pytest.mark.parametrize("mode", ["shared_abs", "per_layer_gaussian"])
def test_c21_delta_modes_with_negative_deltas(mode, path):
    # [C21]'s shared delta enters as |delta| (its gradient carries sign(delta)); its per-layer deltas are
    # drawn N(0, alpha_L^2), so about half are negative and enter with their sign
    net = make("single", "tanh", mode, depth=6)
    d = net.weights["delta"]
    if mode == "shared_abs":
        assert torch.equal(d, torch.full_like(d, 6.0**-1.0))  # initialised to alpha_L = 1/L
        net.load_weights_({"delta": torch.tensor([-0.3, 0.2, -0.05], dtype=torch.float64)})
    else:
        assert (d < 0).any() and (d > 0).any() and d.std() < 1.0  # std alpha_L = 1/6
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 3, dtype=torch.float64, generator=g)
    y = torch.randn(7, 2, dtype=torch.float64, generator=g)
    torch.testing.assert_close(net(x), naive_forward(net, x), rtol=1e-12, atol=1e-12)
    loss, grads = loss_and_grads(net, x, y)
    loss_ref, grads_ref = naive_loss_grads(net, x, y)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(public(net, grads)["delta"], grads_ref["delta"], rtol=1e-10, atol=1e-12)


class _KernelLoss(torch.autograd.Function):
    """Loss as a function of one weight family, differentiated by the hand-written backward."""

    @staticmethod
    def forward(ctx, w, net, name, x, y):
        params = dict(net._p)
        params[name] = w
        out, cache = forward(net, x, keep=True, params=params)
        loss, g_out = mse(out, y)
        ctx.grad = backward(net, cache, g_out, params=params)[name]
        return loss.sum()

    @staticmethod
    def backward(ctx, go):
        return go * ctx.grad, None, None, None, None


@pytest.mark.parametrize("block,name", [("mlp", "V"), ("mlp", "W"), ("meanfield", "V"), ("meanfield", "W"),
                                        ("single", "W"), ("single", "b"), ("res1", "V"), ("mlp", "A"), ("mlp", "B"), ("conv", "W"), ("conv", "V")])
@pytest.mark.parametrize("act", ["tanh", "gelu", "softplus"])
def test_gradcheck_float64(block, name, act, path):
    net = make(block, act, depth=3, ensemble=2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, dtype=torch.float64, generator=g)
    y = torch.randn(4, 2, dtype=torch.float64, generator=g)
    w = net._p[name].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: _KernelLoss.apply(w, net, name, x, y), (w,), eps=1e-6, atol=1e-7)


def test_identity_tied_tends_to_matrix_exponential_at_rate_one_over_L():
    q, m = 4, 5
    g = torch.Generator().manual_seed(3)
    V0 = torch.randn(q, m, dtype=torch.float64, generator=g)
    W0 = torch.randn(m, q, dtype=torch.float64, generator=g)
    M = (V0 @ W0 / math.sqrt(m * q)).numpy()
    x = torch.randn(6, q, dtype=torch.float64, generator=g)
    exact = x.numpy() @ scipy.linalg.expm(M).T
    depths = [8, 16, 32, 64, 128, 256]
    errs = []
    for L in depths:
        net = oc.ResNet.from_weights(block="mlp", V=V0.expand(1, L, q, m), W=W0.expand(1, L, m, q),
                                     activation="identity", beta=1.0)
        errs.append(np.abs(net(x)[0].numpy() - exact).max())
    slope = np.polyfit(np.log(depths), np.log(errs), 1)[0]
    assert -1.1 < slope < -0.9, (slope, errs)


def test_members_are_independent_and_stable_across_ensemble_size():
    a = oc.ResNet(depth=6, dim=4, width=3, init="iid", ensemble=2, seed=5)
    b = oc.ResNet(depth=6, dim=4, width=3, init="iid", ensemble=4, seed=5)
    torch.testing.assert_close(a.weights["W"], b.weights["W"][:2])
    assert not torch.allclose(b.weights["W"][0], b.weights["W"][1])
    c = oc.ResNet(depth=6, dim=4, width=3, init="iid", ensemble=2, seed=6)
    assert not torch.allclose(a.weights["W"], c.weights["W"])


def test_tied_init_is_the_trivial_ode():
    net = oc.ResNet(depth=8, dim=5, width=7, init="tied", ensemble=3, seed=0)
    w = net.weights
    assert torch.count_nonzero(w["V"]) == 0
    assert torch.equal(w["W"][:, 0], w["W"][:, 7])
    x = torch.randn(4, 5)
    torch.testing.assert_close(net(x), x.expand(3, 4, 5))


def test_select_and_from_weights_roundtrip():
    net = make("mlp", "tanh", io_init="identity", input_dim=4, output_dim=4)
    w = net.numpy_weights()
    back = oc.ResNet.from_weights(block="mlp", V=w["V"], W=w["W"], A=w["A"], B=w["B"], activation="tanh")
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(back(x), net(x))
    one = net.select(1)
    torch.testing.assert_close(one(x)[0], net(x)[1])


def test_float32_and_float64_agree():
    net = make("mlp", "gelu")
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(net.to(dtype=torch.float32)(x.float()).double(), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,name", [
    ({"block": "attention"}, "block"), ({"block": "conv", "dim": 5, "width": 2}, "dim"), ({"depth": 0}, "depth"), ({"depth": -3}, "depth"), ({"dim": 2.5}, "dim"),
    ({"activation": "swish"}, "activation"), ({"beta": -1.0}, "beta"), ({"init": "gaussian"}, "init"),
    ({"init": "fbm(1.5)"}, "hurst"), ({"ensemble": 0}, "ensemble"), ({"dtype": torch.int32}, "dtype"),
    ({"delta": "shared"}, "delta"), ({"device": "tpu"}, "device"),
])
def test_constructor_rejects_bad_arguments(kwargs, name):
    args = dict(depth=4, dim=3)
    args.update(kwargs)
    with pytest.raises(oc.InvalidArgument, match=name):
        oc.ResNet(**args)


def test_bad_inputs_are_named():
    net = oc.ResNet(depth=4, dim=3)
    with pytest.raises(oc.InvalidArgument, match="x"):
        net(torch.randn(5, 4))
    with pytest.raises(oc.InvalidArgument, match="x"):
        net(torch.full((5, 3), float("nan")))
    with pytest.raises(oc.InvalidArgument, match="x"):
        net(torch.randn(3))
    with pytest.raises(oc.InvalidArgument, match="W"):
        oc.ResNet.from_weights(block="mlp", V=np.zeros((1, 3, 4, 5)), W=np.zeros((1, 3, 4, 5)))
    with pytest.raises(oc.InvalidArgument, match="b"):
        oc.ResNet.from_weights(block="mlp", V=np.zeros((1, 3, 4, 5)), W=np.zeros((1, 3, 5, 4)), b=np.zeros(3))
    with pytest.raises(oc.InvalidArgument, match="A"):
        oc.ResNet.from_weights(block="res1", V=np.zeros((2, 3, 4, 4)), A=np.zeros((3, 4, 4)))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    net = make("mlp", "gelu")
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(5, 2, dtype=torch.float64)
    gpu = net.to(device="cuda")
    torch.testing.assert_close(gpu(x).cpu(), net(x))
    tr_c = oc.gradient_flow(net.clone(), x, y, steps=3, lr=1e-2)
    tr_g = oc.gradient_flow(gpu, x, y, steps=3, lr=1e-2)
    np.testing.assert_allclose(tr_c.loss, tr_g.loss, rtol=1e-10)


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, odecheck; print(sorted(m for m in ('hypothesis', 'matplotlib', 'typer', 'dask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("act", ["identity", "gelu", "tanh", "relu", "softplus"])
@pytest.mark.parametrize("segment", [1, 5, 37, 100])
def test_recomputation_gives_identical_gradients(act, segment, path):
    net = oc.ResNet(depth=37, dim=4, width=5, activation=act, init="iid", ensemble=3, dtype=torch.float64,
                    train_io=True, io_init="gaussian")
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g)
    y = torch.randn(6, 4, dtype=torch.float64, generator=g)
    loss, grads = loss_and_grads(net, x, y)
    grads = {k: v.clone() for k, v in grads.items()}
    loss2, grads2 = loss_and_grads(net, x, y, segment=segment, reuse=True)
    torch.testing.assert_close(loss2, loss, rtol=0, atol=0)
    for k in grads:
        torch.testing.assert_close(grads2[k], grads[k], rtol=1e-12, atol=1e-12, msg=k)


def test_recomputation_only_for_mlp():
    net = oc.ResNet(block="res1", depth=4, dim=3)
    with pytest.raises(oc.InvalidArgument, match="segment"):
        loss_and_grads(net, torch.randn(2, 3), torch.randn(2, 3), segment=2)


def test_from_weights_says_its_weights_were_given_not_drawn():
    V = torch.randn(2, 3, 4, 5)
    net = oc.ResNet.from_weights(block="mlp", V=V, W=torch.randn(2, 3, 5, 4))
    assert net.config()["init"] == "given" and "init='given'" in repr(net)
    assert net.config()["io_init"] == "identity"
    with_io = oc.ResNet.from_weights(block="mlp", V=V, W=torch.randn(2, 3, 5, 4), A=torch.randn(1, 4, 3))
    assert with_io.config()["io_init"] == "given"


@pytest.mark.parametrize("init", ["tied", "iid", "smooth(0.2)", "fbm(0.7)", "zero"])
def test_conv_block_kernels_along_depth(init):
    # c = 3 channels of 4 x 4 maps; kernels (R, L, c, c, 3, 3) drawn along depth like any family
    net = oc.ResNet(block="conv", depth=6, dim=3 * 16, width=3, input_dim=5, output_dim=4, init=init, ensemble=2,
                    io_init="gaussian", dtype=torch.float64)
    W, V = net.weights["W"], net.weights["V"]
    assert W.shape == V.shape == (2, 6, 3, 3, 3, 3)
    if init == "tied":
        assert torch.equal(W[:, :1].expand_as(W), W) and not V.any()
    if init == "zero":
        assert not W.any() and not V.any()
    if init in ("iid", "smooth(0.2)", "fbm(0.7)"):
        assert not torch.equal(W[:, 0], W[:, 1])
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(net(x), naive_forward(net, x), rtol=1e-12, atol=1e-12)
    with pytest.raises(oc.InvalidArgument, match="^block='conv'"):
        oc.ResNet.from_weights(block="conv", W=W, V=V)


def test_conv_dense_matrix_is_the_convolution():
    # the dense matrix of a 3x3 convolution (padding 1) on c x S x S maps, built from the kernel's positions,
    # applied to a flattened map equals F.conv2d; its adjoint (the kernel gradient) equals conv2d_weight
    import torch.nn.functional as F
    from torch.nn.grad import conv2d_weight

    from odecheck.engine.blocks.conv import Conv

    g = torch.Generator().manual_seed(8)
    for c, s in ((1, 1), (2, 2), (3, 4), (1, 8)):
        K = torch.randn(2, c, c, 3, 3, dtype=torch.float64, generator=g)
        x = torch.randn(2, 5, c * s * s, dtype=torch.float64, generator=g)
        M = Conv._matrix(K, c, s)
        for r in range(2):
            ref = F.conv2d(x[r].reshape(5, c, s, s), K[r], padding=1).reshape(5, -1)
            torch.testing.assert_close(x[r] @ M[r].T, ref, rtol=1e-13, atol=1e-13)
            assert int((M[r] != 0).sum()) == int(sum(((K[r, :, :, a, b] != 0).sum()) * (s - abs(a - 1)) * (s - abs(b - 1))
                                                     for a in range(3) for b in range(3)))  # entries copied, none summed
        gy = torch.randn(2, 5, c * s * s, dtype=torch.float64, generator=g)
        gK = Conv._kernel_grad(torch.bmm(gy.transpose(1, 2), x), c, s)
        for r in range(2):
            ref = conv2d_weight(x[r].reshape(5, c, s, s), (c, c, 3, 3), gy[r].reshape(5, c, s, s), padding=1)
            torch.testing.assert_close(gK[r], ref, rtol=1e-12, atol=1e-12)


def test_conv_members_are_one_grouped_convolution():
    # a member's output does not depend on the others: the same as that member alone
    net = oc.ResNet(block="conv", depth=5, dim=2 * 9, width=2, init="iid", ensemble=3, activation="gelu",
                    dtype=torch.float64, seed=4)
    x = torch.randn(6, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(net(x)[1], net.select(1)(x)[0], rtol=1e-13, atol=1e-15)


def test_conv_io_maps_are_a_convolution_and_a_pooled_head():
    # io_init="conv": A x is a 3x3 convolution of the C-channel image, B averages each channel over
    # the map and applies a Gaussian head; recomputed here from the member's generator
    import torch.nn.functional as F
    from odecheck.init import member_generator

    net = oc.ResNet(block="conv", depth=2, dim=4 * 16, width=4, input_dim=2 * 16, output_dim=3, io_init="conv",
                    init="zero", ensemble=2, seed=3, dtype=torch.float64)
    x = torch.randn(5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = member_generator(3 + 7919, 1)
    k = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64) / math.sqrt(18)
    head = torch.randn(3, 4, generator=g, dtype=torch.float64) / 2
    ref = F.conv2d(x.reshape(5, 2, 4, 4), k, padding=1).mean(dim=(2, 3)) @ head.T  # zero blocks: F = B A x
    torch.testing.assert_close(net(x)[1], ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(oc.InvalidArgument, match="^input_dim=30"):
        oc.ResNet(block="conv", depth=2, dim=64, width=4, input_dim=30, io_init="conv")
    with pytest.raises(oc.InvalidArgument, match="^io_init='conv'"):
        oc.ResNet(block="mlp", depth=2, dim=8, io_init="conv")


def test_an_architecture_record_builds_the_same_network_as_its_fields():
    arch = oc.Architecture(block="mlp", depth=5, dim=4, width=6, activation="tanh", ensemble=2)
    a = oc.ResNet(arch, init="iid", seed=3)
    b = oc.ResNet(block="mlp", depth=5, dim=4, width=6, activation="tanh", ensemble=2, init="iid", seed=3)
    assert a.config() == b.config()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in b.weights)
    c = oc.ResNet(arch, depth=7, init="iid")  # keywords replace the record's fields
    assert c.depth == 7 and arch.depth == 5
    assert arch.width == 6 and oc.Architecture(block="res1", depth=2, dim=3, width=9).width == 3  # no inner width
    with pytest.raises(oc.InvalidArgument, match="^depth=0"):
        oc.Architecture(depth=0, dim=4)
    with pytest.raises(oc.InvalidArgument, match="^beta=-1"):
        oc.ResNet(depth=2, dim=4, beta=-1)


def test_prepare_input_is_public_and_names_the_argument():
    import odecheck as oc

    net = oc.ResNet(block="mlp", depth=4, dim=3, width=4, ensemble=2, seed=0)
    assert net.prepare_input(np.ones((5, 3))).shape == (5, 3)
    with pytest.raises(oc.InvalidArgument, match=r"^x=.*last dimension input_dim=3"):
        net.prepare_input(np.ones((5, 4)))
