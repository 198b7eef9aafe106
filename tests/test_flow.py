import re

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
    np.testing.assert_allclose(tr.grad_norm[0], num.sqrt().numpy(), rtol=1e-10)  # sqrt of the PL numerator


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


def _traj(method, rows, diverged_at, offset=0.0, **kw):
    """A planted trajectory: every column holds distinct values (row t, member r -> offset + 10 t + r + c/100)."""
    base = offset + 10.0 * np.arange(rows)[:, None] + np.arange(3)[None, :]
    cols = {c: base + i / 100 for i, c in enumerate(("loss", "pl_ratio", "grad_norm", "max_increment"))}
    return oc.Trajectory(method=method, lr=0.1, depth=4, diverged_at=np.array(diverged_at), **cols, **kw)


@pytest.mark.parametrize("method", ["gradient_flow", "sgd"])
def test_then_joins_every_column_by_its_rule(method):
    """gradient flow keeps the first run's last row (the same evaluation as the continuation's row 0);
    SGD/Adam keep the continuation's row 0 (a minibatch loss; the first run's last row is full-batch)."""
    first = _traj(method, 3, [-1, 1, 0], snapshots={2: {"V": np.zeros(1)}})
    later = _traj(method, 4, [3, 4, 5], offset=1000.0, snapshots={5: {"V": np.ones(1)}}, start_step=2,
                  discretization_error=np.array([0.1, 0.2, 0.3]))
    j = first.then(later)
    for c in ("loss", "pl_ratio", "grad_norm", "max_increment"):
        a, b = getattr(first, c), getattr(later, c)
        want = np.vstack([a, b[1:]]) if method == "gradient_flow" else np.vstack([a[:-1], b])
        assert np.array_equal(getattr(j, c), want), c
    assert j.diverged_at.tolist() == [3, 1, 0]  # the first divergence of each member (step 0 included)
    assert sorted(j.snapshots) == [2, 5] and j.snapshots[5]["V"][0] == 1.0
    assert np.array_equal(j.discretization_error, [0.1, 0.2, 0.3])
    assert (j.steps, j.start_step, j.method) == (5, 0, method)


