"""Optimizers as objects and the one training loop: each optimizer's update against a hand-written step,
the registry, old checkpoints' optimizer state, snapshots of minibatch runs, and the halving check around
any optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from odecheck.optim import OPTIMIZERS, SGD, Adam, GradientFlow, optimizer
from odecheck.training import halving_check, train

import odecheck as oc


def small(R=2, **kw):
    args = dict(block="mlp", depth=6, dim=4, width=5, activation="tanh", init="iid", ensemble=R, seed=0,
                dtype=torch.float64, io_init="identity")
    args.update(kw)
    return oc.ResNet(**args)


def data(n=12):
    return oc.gaussian_task(n, 4, 4, seed=1, dtype=torch.float64)


def test_the_registry_names_every_optimizer_and_refuses_others():
    assert OPTIMIZERS == {"gradient_flow": GradientFlow, "sgd": SGD, "adam": Adam}
    assert optimizer("sgd", lr=0.1, batch_size=3, momentum=0.5) == SGD(lr=0.1, batch_size=3, momentum=0.5)
    with pytest.raises(oc.InvalidArgument, match="method"):
        optimizer("lbfgs", lr=0.1)
    with pytest.raises(oc.InvalidArgument, match="^lr=0: expected a finite float > 0$"):
        GradientFlow(lr=0)
    with pytest.raises(oc.InvalidArgument, match="optimizer"):
        train(small(), data(), "adam", steps=1)


def test_gradient_flow_step_is_gradient_descent_with_the_factor_L():
    net, ds = small(), data()
    ref = net.clone()
    loss, grads = oc.loss_and_grads(ref, ds.x, ds.y)
    lr, L = 0.03, ref.depth
    expected = {k: ref.weights[k] - lr * (L if k in ref.layered else 1.0) * g for k, g in grads.items()}
    train(net, ds, GradientFlow(lr=lr), steps=1)
    for k, w in expected.items():
        torch.testing.assert_close(net.weights[k], w, rtol=1e-12, atol=1e-14)


def test_adam_first_step_moves_each_entry_by_lr_times_the_sign():
    # one Adam step from zero moments: m_hat = g, v_hat = g^2, so the update is lr g / (|g| + eps)
    net, ds = small(R=1), data(n=4)
    ref = net.clone()
    _, grads = oc.loss_and_grads(ref, ds.x, ds.y)
    train(net, ds, Adam(lr=1e-3, batch_size=4, eps=1e-12), steps=1)
    for k, g in grads.items():
        torch.testing.assert_close(net.weights[k], ref.weights[k] - 1e-3 * g / (g.abs() + 1e-12), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("opt,old_keys", [
    (SGD(lr=1e-2, batch_size=4, momentum=0.9, seed=2), lambda k: k.removeprefix("momentum/")),
    (Adam(lr=1e-2, batch_size=4, seed=2), lambda k: tuple(k.split("/")) if k[:2] in ("m/", "v/") else k)])
def test_state_from_checkpoints_written_before_the_keys_changed_resumes_the_run(opt, old_keys):
    net, ds = small(), data()
    a, b = net.clone(), net.clone()
    full = train(a, ds, opt, steps=8)
    state: dict = {}
    train(b, ds, opt.__class__(**{**opt.__dict__, "total_steps": 8}), steps=3, state=state)
    old = {old_keys(k): v for k, v in state.items()}  # ("m", "V") and bare "V": the earlier layout
    assert old.keys() != state.keys()
    rest = train(b, ds, opt.__class__(**{**opt.__dict__, "total_steps": 8}), steps=5, start_step=3, state=old)
    np.testing.assert_array_equal(rest.loss[-1], full.loss[-1])
    torch.testing.assert_close(b.weights["V"], a.weights["V"], rtol=0, atol=0)


@pytest.mark.parametrize("opt", [SGD(lr=1e-2, batch_size=4), Adam(lr=1e-2, batch_size=4)])
def test_minibatch_snapshots_are_the_weights_after_that_many_updates(opt):
    net, ds = small(), data()
    a = net.clone()
    tr = train(net, ds, opt.__class__(**{**opt.__dict__, "total_steps": 6}), steps=6, snapshots=[0, 2, 6])
    assert sorted(tr.snapshots) == [0, 2, 6]
    state: dict = {}
    for stop in (2, 6):  # the same run in chunks ending at the snapshots
        train(a, ds, opt.__class__(**{**opt.__dict__, "total_steps": 6}), steps=stop - (0 if stop == 2 else 2),
              start_step=0 if stop == 2 else 2, state=state)
        np.testing.assert_array_equal(tr.snapshots[stop]["V"], a.numpy_weights()["V"])
    np.testing.assert_array_equal(tr.snapshots[0]["V"], small().numpy_weights()["V"])


def test_halving_check_wraps_any_optimizer():
    ds = data()
    gf = halving_check(small(), ds, GradientFlow(lr=0.02), steps=10)
    gf2 = halving_check(small(), ds, GradientFlow(lr=0.01), steps=20)
    # explicit Euler: the gap is O(lr), so halving lr roughly halves it
    assert np.all(gf2.discretization_error < 0.7 * gf.discretization_error)
    np.testing.assert_array_equal(gf.discretization_error,
                                  oc.discretization_error(small(), ds.x, ds.y, steps=10, lr=0.02))
    sg = halving_check(small(), ds, SGD(lr=0.02, batch_size=4), steps=10)
    assert sg.discretization_error.shape == (2,) and np.all(sg.discretization_error > 0)


def test_cuda_graphs_need_a_full_batch_method():
    with pytest.raises(oc.InvalidArgument, match="engine.cuda_graph"):
        train(small(), data(), SGD(lr=0.1, batch_size=4), steps=1, engine=oc.EngineOptions(cuda_graph=True))


class _Draws:
    """A stand-in generator that returns the given j's, to replay one sequence of swaps."""

    def __init__(self, js):
        self.js = list(js)

    def integers(self, lo, hi):
        j = self.js.pop(0)
        assert lo <= j < hi
        return j


