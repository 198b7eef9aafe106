"""odecheck.nn.StackedResNet: the engine as a torch.nn.Module, checked against autograd references."""

from __future__ import annotations

import io
import math

import odecheck.nn as onn
import pytest
import torch
from helpers import rounding_bound
from odecheck._errors import InvalidArgument
from odecheck.models import ACTIVATIONS

import odecheck as oc
from odecheck import _native


def _module(block, act="tanh", **kw):
    base = dict(block=block, depth=5, dim=4, activation=act, init="iid", ensemble=2, train_io=True,
                dtype=torch.float64, io_init="gaussian", input_dim=3, output_dim=2, seed=1)
    if block == "mlp":
        base["width"] = 5
    base.update(kw)
    return onn.StackedResNet(**base)


def _functional(m):
    names = [n for n, _ in m.named_parameters()]
    return lambda x, *ps: torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x,))


@pytest.mark.parametrize("block,extra", [("mlp", {}), ("single", {}), ("single", {"delta": "per_layer"}),
                                         ("single", {"delta": "shared"}), ("res1", {})])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_gradcheck_float64_every_block_and_activation(block, extra, act):
    m = _module(block, act, **extra)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_functional(m), (x, *m.parameters()), eps=1e-6, atol=1e-7)


def _naive_mlp(weights, x, *, depth, beta, q, m, act):
    """Per-member, per-layer loop differentiated by autograd; every constant from the configuration."""
    alpha = depth ** (-beta)
    outs = []
    for r in range(weights["V"].shape[0]):
        h = x @ weights["A"][r].T
        for k in range(depth):
            pre = h @ weights["W"][r, k].T / math.sqrt(q)
            h = h + alpha / math.sqrt(m) * oc.models.activate(act, pre) @ weights["V"][r, k].T
        outs.append(h @ weights["B"][r].T)
    return torch.stack(outs)


@pytest.mark.parametrize("act", ["gelu", "relu", "identity"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_equal_a_naive_layer_loop(act, dtype):
    cfg = dict(depth=7, beta=0.75, dim=16, width=32)
    m = onn.StackedResNet(block="mlp", activation=act, init="iid", ensemble=3, train_io=True, io_init="gaussian",
                          dtype=dtype, seed=4, **cfg)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 16, generator=g, dtype=dtype)
    target = torch.randn(3, 9, 16, generator=g, dtype=dtype)
    loss = ((m(x) - target) ** 2).mean()
    loss.backward()
    ref = {k: v.detach().double().clone().requires_grad_(True) for k, v in m.weights.items()}
    out = _naive_mlp(ref, x.double(), depth=7, beta=0.75, q=16, m=32, act=act)
    ((out - target.double()) ** 2).mean().backward()
    tol = rounding_bound(7, 16, 32, 9, unit_roundoff=torch.finfo(dtype).eps / 2)
    for name, p in m.named_parameters():
        want = ref[name].grad
        assert ((p.grad.double() - want).abs().max() / want.abs().max()).item() < tol, name


def test_forward_equals_the_resnet_it_came_from():
    net = oc.ResNet(block="mlp", depth=9, dim=16, width=32, activation="gelu", init="smooth(0.1)", ensemble=3, seed=2)
    m = onn.StackedResNet.from_resnet(net)
    x = torch.randn(11, 16)
    assert torch.equal(m(x), net(x))
    with torch.no_grad():
        assert torch.equal(m(x), net(x))
    for k, v in net.weights.items():
        assert torch.equal(m.weights[k], v)
    assert m.weights["V"].shape == (3, 9, 16, 32) and m.weights["W"].shape == (3, 9, 32, 16)
    assert not m.A.requires_grad and "A" in dict(m.named_buffers())  # train_io=False: buffers
    back = m.to_resnet()
    assert torch.equal(back(x), net(x)) and back.config()["init"] == net.config()["init"]


def test_same_keywords_as_resnet_draw_the_same_weights():
    kw = dict(block="single", depth=6, dim=5, activation="tanh", init="fbm(0.7)", ensemble=2, seed=3)
    net, m = oc.ResNet(**kw), onn.StackedResNet(**kw)
    for k, v in net.weights.items():
        assert torch.equal(m.weights[k], v), k


def test_state_dict_round_trips_exactly():
    a = _module("mlp", "gelu")
    b = _module("mlp", "gelu", seed=9)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(5, 3, dtype=torch.float64)
    assert set(a.state_dict()) == {"V", "W", "A", "B"}
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    assert torch.equal(a(x), b(x))


def test_sgd_through_the_module_reproduces_gradient_flow_step_for_step():
    L, lr, steps = 12, 1e-2, 5
    net = oc.ResNet(block="mlp", depth=L, dim=16, width=32, activation="gelu", init="iid", ensemble=3, seed=6,
                    train_io=True, io_init="gaussian")
    m = onn.StackedResNet.from_resnet(net)
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(20, 16, generator=g), torch.randn(20, 16, generator=g)
    # the flow's rates: L * lr on the per-layer families, lr on A and B; loss sum_r (1/n) sum_i ||F - y||^2
    opt = torch.optim.SGD(m.flow_param_groups(lr))
    assert [grp["lr"] for grp in opt.param_groups] == [L * lr, lr]
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((m(x) - y) ** 2).sum(dim=(1, 2)).div(x.shape[0])
        losses.append(loss.detach())
        loss.sum().backward()
        opt.step()
    traj = oc.gradient_flow(net, x, y, steps=steps, lr=lr)
    tol = steps * 2 * rounding_bound(L, 16, 32, 20)
    torch.testing.assert_close(torch.stack(losses).double(), torch.as_tensor(traj.loss[:steps]), rtol=tol, atol=0)
    for k, v in net.weights.items():
        torch.testing.assert_close(m.weights[k].detach(), v, rtol=tol, atol=tol * v.abs().max().item())


def test_trains_on_the_bundled_digits_with_cross_entropy():
    data = oc.digits()
    ytr, yte = data.y.argmax(1), data.y_test.argmax(1)
    R = 2
    m = onn.StackedResNet(depth=16, dim=64, width=32, input_dim=64, output_dim=10, activation="gelu", init="iid",
                          ensemble=R, train_io=True, io_init="gaussian", seed=0)
    opt = torch.optim.SGD(m.parameters(), lr=0.5, momentum=0.9)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(m(data.x).flatten(0, 1), ytr.repeat(R))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test_acc = (m(data.x_test).argmax(-1) == yte).float().mean(1)
    # every member at least as good as a linear classifier on the same split, up to sampling noise
    from helpers import linear_digits_floor

    floor = linear_digits_floor()
    assert (test_acc >= floor).all(), (test_acc, floor)


def test_module_inside_a_bigger_model_gets_input_gradients():
    front = torch.nn.Linear(8, 3, dtype=torch.float64)
    m = _module("res1", "softplus")
    x = torch.randn(5, 8, dtype=torch.float64)
    m(front(x)).sum().backward()
    assert front.weight.grad is not None and torch.isfinite(front.weight.grad).all()
    assert front.weight.grad.abs().max() > 0


def test_retained_graph_gives_the_same_gradients_twice():
    m = _module("mlp", "gelu")
    x = torch.randn(5, 3, dtype=torch.float64)
    loss = m(x).square().sum()
    loss.backward(retain_graph=True)
    first = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    loss.backward()
    for n, p in m.named_parameters():
        assert torch.equal(p.grad, first[n]), n


def test_two_forwards_before_backward_keep_their_own_caches():
    m = _module("mlp", "tanh")
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    a, b, c = m(x1).sum(), m(x2).sum(), m(x1).sum()  # three live graphs: more than the pool holds
    (a + b + c).backward()
    both = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    (2 * m(x1).sum()).backward()
    m(x2).sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, both[n], rtol=1e-12, atol=1e-14)