def test_trajectory_arrays_round_trip_through_npz(tmp_path):
    t = _traj("adam", 3, [-1, 0, -1])
    np.savez(tmp_path / "t.npz", **t.arrays())
    back = dict(np.load(tmp_path / "t.npz"))
    assert sorted(back) == sorted(["loss", "pl_ratio", "grad_norm", "max_increment", "diverged_at", "lr", "depth",
                                   "start_step", "method"])
    for c in ("loss", "pl_ratio", "grad_norm", "max_increment", "diverged_at"):
        assert np.array_equal(back[c], getattr(t, c)), c
    assert (float(back["lr"]), int(back["depth"]), int(back["start_step"]), str(back["method"])) == (0.1, 4, 0, "adam")
    t2 = _traj("gradient_flow", 2, [-1, -1, -1], discretization_error=np.array([1.0, 2.0, 3.0]))
    assert np.array_equal(t2.arrays()["discretization_error"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("method", [oc.sgd, oc.adam])
def test_split_minibatch_run_joined_equals_one_run(method):
    net, ds = small(R=2), data(n=12)
    kw = dict(lr=1e-2, batch_size=4, seed=3, weight_decay=1e-3, schedule="cosine", total_steps=9)
    a, b = net.clone(), net.clone()
    full = method(a, ds.x, ds.y, steps=9, **kw)
    state: dict = {}
    t1 = method(b, ds.x, ds.y, steps=4, state=state, **kw)
    t2 = method(b, ds.x, ds.y, steps=5, start_step=4, state=state, **kw)
    np.testing.assert_allclose(t1.then(t2).loss, full.loss, rtol=1e-12)
    torch.testing.assert_close(b.weights["V"], a.weights["V"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", [oc.sgd, oc.adam])
def test_minibatch_diverged_member_is_frozen_and_others_go_on(method):
    w = small(R=3).numpy_weights()
    w["V"][1] = 1e200
    w["W"][1] = 1e200
    net = oc.ResNet.from_weights(block="mlp", V=w["V"], W=w["W"], A=w["A"], B=w["B"], activation="gelu")
    ref = net.select([0, 2])
    ds = data(n=12)
    kw = dict(steps=4, lr=1e-2, batch_size=12, weight_decay=1e-3)  # full batches: the members see the same data
    tr, tr_ref = method(net, ds.x, ds.y, **kw), method(ref, ds.x, ds.y, **kw)
    assert tr.diverged.tolist() == [False, True, False] and tr.diverged_at[1] == 0
    np.testing.assert_allclose(tr.loss[:, [0, 2]], tr_ref.loss, rtol=1e-12)
    assert np.array_equal(net.numpy_weights()["V"][1], w["V"][1])
    torch.testing.assert_close(net.weights["V"][[0, 2]], ref.weights["V"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("kw,message", [
    ({"steps": True}, "steps=True: expected an integer >= 0"), ({"steps": 2.0}, "steps=2.0: expected an integer >= 0"),
    ({"steps": -1}, "steps=-1: expected an integer >= 0"), ({"lr": True}, "lr=True: expected a finite float > 0"),
    ({"lr": "0.1"}, "lr='0.1': expected a finite float > 0"), ({"lr": float("inf")}, "lr=inf: expected a finite float > 0"),
    ({"lr": 0}, "lr=0: expected a finite float > 0"), ({"lr": -1e-3}, "lr=-0.001: expected a finite float > 0"),
])
@pytest.mark.parametrize("method", ["gradient_flow", "sgd", "adam"])
def test_steps_and_lr_are_checked_by_every_trainer(method, kw, message):
    net, ds = small(R=1), data()
    args = {"steps": 2, "lr": 1e-2, **kw}
    extra = {} if method == "gradient_flow" else {"batch_size": 4}
    with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(message)}$"):
        getattr(oc, method)(net, ds.x, ds.y, **args, **extra)


def test_integer_steps_and_lr_of_numpy_and_python_types_are_accepted():
    net, ds = small(R=1), data()
    assert oc.gradient_flow(net, ds.x, ds.y, steps=np.int64(2), lr=1).loss.shape == (3, 1)


@pytest.mark.parametrize("kw,message", [
    ({"weight_decay": -1.0}, "weight_decay=-1.0: expected a finite float >= 0.0"),
    ({"schedule": "linear"}, "schedule='linear': expected one of 'constant', 'cosine'"),
    ({"depth_factor": 1}, "depth_factor=1: expected a bool"),
    ({"total_steps": 3}, "total_steps=3: expected an integer >= start_step + steps = 4"),
    ({"total_steps": True}, "total_steps=True: expected an integer >= start_step + steps = 4"),
    ({"total_steps": 7.0}, "total_steps=7.0: expected an integer >= start_step + steps = 4"),
    ({"batch_size": 0}, "batch_size=0: expected an integer in [1, 10]"),
    ({"batch_size": 11}, "batch_size=11: expected an integer in [1, 10]"),
    ({"batch_size": True}, "batch_size=True: expected an integer in [1, 10]"),
])
@pytest.mark.parametrize("method", [oc.sgd, oc.adam])
def test_optimizer_options_are_checked(method, kw, message):
    net, ds = small(R=1), data()
    args = {"steps": 4, "lr": 1e-2, "batch_size": 4, **kw}
    with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(message)}$"):
        method(net, ds.x, ds.y, **args)
    if "total_steps" in kw:  # total_steps counts from step 0: start_step + steps is the least it may be
        with pytest.raises(oc.InvalidArgument, match="start_step \\+ steps = 6$"):
            method(net, ds.x, ds.y, **{**args, "total_steps": 5}, start_step=2)


@pytest.mark.parametrize("momentum", [1.0, -0.1, 1.5])
def test_sgd_momentum_must_lie_in_zero_one(momentum):
    net, ds = small(R=1), data()
    with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(f'momentum={momentum!r}: expected a float in [0, 1)')}$"):
        oc.sgd(net, ds.x, ds.y, steps=1, lr=1e-2, batch_size=4, momentum=momentum)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_minibatch_trajectory_names_its_method_and_reports_every_step(name):
    net, ds = small(R=2), data()
    seen = []
    tr = getattr(oc, name)(net.clone(), ds.x, ds.y, steps=3, lr=1e-2, batch_size=4, start_step=5,
                           callback=lambda t, loss: seen.append((t, loss.copy())))
    assert tr.method == name and tr.start_step == 5 and tr.steps == 8
    assert [t for t, _ in seen] == [6, 7, 8]  # the step just taken, counted from the run's start
    for i, (_, loss) in enumerate(seen):  # the minibatch loss of that step, per member
        assert np.array_equal(loss, tr.loss[i])
    default = getattr(oc, name)(net.clone(), ds.x, ds.y, steps=3, lr=1e-2, batch_size=4)
    seeded = getattr(oc, name)(net.clone(), ds.x, ds.y, steps=3, lr=1e-2, batch_size=4, seed=0)
    assert np.array_equal(default.loss, seeded.loss)  # the documented default seed is 0


def test_adam_depth_factor_moves_block_weights_L_times_as_far():
    net, ds = small(R=2), data()
    a, b = net.clone(), net.clone()
    oc.adam(a, ds.x, ds.y, steps=1, lr=1e-3, batch_size=10)
    oc.adam(b, ds.x, ds.y, steps=1, lr=1e-3, batch_size=10, depth_factor=True)
    w0, wa, wb = net.weights, a.weights, b.weights
    for name in ("V", "W"):  # block weights: L = 8 times the step
        torch.testing.assert_close(wb[name] - w0[name], 8 * (wa[name] - w0[name]), rtol=1e-10, atol=1e-15)
    assert (wa["V"] - w0["V"]).abs().max() > 1e-4


@pytest.mark.parametrize("kw,message", [
    ({"recompute": 0}, "engine.recompute=0: expected an integer >= 1"),
    ({"recompute": 2.5}, "engine.recompute=2.5: expected an integer >= 1"),
    ({"track_increments": 1}, "engine.track_increments=1: expected a bool"),
    ({"cuda_graph": "yes"}, "engine.cuda_graph='yes': expected a bool"),
])
def test_engine_options_are_checked(kw, message):
    with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(message)}$"):
        oc.EngineOptions(**kw)
    assert oc.EngineOptions(recompute=1).recompute == 1


def test_targets_are_checked_against_the_network_and_inputs():
    net, ds = small(R=3), data(n=10)
    cases = [(ds.y[:, :3], "y='<shape (10, 3)>': expected last dimension output_dim=4"),
             (ds.y[:7], "y='<shape (7, 4)>': expected 10 samples like x"),
             (ds.y.expand(2, 10, 4), "y='<shape (2, 10, 4)>': expected leading ensemble axis 1 or R=3")]
    for y, message in cases:
        with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(message)}$"):
            oc.loss_and_grads(net, ds.x, y)
    with pytest.raises(oc.InvalidArgument, match="^y="):
        oc.loss_and_grads(net, ds.x, ds.y[0])
    plain = oc.loss_and_grads(net, ds.x, ds.y)[0]
    for y in (ds.y[None], ds.y.expand(3, 10, 4)):  # a leading axis of 1 or R means the same targets
        torch.testing.assert_close(oc.loss_and_grads(net, ds.x, y)[0], plain, rtol=0, atol=0)
    # targets in another precision are taken in the network's: a list of Python floats is not float32
    torch.testing.assert_close(oc.loss_and_grads(net, ds.x, ds.y.tolist())[0], plain, rtol=0, atol=0)


def test_pl_numerator_counts_a_per_member_scalar_once():
    """single block with a shared trained delta: delta is one scalar per member (factor 1, not L)."""
    from helpers import naive_loss_grads

    net, ds = small(block="single", delta="shared", activation="tanh"), data()
    loss, g = naive_loss_grads(net, ds.x, ds.y)
    num = 8 * sum((g[k].reshape(3, -1) ** 2).sum(1) for k in ("W", "b")) + g["delta"] ** 2
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=0, lr=1e-3)
    np.testing.assert_allclose(tr.grad_norm[0], num.sqrt().numpy(), rtol=1e-10)