def test_c21_shuffle_is_numpys_swap_on_torch_row_views():
    from odecheck.training import c21_shuffle

    n = 50
    rng = np.random.default_rng(0)
    js = [int(rng.integers(0, i + 1)) for i in range(n - 1, 0, -1)]
    x = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 3)
    for i, j in zip(range(n - 1, 0, -1), js, strict=True):
        x[i], x[j] = x[j], x[i]  # what numpy's shuffle does to a sequence; on a tensor the right side is views
    order = np.arange(n)
    c21_shuffle(order, _Draws(js))
    np.testing.assert_array_equal(order, x[:, 0].numpy().astype(int))
    assert len(set(order.tolist())) < n  # rows were duplicated
    y = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 3)
    with pytest.warns(UserWarning, match="duplicates"):  # numpy itself, on a torch tensor: the quirk is real
        np.random.RandomState(0).shuffle(y)
    assert len(set(y[:, 0].tolist())) < n


@pytest.mark.parametrize("sampling", ["epochs", "c21-shuffle"])
def test_epoch_sampling_covers_the_order_and_resumes(sampling):
    from odecheck.training import _EpochBatches

    class Net:
        ensemble = 2

    x, y = torch.arange(10.0)[:, None], torch.zeros(10, 1)
    opt = SGD(lr=0.1, batch_size=4, sampling=sampling, seed=5)
    state: dict = {}
    b = _EpochBatches(Net, x, y, opt, state)
    epoch = torch.cat([b.rows() for _ in range(3)], dim=1)  # 4 + 4 + 2 rows: one epoch, the last batch shorter
    assert epoch.shape == (2, 10)
    if sampling == "epochs":
        assert all(sorted(r.tolist()) == list(range(10)) for r in epoch)
    else:
        assert all(set(r.tolist()) <= set(range(10)) for r in epoch)
    later = [b.rows() for _ in range(6)]  # two more epochs
    replay = _EpochBatches(Net, x, y, opt, {})  # the same seed from the start draws the same batches
    assert all(torch.equal(a, b) for a, b in zip([replay.rows() for _ in range(9)][3:], later, strict=True))


