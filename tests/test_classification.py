"""Classification training: cross-entropy through the engine for every block (against autograd over
the naive per-layer loop), SGD with momentum, weight decay and a cosine schedule and Adam with
weight decay (against torch.optim on the naive model), the depth factor, and `odecheck train`
reporting accuracy on the digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import naive_forward
from typer.testing import CliRunner

import odecheck as oc
from odecheck.cli import app


def _net(block, act="tanh", R=2, L=4, seed=0):
    dim, width = (8, 2) if block == "conv" else (5, 6)  # conv: 2 channels of 2 x 2 maps
    return oc.ResNet(block=block, depth=L, dim=dim, width=width, input_dim=4, output_dim=3, activation=act,
                     init="iid", io_init="gaussian", train_io=True, ensemble=R, seed=seed, dtype=torch.float64)


def _data(n=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=g)
    return x, labels, torch.nn.functional.one_hot(labels, 3).double()


def _naive_ce(net, x, labels, weights):
    out = naive_forward(net, x, weights)  # (R, n, 3)
    return torch.stack([torch.nn.functional.cross_entropy(out[r], labels) for r in range(out.shape[0])])


@pytest.mark.parametrize("block", ["mlp", "single", "res1", "conv"])
@pytest.mark.parametrize("act", ["tanh", "gelu", "relu"])
def test_cross_entropy_gradients_equal_autograd_of_the_naive_loop(block, act):
    net = _net(block, act)
    x, labels, onehot = _data()
    loss, grads = oc.loss_and_grads(net, x, onehot, loss="cross_entropy")
    w = {k: v.detach().clone().requires_grad_(True) for k, v in net.weights.items()}
    ref = _naive_ce(net, x, labels, w)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    for name in net.trainable:
        torch.testing.assert_close(grads[name], w[name].grad, rtol=1e-9, atol=1e-11, msg=name)


def test_bad_loss_is_named():
    net = _net("mlp")
    x, _, onehot = _data()
    for call in (lambda: oc.loss_and_grads(net, x, onehot, loss="hinge"),
                 lambda: oc.gradient_flow(net, x, onehot, steps=1, lr=0.1, loss="hinge"),
                 lambda: oc.sgd(net, x, onehot, steps=1, lr=0.1, batch_size=7, loss="hinge")):
        with pytest.raises(oc.InvalidArgument, match="^loss='hinge'"):
            call()
    with pytest.raises(oc.InvalidArgument, match="^schedule="):
        oc.sgd(net, x, onehot, steps=1, lr=0.1, batch_size=7, schedule="linear")
    with pytest.raises(oc.InvalidArgument, match="^total_steps="):
        oc.adam(net, x, onehot, steps=5, lr=0.1, batch_size=7, total_steps=3)


def _torch_reference(net, x, labels, *, opt, steps, lr, total, **kw):
    """The same training on the naive model with torch.optim (full batch: every minibatch of n
    samples is the whole set), schedule by LambdaLR."""
    w = {k: v.detach().clone().requires_grad_(True) for k, v in net.weights.items() if k in net.trainable}
    frozen = {k: v for k, v in net.weights.items() if k not in net.trainable}
    o = opt(list(w.values()), lr=lr, **kw)
    sched = torch.optim.lr_scheduler.LambdaLR(o, lambda t: 0.5 * (1 + math.cos(math.pi * t / total)))
    for _ in range(steps):
        o.zero_grad()
        _naive_ce(net, x, labels, {**frozen, **w}).sum().backward()
        o.step()
        sched.step()
    return {k: v.detach() for k, v in w.items()}


def test_sgd_momentum_weight_decay_cosine_equals_torch_optim():
    net = _net("mlp")
    x, labels, onehot = _data()
    ref = _torch_reference(net, x, labels, opt=torch.optim.SGD, steps=6, lr=0.05, total=6, momentum=0.9,
                           weight_decay=0.01)
    oc.sgd(net, x, onehot, steps=6, lr=0.05, batch_size=7, momentum=0.9, weight_decay=0.01, schedule="cosine",
           loss="cross_entropy")
    for name, v in ref.items():
        torch.testing.assert_close(net.weights[name], v, rtol=1e-10, atol=1e-12, msg=name)


def test_adam_weight_decay_cosine_equals_torch_optim():
    net = _net("single")
    x, labels, onehot = _data()
    ref = _torch_reference(net, x, labels, opt=torch.optim.Adam, steps=5, lr=0.01, total=5, weight_decay=0.02)
    oc.adam(net, x, onehot, steps=5, lr=0.01, batch_size=7, weight_decay=0.02, schedule="cosine",
            loss="cross_entropy")
    for name, v in ref.items():
        torch.testing.assert_close(net.weights[name], v, rtol=1e-9, atol=1e-11, msg=name)


def test_cosine_schedule_over_chunks_is_one_schedule():
    x, _, onehot = _data()
    a, b = _net("res1"), _net("res1")
    oc.sgd(a, x, onehot, steps=8, lr=0.05, batch_size=3, momentum=0.5, schedule="cosine", loss="cross_entropy")
    state: dict = {}
    oc.sgd(b, x, onehot, steps=5, lr=0.05, batch_size=3, momentum=0.5, schedule="cosine", total_steps=8,
           loss="cross_entropy", state=state)
    oc.sgd(b, x, onehot, steps=3, lr=0.05, batch_size=3, momentum=0.5, schedule="cosine", total_steps=8,
           loss="cross_entropy", state=state, start_step=5)
    for name in a.trainable:
        torch.testing.assert_close(a.weights[name], b.weights[name], rtol=0, atol=0, msg=name)


def test_depth_factor_is_the_gradient_flow_step():
    x, _, onehot = _data()
    a, b = _net("mlp", L=8), _net("mlp", L=8)
    _, grads = oc.loss_and_grads(b, x, onehot, loss="cross_entropy")
    b.update_(grads, 0.03, flow=True)  # L * lr on the block weights, lr on A and B
    oc.sgd(a, x, onehot, steps=1, lr=0.03, batch_size=7, depth_factor=True, loss="cross_entropy")
    for name in a.trainable:
        torch.testing.assert_close(a.weights[name], b.weights[name], rtol=1e-12, atol=1e-14, msg=name)


def test_train_reports_digits_accuracy(tmp_path):
    import tomli_w

    cfg = {"model": {"block": "mlp", "depth": 8, "dim": 64, "width": 32, "activation": "gelu", "ensemble": 2,
                     "io_init": "gaussian", "train_io": True},
           "data": {"task": "digits", "n": 1347},
           "train": {"method": "sgd", "steps": 200, "lr": 0.05, "batch_size": 64, "momentum": 0.9,
                     "weight_decay": 5e-4, "schedule": "cosine", "loss": "cross_entropy", "snapshots": [200]}}
    (tmp_path / "c.toml").write_text(tomli_w.dumps(cfg))
    res = CliRunner().invoke(app, ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("accuracy"))
    test = float(line.split("test ")[1].split(" ")[0])
    # at least as good as a linear classifier on the same split, up to sampling noise (helpers)
    from helpers import linear_digits_floor

    assert test >= linear_digits_floor(), line
    bad = {**cfg, "train": {**cfg["train"], "method": "gradient_flow"}}
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(bad))
    res = CliRunner().invoke(app, ["train", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "train.method" in res.output
    assert np.isfinite(test)


@pytest.mark.parametrize("method", ["sgd", "adam", "gradient_flow"])
def test_conv_io_maps_train_as_a_kernel_and_a_head(method):
    """io_init="conv" with train_io: three steps of odecheck's optimizer equal torch.optim (or plain
    gradient descent) on the naive model parametrized by the 3x3 kernel and the (d', c) head, rebuilt
    here into dense A and B with F.conv2d; A stays a convolution and B a pooled head."""
    import torch.nn.functional as F

    c, S, C, dp, L, R = 3, 4, 2, 3, 3, 2
    net = oc.ResNet(block="conv", depth=L, dim=c * S * S, width=c, input_dim=C * S * S, output_dim=dp,
                    activation="tanh", init="iid", io_init="conv", train_io=True, ensemble=R, seed=2,
                    dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    n = 6
    x = torch.randn(n, C * S * S, generator=g, dtype=torch.float64)
    labels = torch.randint(0, dp, (n,), generator=g)
    onehot = F.one_hot(labels, dp).double()
    # the structured parameters, read off the initial dense maps at an interior position (y = x = 1)
    A0 = net.weights["A"].reshape(R, c, S, S, C, S, S)
    kernel = torch.stack([torch.stack([A0[:, :, 1, 1, :, a, b] for b in range(3)], -1) for a in range(3)], -2)
    head = net.weights["B"].reshape(R, dp, c, S * S)[..., 0] * S * S
    eye = torch.eye(C * S * S, dtype=torch.float64).reshape(-1, C, S, S)

    def dense(k, w):
        A = torch.stack([F.conv2d(eye, k[r], padding=1).reshape(C * S * S, c * S * S).T for r in range(R)])
        return A, (w[..., None] / (S * S)).expand(R, dp, c, S * S).reshape(R, dp, c * S * S)

    torch.testing.assert_close(dense(kernel, head)[0], net.weights["A"], rtol=0, atol=0)
    params = {"k": kernel.clone().requires_grad_(True), "w": head.clone().requires_grad_(True),
              **{f: net.weights[f].detach().clone().requires_grad_(True) for f in net.layer_families}}
    lr, steps = 0.05, 3
    opt = {"sgd": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=1e-2),
           "adam": lambda p: torch.optim.Adam(p, lr=lr),
           "gradient_flow": None}[method]
    ref_opt = opt(list(params.values())) if opt else None
    for _ in range(steps):
        A, B = dense(params["k"], params["w"])
        loss = _naive_ce(net, x, labels, {"A": A, "B": B, **{f: params[f] for f in net.layer_families}})
        for p in params.values():
            p.grad = None
        loss.sum().backward()
        if ref_opt is not None:
            ref_opt.step()
        else:  # gradient flow: dk/dt = -dl/dk, dZ_k/dt = -L dl/dZ_k
            with torch.no_grad():
                for name, p in params.items():
                    p -= lr * (L if name in net.layer_families else 1) * p.grad
    if method == "sgd":
        oc.sgd(net, x, onehot, steps=steps, lr=lr, batch_size=n, momentum=0.9, weight_decay=1e-2,
               loss="cross_entropy")
    elif method == "adam":
        oc.adam(net, x, onehot, steps=steps, lr=lr, batch_size=n, loss="cross_entropy")
    else:
        oc.gradient_flow(net, x, onehot, steps=steps, lr=lr, loss="cross_entropy")
    A, B = dense(params["k"].detach(), params["w"].detach())
    torch.testing.assert_close(net.weights["A"], A, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net.weights["B"], B, rtol=1e-10, atol=1e-12)
    for f in net.layer_families:
        torch.testing.assert_close(net.weights[f], params[f].detach(), rtol=1e-10, atol=1e-12)
    assert not torch.equal(net.weights["A"], dense(kernel, head)[0])  # the maps did train


def test_a_run_of_zero_steps_records_its_own_loss(tmp_path):
    """`odecheck train` with steps = 0 records the loss at initialization in the configured loss
    (cross-entropy here), recomputed with torch's cross_entropy on the saved network."""
    from odecheck.config import RunConfig
    from odecheck.runner import build_data, run

    cfg = RunConfig.from_dict({"model": {"block": "mlp", "depth": 3, "dim": 64, "width": 8, "io_init": "gaussian",
                                         "ensemble": 2, "dtype": "float64"},
                               "data": {"task": "digits", "n": 40},
                               "train": {"method": "gradient_flow", "steps": 0, "loss": "cross_entropy"}})
    net, traj, _ = run(cfg, tmp_path)
    data = build_data(cfg, torch.float64)
    out = net(data.x)
    ref = [torch.nn.functional.cross_entropy(out[r], data.y.argmax(-1)).item() for r in range(2)]
    np.testing.assert_allclose(traj.loss[-1], ref, rtol=1e-12)