def test_flow_trajectory_records_its_settings_and_reports_every_step():
    net, ds = small(), data()
    seen = []
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=3, lr=2e-2, start_step=4, snapshots=[4, 7],
                          callback=lambda t, loss: seen.append((t, loss.copy())))
    assert (tr.method, tr.lr, tr.depth, tr.start_step, tr.steps) == ("gradient_flow", 2e-2, 8, 4, 7)
    assert tr.discretization_error is None  # check_halving is off unless asked
    assert tr.diverged_at.tolist() == [-1, -1, -1]
    assert [t for t, _ in seen] == [5, 6, 7]  # the step just taken, with the loss before it
    for i, (_, loss) in enumerate(seen):
        assert np.array_equal(loss, tr.loss[i])
    assert sorted(tr.snapshots) == [4, 7]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_max_increment_at_the_smallest_depths(depth):
    net, ds = small(depth=depth), data()
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=1, lr=1e-2)
    w = net.weights
    naive = np.zeros(3) if depth == 1 else np.sqrt(sum(
        ((w[f][:, 1:] - w[f][:, :-1]) ** 2).flatten(2).sum(-1).numpy() for f in ("V", "W"))).max(1)
    np.testing.assert_allclose(tr.max_increment[-1], naive, rtol=1e-10, atol=0)


