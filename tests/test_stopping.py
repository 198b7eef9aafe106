"""[C21]'s stopping rule (train.stop_loss, train.patience): per member, at epoch ends, frozen after."""

from __future__ import annotations

import json

import numpy as np
import pytest
from odecheck._errors import InvalidArgument
from odecheck.config import RunConfig
from odecheck.runner import run


def _cfg(**train):
    return RunConfig.from_dict({
        "model": {"block": "single", "depth": 6, "dim": 10, "activation": "tanh", "init": "xavier_depth(0.01)",
                  "delta": "shared_abs", "ensemble": 4, "seed": 0, "dtype": "float64"},
        "data": {"task": "c21-code", "n": 96},
        "train": {"method": "adam", "lr": 1e-2, "batch_size": 32, "snapshots": [0], "checkpoint_every": 7, **train}})


def _reference_rule(losses: np.ndarray, epoch: int, stop_loss, patience, min_improvement=0.01):
    """The rule written out plainly from the epoch means of each member's minibatch losses."""
    out = []
    for r in range(losses.shape[1]):
        best, wait, stopped = np.inf, 0, None
        for e in range(losses.shape[0] // epoch):
            mean = losses[e * epoch:(e + 1) * epoch, r].mean()
            if stop_loss is not None and mean < stop_loss:
                stopped = (e + 1) * epoch
                break
            if mean < best * (1 - min_improvement):
                best, wait = mean, 0
            else:
                wait += 1
            if patience is not None and wait >= patience:
                stopped = (e + 1) * epoch
                break
        out.append(-1 if stopped is None else stopped)
    return out


def test_members_stop_where_the_rule_says_and_stay_frozen(tmp_path):
    # the reference run without the rule gives every minibatch loss; batches do not depend on who stopped
    free, traj_free, _ = run(_cfg(steps=150), tmp_path / "free")
    epoch = 3  # ceil(96 / 32)
    expected = _reference_rule(traj_free.loss[:-1], epoch, stop_loss=0.06, patience=2)
    net, traj, _ = run(_cfg(steps=150, stop_loss=0.06, patience=2), tmp_path / "stop")
    rec = json.loads((tmp_path / "stop" / "stopping.json").read_text())
    assert rec["epoch_steps"] == epoch and rec["stopped_at"] == expected, (rec, expected)
    assert any(s > 0 for s in expected)
    for r, s in enumerate(expected):
        if s < 0:
            continue
        # its weights are those of an unstopped run cut at its stopping step
        cut, _, _ = run(_cfg(steps=s), tmp_path / f"cut{r}")
        for name, w in net.numpy_weights().items():
            np.testing.assert_allclose(w[r], cut.numpy_weights()[name][r], rtol=0, atol=0, err_msg=name)
    if all(s > 0 for s in expected):
        assert traj.steps == max(expected)  # training ends when every member has stopped


def test_a_run_killed_mid_epoch_resumes_and_stops_at_the_same_steps(tmp_path):
    cfg = _cfg(steps=60, stop_loss=0.08, patience=3, checkpoint_every=7, snapshots=[0, 10])  # 10: mid-epoch
    run(cfg, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill(e):
        if e.done == 17:
            raise Killed

    with pytest.raises(Killed):
        run(cfg, tmp_path / "b", progress=kill)
    assert not (tmp_path / "b" / "stopping.json").exists()
    _, _, resumed = run(cfg, tmp_path / "b")
    assert resumed == 15  # chunks end at epochs (3 steps) and snapshots: checkpoints 3, 6, 9, 10, 12, 15
    a = json.loads((tmp_path / "a" / "stopping.json").read_text())
    b = json.loads((tmp_path / "b" / "stopping.json").read_text())
    assert a == b


@pytest.mark.parametrize("train,needle", [
    ({"stop_loss": -1.0}, "^train.stop_loss"), ({"patience": 0}, "^train.patience"),
    ({"min_improvement": 1.0}, "^train.min_improvement"),
    ({"method": "gradient_flow", "patience": 2}, "^train.method='gradient_flow'")])
def test_stopping_options_are_checked(train, needle):
    with pytest.raises(InvalidArgument, match=needle):
        _cfg(steps=10, **train)


def _drive(losses: np.ndarray, epoch: int, **train):
    """EpochStopping fed planted minibatch losses (steps, R) one step at a time; its stopping steps and reasons."""
    from types import SimpleNamespace

    from odecheck.runner import EpochStopping

    tc = SimpleNamespace(**{"batch_size": 1, "stop_loss": None, "patience": None, "min_improvement": 0.01, **train})
    state: dict = {}
    rule = EpochStopping(tc, epoch, losses.shape[1], state)
    for t in range(losses.shape[0]):
        rule.add(losses[t:t + 1], t + 1)
    return rule.record(), state["frozen"]


def _epochs(*means_per_member, epoch=2):
    """Minibatch losses whose epoch means are the given ones (each epoch: mean - 0.25, mean + 0.25)."""
    cols = []
    for means in means_per_member:
        cols.append(np.concatenate([[m - 0.25, m + 0.25] for m in means]))
    return np.stack(cols, 1)


def test_patience_stops_after_exactly_patience_epochs_without_improvement():
    # member 0 improves by 50 % per epoch (never stops), member 1 stalls after epoch 2: with patience 3 it
    # stops at the end of epoch 5 (waits 1, 2, 3), not epoch 4 or 6; member 2 improves by 0.1 % an epoch,
    # never 1 % on its best in 8 epochs (0.999^7 = 0.993): it stops at epoch 4
    m0 = [8.0 * 0.5 ** e for e in range(8)]
    m1 = [4.0, 2.0] + [2.0] * 6
    m2 = [4.0 * 0.999 ** e for e in range(8)]
    rec, frozen = _drive(_epochs(m0, m1, m2), 2, patience=3)
    assert rec["stopped_at"] == [-1, 10, 8], rec
    assert rec["epochs"] == [8, 5, 4]
    assert rec["reason"][1] == "3 epochs without a 1% improvement" and rec["reason"][0] == "step budget"
    assert frozen.tolist() == [False, True, True]
    # the same losses with patience 4: one epoch later each; without patience nobody stops
    assert _drive(_epochs(m0, m1, m2), 2, patience=4)[0]["stopped_at"] == [-1, 12, 10]
    assert _drive(_epochs(m0, m1, m2), 2)[0]["stopped_at"] == [-1, -1, -1]


def test_min_improvement_is_relative_to_the_best_epoch_and_its_threshold_matters():
    # improvements of 3 % per epoch: enough for min_improvement 0.02, not for 0.10 (two epochs make 5.9 %: then
    # patience 2 stops it at epoch 3); a worse epoch between better ones counts as a wait without resetting the best
    m = [4.0 * 0.97 ** e for e in range(6)]
    assert _drive(_epochs(m), 2, patience=2, min_improvement=0.02)[0]["stopped_at"] == [-1]
    assert _drive(_epochs(m), 2, patience=2, min_improvement=0.10)[0]["stopped_at"] == [6]
    # best 2.0 at epoch 1; 2.5 (wait 1), 1.99 (< 1 % better than 2.0: wait 2) -> stops at epoch 4 with patience 2
    assert _drive(_epochs([4.0, 2.0, 2.5, 1.99, 1.0]), 2, patience=2)[0]["stopped_at"] == [8]
    # 1.97 is 1.5 % better than 2.0: the wait resets, and epoch 5's 1.0 keeps it going
    assert _drive(_epochs([4.0, 2.0, 2.5, 1.97, 1.0]), 2, patience=2)[0]["stopped_at"] == [-1]


def test_stop_loss_is_decided_before_patience_and_strictly_below():
    # epoch means 1.0, 0.5, 0.5: stop_loss 0.5 is not reached (strictly below), patience 1 stops at epoch 3;
    # stop_loss 0.51 stops at epoch 2 with that reason
    rec, _ = _drive(_epochs([1.0, 0.5, 0.5]), 2, patience=1, stop_loss=0.5)
    assert rec["stopped_at"] == [6] and "epochs without" in rec["reason"][0]
    rec, _ = _drive(_epochs([1.0, 0.5, 0.5]), 2, patience=1, stop_loss=0.51)
    assert rec["stopped_at"] == [4] and rec["reason"][0].startswith("epoch loss 0.5 <")


def test_the_record_counts_in_integers_and_keeps_the_last_epoch_loss():
    rec, _ = _drive(_epochs([4.0, 2.0, 2.0]), 2, patience=1)
    assert rec["stopped_at"] == [6] and rec["epochs"] == [3]
    assert all(type(v) is int for v in rec["epochs"] + rec["stopped_at"])  # JSON 3, not 3.0
    assert rec["last_epoch_loss"] == [2.0] and rec["epoch_steps"] == 2
    rec, _ = _drive(_epochs([4.0])[:1], 2, patience=1)  # one step of a two-step epoch: no epoch ended yet
    assert np.isnan(rec["last_epoch_loss"][0]) and rec["epochs"] == [0] and rec["reason"] == ["step budget"]


def test_an_improvement_of_exactly_min_improvement_is_not_enough():
    # best 4, then exactly 4 * (1 - 0.5) = 2 (exact in binary): strictly less is required, so it waits
    assert _drive(_epochs([4.0, 2.0, 1.0]), 2, patience=1, min_improvement=0.5)[0]["stopped_at"] == [4]
    assert _drive(_epochs([4.0, 1.99, 0.5]), 2, patience=1, min_improvement=0.5)[0]["stopped_at"] == [-1]


def test_a_restored_state_freezes_the_members_that_had_stopped():
    from types import SimpleNamespace

    from odecheck.runner import EpochStopping

    tc = SimpleNamespace(batch_size=1, stop_loss=None, patience=2, min_improvement=0.01)
    state: dict = {}
    rule = EpochStopping(tc, 2, 3, state)
    for t, losses in enumerate(_epochs([4.0, 4.0, 4.0], [4.0, 2.0, 1.0], [4.0, 3.0, 2.0])):
        rule.add(losses[None], t + 1)
    assert rule.s["stopped_at"].tolist() == [6, -1, -1]
    restored = {"stopping": state["stopping"]}  # what a resumed run finds in its optimizer state
    EpochStopping(tc, 2, 3, restored)
    assert restored["frozen"].tolist() == [True, False, False]