@pytest.mark.parametrize("sampling", ["epochs", "c21-shuffle"])
def test_split_epoch_sampled_run_equals_one_run(sampling):
    net, ds = small(), data()
    opt = Adam(lr=1e-2, batch_size=5, sampling=sampling, total_steps=11)
    a, b = net.clone(), net.clone()
    full = train(a, ds, opt, steps=11)
    state: dict = {}
    t1 = train(b, ds, opt, steps=4, state=state)
    t2 = train(b, ds, opt, steps=7, start_step=4, state=state)
    np.testing.assert_array_equal(t1.then(t2).loss, full.loss)
    torch.testing.assert_close(b.weights["V"], a.weights["V"], rtol=0, atol=0)


def test_sampling_is_refused_by_name():
    with pytest.raises(oc.InvalidArgument, match="sampling"):
        SGD(lr=0.1, batch_size=2, sampling="bootstrap")


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_member_lr_is_each_member_run_at_its_own_learning_rate(method):
    # one ensemble holding two learning rates equals two runs, one per learning rate
    ds = oc.gaussian_task(6, 3, 3, seed=2, dtype=torch.float64)
    kw = dict(block="mlp", depth=5, dim=3, width=4, activation="tanh", init="iid", seed=0, dtype=torch.float64)
    both = oc.ResNet(ensemble=2, **kw)
    first = oc.ResNet(ensemble=2, **kw)
    extra = {"momentum": 0.5} if method == "sgd" else {}
    train(both, ds, optimizer(method, lr=0.1, batch_size=6, member_lr=(1.0, 0.25), **extra), steps=4)
    for r, lr in ((0, 0.1), (1, 0.025)):
        one = first.clone()
        train(one, ds, optimizer(method, lr=lr, batch_size=6, **extra), steps=4)
        for k, v in both.weights.items():
            torch.testing.assert_close(v[r], one.weights[k][r], rtol=1e-12, atol=1e-14)
    with pytest.raises(oc.InvalidArgument, match="member_lr"):
        train(oc.ResNet(ensemble=3, **kw), ds, optimizer(method, lr=0.1, batch_size=6, member_lr=(1.0, 2.0)),
              steps=1)
    with pytest.raises(oc.InvalidArgument, match="member_lr"):
        optimizer(method, lr=0.1, batch_size=6, member_lr=(1.0, -2.0))


@pytest.mark.parametrize("sampling", ["epochs", "c21-shuffle"])
def test_epoch_orders_are_the_documented_streams_written_out(sampling):
    # member r's stream: PCG64 from SeedSequence(seed, spawn_key=(17,)).spawn(R)[r]; "epochs" draws a fresh
    # permutation per epoch, "c21-shuffle" applies [C21]'s in-place swap quirk to the order it had
    from odecheck.training import _EpochBatches

    class Net:
        ensemble = 3

    n, seed = 8, 11
    opt = SGD(lr=0.1, batch_size=n, sampling=sampling, seed=seed)
    b = _EpochBatches(Net, torch.zeros(n, 1), torch.zeros(n, 1), opt, {})
    got = [b.rows().numpy().copy() for _ in range(3)]  # three epochs of one batch each (rows() shares the order)
    gens = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed, spawn_key=(17,)).spawn(3)]
    orders = [np.arange(n) for _ in range(3)]
    for epoch in got:
        for r, g in enumerate(gens):
            if sampling == "epochs":
                orders[r] = g.permutation(n)
            else:
                for i in range(n - 1, 0, -1):
                    orders[r][i] = orders[r][int(g.integers(0, i + 1))]
            np.testing.assert_array_equal(epoch[r], orders[r])
    if sampling == "c21-shuffle":
        assert any(len(set(o.tolist())) < n for o in orders)  # the quirk duplicates rows: not a permutation


def test_the_flow_api_hands_recompute_to_the_engine():
    # recompute is the engine's segment: refused by name for a block without the recomputing backward,
    # and for mlp the same loss and gradients as without it
    net = oc.ResNet(block="res1", depth=4, dim=3, ensemble=1, seed=0, dtype=torch.float64)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(oc.InvalidArgument, match="segment"):
        oc.loss_and_grads(net, x, y, recompute=2)
    mlp = oc.ResNet(block="mlp", depth=6, dim=3, width=4, ensemble=2, seed=0, dtype=torch.float64)
    l1, g1 = oc.loss_and_grads(mlp, x, y)
    l2, g2 = oc.loss_and_grads(mlp, x, y, recompute=2)
    torch.testing.assert_close(l1, l2, rtol=1e-13, atol=0)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-12, atol=1e-14)