@pytest.mark.parametrize("kw,message", [
    ({"clip": 0.0}, "clip=0.0: expected None or a positive float"),
    ({"clip": "1"}, "clip='1': expected None or a positive float"),
    ({"engine": {"recompute": 2}}, "engine='dict': expected an odecheck.EngineOptions"),
    ({"engine": oc.EngineOptions(cuda_graph=True)},
     "engine.cuda_graph=True: expected False on device cpu (CUDA graphs need a CUDA device)"),
    ({"snapshots": [True]}, "snapshots=True: expected steps in [2, 5]"),
    ({"snapshots": [1]}, "snapshots=1: expected steps in [2, 5]"),
    ({"snapshots": [2.0]}, "snapshots=2.0: expected steps in [2, 5]"),
])
def test_flow_arguments_are_named_in_full(kw, message):
    net, ds = small(), data()
    with pytest.raises(oc.InvalidArgument, match=f"^{re.escape(message)}$"):
        oc.gradient_flow(net, ds.x, ds.y, steps=3, lr=1e-2, start_step=2, **kw)


def test_clipped_flow_step_is_the_euler_step_of_the_clamped_field():
    """dZ/dt = -clamp(L dl/dZ, -clip, clip) (the update direction is clamped, then scaled by lr)."""
    net, ds = small(R=2), data()
    _, g = oc.loss_and_grads(net, ds.x, ds.y)
    lr, clip = 0.5, 1e-2
    field = {k: (8 if k in ("V", "W") else 1) * g[k] for k in g}
    clamped = sum(int((f.abs() > clip).sum()) for f in field.values())
    assert 0 < clamped < sum(f.numel() for f in field.values())  # some entries clamped, not all
    want = {k: net.weights[k] - lr * field[k].clamp(-clip, clip) for k in g}
    oc.gradient_flow(net, ds.x, ds.y, steps=1, lr=lr, clip=clip)
    for k in want:
        torch.testing.assert_close(net.weights[k], want[k], rtol=1e-12, atol=1e-15, msg=k)


def _gap(trained, start):
    num = sum(((trained.weights[k] - start.weights[k]) ** 2).flatten(1).sum(1) for k in trained.trainable)
    den = sum((start.weights[k] ** 2).flatten(1).sum(1) for k in trained.trainable)
    return (num.sqrt() / den.sqrt()).numpy()


@pytest.mark.parametrize("clip,loss", [(None, "mse"), (2e-3, "mse"), (None, "cross_entropy")])
def test_discretization_error_is_the_relative_gap_to_the_half_step_flow(clip, loss):
    """Reference: the two runs by hand, and the relative Frobenius gap over every trained family."""
    net, ds = small(R=2, train_io=True), data()
    y = ds.y if loss == "mse" else torch.nn.functional.one_hot(ds.y.argmax(1), 4).double()
    a, b = net.clone(), net.clone()
    oc.gradient_flow(a, ds.x, y, steps=5, lr=0.1, clip=clip, loss=loss)
    oc.gradient_flow(b, ds.x, y, steps=10, lr=0.05, clip=clip, loss=loss)
    want = _gap(a, b)
    tr = oc.gradient_flow(net.clone(), ds.x, y, steps=5, lr=0.1, clip=clip, loss=loss, check_halving=True)
    np.testing.assert_allclose(tr.discretization_error, want, rtol=1e-10)
    if loss == "mse":
        np.testing.assert_allclose(oc.discretization_error(net, ds.x, y, steps=5, lr=0.1, clip=clip), want, rtol=1e-10)