def test_fused_kernels_run_behind_the_module():
    if _native.library() is None:
        pytest.skip("fused CPU kernels unavailable")
    m = onn.StackedResNet(depth=4, dim=16, width=32, activation="gelu", init="iid", ensemble=2, seed=0)
    x = torch.randn(6, 16)
    with _native.forcing():
        m(x).square().sum().backward()
        fused = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    with _native.disabled():
        m(x).square().sum().backward()
    for n, p in m.named_parameters():
        assert ((fused[n] - p.grad).abs().max() / p.grad.abs().max()).item() < 2 * rounding_bound(4, 16, 32, 6)


@pytest.mark.parametrize("x,needle", [(torch.randn(5, 4), "x"), (torch.randn(3, 5, 3), "ensemble axis"),
                                      (torch.randn(5, 3), "float64"), ("not a tensor", "x")])
def test_bad_input_is_named(x, needle):
    m = _module("mlp")
    with pytest.raises(InvalidArgument, match=needle):
        m(x)


def test_public_loss_and_grads_and_update_are_one_flow_step():
    kw = dict(block="mlp", depth=8, dim=16, width=32, activation="gelu", init="iid", ensemble=2, seed=1)
    a, b = oc.ResNet(**kw), oc.ResNet(**kw)
    x, y = torch.randn(10, 16), torch.randn(10, 16)
    loss, grads = oc.loss_and_grads(a, x, y)
    assert loss.shape == (2,) and set(grads) == set(a.trainable)
    assert grads["V"].shape == a.weights["V"].shape  # public layout (R, L, q, m)
    a.update_(grads, 1e-2, flow=True)
    oc.gradient_flow(b, x, y, steps=1, lr=1e-2)
    for k in a.weights:
        assert torch.equal(a.weights[k], b.weights[k]), k
    with pytest.raises(InvalidArgument, match="grads"):
        a.update_({"V": grads["V"][:, :3]}, 1e-2)
    with pytest.raises(InvalidArgument, match="grads"):
        a.update_({"Q": grads["V"]}, 1e-2)


def test_a_parameter_stored_otherwise_still_gets_its_own_gradient():
    # W re-stored member-major (contiguous in the public layout): the engine reads a copy and writes
    # W's gradient into a fresh tensor, never into a workspace buffer the next backward reuses
    m = _module("mlp", "tanh")
    m.W.data = m.W.data.contiguous()
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    m(x1).square().sum().backward()
    first = m.W.grad
    kept = first.clone()
    m.W.grad = None
    m(x2).square().sum().backward()
    assert torch.equal(first, kept) and not torch.equal(m.W.grad, kept)
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in m.weights.items()}
    out = _naive_mlp(ref, x2, depth=5, beta=1.0, q=4, m=5, act="tanh")
    out.square().sum().backward()
    torch.testing.assert_close(m.W.grad, ref["W"].grad, rtol=1e-10, atol=1e-12)
