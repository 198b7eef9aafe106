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