@pytest.mark.parametrize("method", ["gradient_flow", "sgd"])
def test_divergence_step_is_counted_from_the_run_start_across_chunks(method):
    """lr large enough that the members diverge after a few steps; a run split before that reports the
    same steps (the continuation counts from its start_step and carries divergence in its state)."""
    net, ds = small(R=2), data()
    kw = {"lr": 3.0} if method == "gradient_flow" else {"lr": 24.0, "batch_size": 10}
    run = getattr(oc, method)
    full = run(net.clone(), ds.x, ds.y, steps=12, **kw)
    assert (full.diverged_at >= 3).all()  # planted: both diverge, after the split below
    b, state = net.clone(), {}
    extra = {} if method == "gradient_flow" else {"state": state}
    t1 = run(b, ds.x, ds.y, steps=2, **kw, **extra)
    t2 = run(b, ds.x, ds.y, steps=10, start_step=2, **kw, **extra)
    assert t2.diverged_at.tolist() == full.diverged_at.tolist()
    assert t1.then(t2).diverged_at.tolist() == full.diverged_at.tolist()
    if method == "sgd":  # a third chunk after the divergence keeps the step it happened at
        t3 = run(b, ds.x, ds.y, steps=2, start_step=12, **kw, **extra)
        assert t3.diverged_at.tolist() == full.diverged_at.tolist()


@pytest.mark.parametrize("method", [oc.sgd, oc.adam])
def test_minibatch_per_member_data_and_single_samples(method):
    """x, y with a leading member axis: each member trains on its own data, as it would alone; a batch of
    one sample is allowed."""
    net = small(R=2)
    d0, d1 = data(n=6), oc.gaussian_task(6, 4, 4, seed=7, dtype=torch.float64)
    x, y = torch.stack([d0.x, d1.x]), torch.stack([d0.y, d1.y])
    for bs in (1, 6):
        both = net.clone()
        tr = method(both, x, y, steps=3, lr=1e-2, batch_size=bs)
        for r, d in enumerate((d0, d1)):
            alone = net.select([r])
            tr_r = method(alone, d.x, d.y, steps=3, lr=1e-2, batch_size=bs)
            if bs == 6:  # full batches: the same data order whatever the member
                np.testing.assert_allclose(tr.loss[:, r], tr_r.loss[:, 0], rtol=1e-12)
                torch.testing.assert_close(both.weights["V"][r], alone.weights["V"][0], rtol=1e-12, atol=0)
        assert np.isnan(tr.pl_ratio).all() and tr.pl_ratio.dtype == np.float64 and np.isnan(tr.grad_norm).all()
        assert (tr.lr, tr.depth) == (1e-2, 8)
        assert tr.diverged_at.tolist() == [-1, -1]  # -1: never diverged


def test_discretization_error_of_a_network_with_small_weights_is_relative():
    """Weights of norm far below 1: the gap is still divided by the weights' own norm."""
    w = small(R=2).numpy_weights()
    net = oc.ResNet.from_weights(block="mlp", V=w["V"] * 1e-3, W=w["W"] * 1e-3, A=w["A"], B=w["B"],
                                 activation="gelu")
    ds = data()
    a, b = net.clone(), net.clone()
    oc.gradient_flow(a, ds.x, ds.y, steps=4, lr=0.1)
    oc.gradient_flow(b, ds.x, ds.y, steps=8, lr=0.05)
    assert float(sum((net.weights[k] ** 2).sum() for k in ("V", "W"))) < 1e-2
    np.testing.assert_allclose(oc.discretization_error(net, ds.x, ds.y, steps=4, lr=0.1), _gap(a, b), rtol=1e-10)


def test_a_member_whose_gradient_overflows_is_diverged_though_its_loss_is_finite():
    """Member 1: hidden states of size 1e200 (tanh blocks with V = 1e200) read out by B = 1e-200, so
    its outputs and loss are O(1) while dl/dB is about 1e200 and the PL numerator overflows."""
    w = small(R=2, activation="tanh").numpy_weights()
    B = w["B"].copy()
    w["V"][1] = 1e200
    B[1] = 1e-200 * np.eye(4)
    net = oc.ResNet.from_weights(block="mlp", V=w["V"], W=w["W"], A=w["A"], B=B, activation="tanh", train_io=True)
    ds = data()
    before = net.numpy_weights()
    tr = oc.gradient_flow(net, ds.x, ds.y, steps=2, lr=1e-3)
    assert np.isfinite(tr.loss[0, 1]) and not np.isfinite(tr.grad_norm[0, 1])  # planted as intended
    assert tr.diverged_at.tolist() == [-1, 0]
    after = net.numpy_weights()
    for k in ("V", "W", "A", "B"):  # the diverged member is frozen; the other one trains
        assert np.array_equal(after[k][1], before[k][1]), k
    assert not np.array_equal(after["V"][0], before["V"][0])
