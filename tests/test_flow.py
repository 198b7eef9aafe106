import numpy as np
import pytest
import torch

import odecheck as oc


def small(R=3, **kw):
    args = dict(block="mlp", depth=8, dim=4, width=6, activation="gelu", init="iid", ensemble=R, seed=0,
                dtype=torch.float64, io_init="identity")
    args.update(kw)
    return oc.ResNet(**args)


def data(n=10, d=4):
    return oc.gaussian_task(n, d, d, seed=1, dtype=torch.float64)


def test_trajectory_shapes_and_loss_decreases():
    net, ds = small(), data()
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=20, lr=1e-2, snapshots=[0, 20])
    assert tr.loss.shape == (21, 3) and tr.pl_ratio.shape == (21, 3) and tr.max_increment.shape == (21, 3)
    assert (tr.loss[-1] < tr.loss[0]).all()
    assert sorted(tr.snapshots) == [0, 20]
    assert tr.snapshots[0]["V"].shape == (3, 8, 4, 6)


def test_flow_step_is_gradient_descent_with_factor_L():
    net, ds = small(R=1, train_io=True), data()
    before = {k: v.clone() for k, v in net.weights.items()}
    from helpers import naive_loss_grads

    _, g = naive_loss_grads(net, ds.x, ds.y)
    oc.gradient_flow(net, ds.x, ds.y, steps=1, lr=1e-3)
    after = net.weights
    torch.testing.assert_close(after["V"], before["V"] - 1e-3 * 8 * g["V"])
    torch.testing.assert_close(after["A"], before["A"] - 1e-3 * g["A"])


def test_loss_row_zero_is_initial_loss_and_pl_ratio_definition():
    net, ds = small(train_io=True), data()
    from helpers import naive_loss_grads

    loss, g = naive_loss_grads(net, ds.x, ds.y)
    num = sum(((8 if k in ("V", "W") else 1) * (g[k].reshape(3, -1) ** 2).sum(1)) for k in ("V", "W", "A", "B"))
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=1, lr=1e-3)
    np.testing.assert_allclose(tr.loss[0], loss.numpy(), rtol=1e-12)
    np.testing.assert_allclose(tr.pl_ratio[0], (num / loss).numpy(), rtol=1e-10)


def test_member_alone_equals_member_in_ensemble():
    net, ds = small(R=3), data()
    alone = net.select(1)
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=15, lr=1e-2)
    tr1 = oc.gradient_flow(alone, ds.x, ds.y, steps=15, lr=1e-2)
    np.testing.assert_allclose(tr1.loss[:, 0], tr.loss[:, 1], rtol=1e-12)
    torch.testing.assert_close(alone.weights["V"][0], net.weights["V"][1])


def test_diverged_member_is_frozen_and_others_go_on():
    net = small(R=3)
    w = net.numpy_weights()
    w["V"][1] = 1e200
    w["W"][1] = 1e200
    net2 = oc.ResNet.from_weights(block="mlp", V=w["V"], W=w["W"], A=w["A"], B=w["B"], activation="gelu")
    ds = data()
    ref = net2.select([0, 2])
    tr = oc.gradient_flow(net2, ds.x, ds.y, steps=5, lr=1e-2)
    tr_ref = oc.gradient_flow(ref, ds.x, ds.y, steps=5, lr=1e-2)
    assert tr.diverged.tolist() == [False, True, False] and tr.diverged_at[1] == 0
    np.testing.assert_allclose(tr.loss[:, [0, 2]], tr_ref.loss, rtol=1e-12)
    assert np.array_equal(net2.numpy_weights()["V"][1], w["V"][1])


def test_step_halving_error_is_first_order():
    net, ds = small(R=2), data()
    e1 = oc.discretization_error(net, ds.x, ds.y, steps=10, lr=4e-2)
    e2 = oc.discretization_error(net, ds.x, ds.y, steps=20, lr=2e-2)
    ratio = e1 / e2
    assert np.all((ratio > 1.7) & (ratio < 2.3)), ratio
    tr = oc.gradient_flow(net.clone(), ds.x, ds.y, steps=10, lr=4e-2, check_halving=True)
    np.testing.assert_allclose(tr.discretization_error, e1, rtol=1e-10)


def test_clipped_flow_bounds_each_update():
    net, ds = small(R=1), data()
    before = net.weights["V"].clone()
    oc.gradient_flow(net, ds.x, ds.y * 100, steps=1, lr=1.0, clip=1e-3)
    assert (net.weights["V"] - before).abs().max() <= 1e-3 + 1e-15


def test_trajectory_then_joins_runs():
    net, ds = small(), data()
    a = net.clone()
    full = oc.gradient_flow(a, ds.x, ds.y, steps=10, lr=1e-2)
    b = net.clone()
    t1 = oc.gradient_flow(b, ds.x, ds.y, steps=4, lr=1e-2)
    t2 = oc.gradient_flow(b, ds.x, ds.y, steps=6, lr=1e-2, start_step=4)
    joined = t1.then(t2)
    np.testing.assert_allclose(joined.loss, full.loss, rtol=1e-12)
    assert joined.steps == 10


@pytest.mark.parametrize("method", [oc.sgd, oc.adam])
def test_minibatch_optimizers_reduce_loss(method):
    net = small(R=2, block="single", activation="tanh", delta="per_layer")
    ds = data(n=32)
    tr = method(net, ds.x, ds.y, steps=60, lr=1e-2, batch_size=8, seed=0)
    assert tr.loss.shape == (61, 2)
    before = oc.gradient_flow(small(R=2, block="single", activation="tanh", delta="per_layer"), ds.x, ds.y,
                              steps=0, lr=1e-2).loss[0]
    assert (tr.loss[-1] < before).all()


@pytest.mark.parametrize("kw,name", [({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"),
                                     ({"clip": -1.0}, "clip"), ({"snapshots": [99]}, "snapshots")])
def test_flow_rejects_bad_arguments(kw, name):
    net, ds = small(), data()
    args = dict(steps=3, lr=1e-2)
    args.update(kw)
    with pytest.raises(oc.InvalidArgument, match=name):
        oc.gradient_flow(net, ds.x, ds.y, **args)


def test_flow_rejects_mismatched_targets():
    net, ds = small(), data()
    with pytest.raises(oc.InvalidArgument, match="y"):
        oc.gradient_flow(net, ds.x, ds.y[:5], steps=1, lr=1e-2)
    with pytest.raises(oc.InvalidArgument, match="y"):
        oc.gradient_flow(net, ds.x, torch.full_like(ds.y, float("nan")), steps=1, lr=1e-2)


def test_increments_can_be_skipped_and_match_naive_when_tracked():
    net, ds = small(), data()
    tr = oc.gradient_flow(net.clone(), ds.x, ds.y, steps=3, lr=1e-2, engine=oc.EngineOptions(track_increments=False))
    assert np.isnan(tr.max_increment).all()
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=3, lr=1e-2)
    w = net.weights
    naive = np.sqrt(sum(((w[f][:, 1:] - w[f][:, :-1]) ** 2).flatten(2).sum(-1).numpy() for f in ("V", "W")))
    np.testing.assert_allclose(tr.max_increment[-1], naive.max(1), rtol=1e-10)
