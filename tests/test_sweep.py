"""odecheck sweep: spec parsing, resumable cells, failures recorded, and the same table whatever the
executor (in process, a Dask LocalCluster, a cluster that loses a worker mid-sweep)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from odecheck.config import RunConfig
from odecheck.sweeps import SweepSpec, cell_id, sample_groups
from typer.testing import CliRunner

import odecheck as oc
from odecheck.cli import app

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

BASE = {"model": {"dim": 4, "width": 8, "ensemble": 2}, "data": {"n": 10},
        "train": {"steps": 20, "snapshots": [0, 20], "checkpoint_every": 5}}
RESULT_COLUMNS = ["member", "status", "final_loss", "max_increment", "hurst", "regime", "init_ratio",
                  "init_grad_ratio", "train_accuracy", "test_accuracy", "test_loss", "cell", "error"]


def spec(**sweep):
    return {**json.loads(json.dumps(BASE)), "sweep": sweep}


def values(df):
    return df.drop(columns=["seconds"]).reset_index(drop=True)


def test_cells_are_the_product_of_lists_and_zipped_groups():
    s = SweepSpec.from_dict(spec(**{"model.init": ["tied", "iid"],
                                    "zip": [{"model.depth": [4, 8, 16], "train.lr": [0.1, 0.2, 0.4]}]}))
    assert s.fields == ("model.init", "model.depth", "train.lr")
    cells = s.cells()
    assert len(cells) == 6 and cells[0] == {"model.init": "tied", "model.depth": 4, "train.lr": 0.1}
    assert cells[-1] == {"model.init": "iid", "model.depth": 16, "train.lr": 0.4}
    cfg = s.config(cells[4])
    assert (cfg.model.init, cfg.model.depth, cfg.train.lr, cfg.model.width) == ("iid", 8, 0.2, 8)
    # the cell's folder is named by its whole config: another base config, other cells
    other = SweepSpec.from_dict({**spec(**{"model.init": ["tied"]}), "model": {"dim": 5, "width": 8, "ensemble": 2}})
    same = {"model.init": "tied", "model.depth": 4, "train.lr": 0.1}
    assert cell_id(other.config(same)) != cell_id(s.config(same))
    assert cell_id(s.config(cells[0])) != cell_id(s.config(cells[1]))


@pytest.mark.parametrize("sweep,needle", [
    ({}, "sweep="),
    ({"model.depth": []}, "sweep.model.depth="),
    ({"model.depth": 4}, "sweep.model.depth="),
    ({"depth": [4]}, "sweep='depth'"),
    ({"model.colour": [1]}, "unknown keys ['colour']"),
    ({"model.depth": [4, -1]}, "model.depth=-1"),
    ({"model.activation": ["swish"]}, "model.activation='swish'"),
    ({"zip": [{"model.depth": [4, 8], "train.lr": [0.1]}]}, "sweep.zip="),
    ({"model.depth": [4], "zip": [{"model.depth": [8]}]}, "each field swept once"),
    ({"model.depth": [4], "save_weights": "no"}, "sweep.save_weights='no'"),
])
def test_bad_specs_are_refused_before_anything_runs(tmp_path, sweep, needle):
    with pytest.raises(oc.InvalidArgument, match=needle.replace("[", r"\[").replace("(", r"\(")):
        oc.sweep(spec(**sweep), tmp_path / "out")
    assert not (tmp_path / "out" / "cells").exists()


def test_in_process_table_and_an_independent_run(tmp_path):
    s = spec(**{"model.init": ["tied", "iid"], "model.depth": [4, 8]})
    df = oc.sweep(s, tmp_path)
    assert list(df.columns) == ["model.init", "model.depth", *RESULT_COLUMNS[:-2], "seconds", "cell", "error"]
    assert len(df) == 4 * 2 and set(df["status"]) == {"done"}
    assert df.equals(pd.read_parquet(tmp_path / "results.parquet"))
    # one cell recomputed without the sweep: plain gradient flow in one call (no checkpoint chunks)
    cfg = RunConfig.from_dict({**BASE, "model": {**BASE["model"], "init": "iid", "depth": 8}})
    from odecheck.runner import build_data, build_model

    data = build_data(cfg, torch.float32)
    net = build_model(cfg, data)
    traj = oc.gradient_flow(net, data.x, data.y, steps=20, lr=cfg.train.lr)
    rows = df[(df["model.init"] == "iid") & (df["model.depth"] == 8)].sort_values("member")
    np.testing.assert_array_equal(rows["final_loss"].to_numpy(), traj.loss[-1].astype(float))
    np.testing.assert_array_equal(rows["max_increment"].to_numpy(), traj.max_increment.max(0).astype(float))
    from odecheck.estimators import hurst

    w = net.numpy_weights()
    for r in range(2):
        path = np.concatenate([w["V"][r].reshape(8, -1), w["W"][r].reshape(8, -1)], axis=1)
        assert rows["hurst"].iloc[r] == hurst(path).estimate
    from odecheck.estimators import init_ratios

    fwd, bwd = init_ratios(build_model(cfg, data), data.x, data.y)
    np.testing.assert_array_equal(rows["init_ratio"].to_numpy(), fwd)
    np.testing.assert_array_equal(rows["init_grad_ratio"].to_numpy(), bwd)


def test_save_weights_false_keeps_the_table_and_drops_the_weights(tmp_path):
    s = spec(**{"model.init": ["fbm(0.3)", "iid"], "model.depth": [4, 8]})
    full = oc.sweep(s, tmp_path / "full")
    lean = oc.sweep({**s, "sweep": {**s["sweep"], "save_weights": False}}, tmp_path / "lean")
    pd.testing.assert_frame_equal(values(full), values(lean))  # the same cells (ids) and values
    assert len(list((tmp_path / "full" / "cells").glob("*/weights.npz"))) == 4
    assert not list((tmp_path / "lean" / "cells").glob("*/weights.npz"))
    assert len(list((tmp_path / "lean" / "cells").glob("*/trajectory.npz"))) == 4
    assert json.loads((tmp_path / "lean" / "spec.json").read_text())["save_weights"] is False


def test_rerun_finishes_only_what_is_unfinished_and_failures_are_recorded(tmp_path):
    s = spec(**{"model.depth": [4, 8, 16]})
    sp = SweepSpec.from_dict(s)
    ids = [cell_id(sp.config(c)) for c in sp.cells()]
    # cell 2 will fail: an unreadable checkpoint sits in its folder
    bad = tmp_path / "cells" / ids[2]
    bad.mkdir(parents=True)
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint")
    seen = []
    df = oc.sweep(s, tmp_path, progress=lambda e: seen.append((e.item["model.depth"], e.done)))
    assert seen == [(4, 1), (8, 2), (16, 3)]
    assert list(df["status"]) == ["done"] * 4 + ["failed"] * 2
    assert "unreadable" in df["error"].iloc[-1] and np.isnan(df["final_loss"].iloc[-1])
    # rerun: done cells are read back, not run; the failed one is retried (and fixed by now)
    (bad / "checkpoint.pt").unlink()
    again = oc.sweep(s, tmp_path)
    assert list(again["status"]) == ["done"] * 6
    lines = [len((tmp_path / "cells" / i / "completions.log").read_text().splitlines()) for i in ids]
    assert lines == [1, 1, 2]
    assert values(again.iloc[:4]).equals(values(df.iloc[:4]))


def test_diverging_members_are_marked(tmp_path):
    df = oc.sweep(spec(**{"train.lr": [1e4]}), tmp_path)
    assert set(df["status"]) == {"diverged"} and set(df["regime"]) == {"inconclusive"}


def test_dask_local_cluster_gives_the_same_table_value_for_value(tmp_path):
    pytest.importorskip("dask.distributed")
    s = spec(**{"model.init": ["tied", "iid"], "zip": [{"model.depth": [4, 8], "train.lr": [0.01, 0.02]}]})
    a = oc.sweep(s, tmp_path / "a")
    b = oc.sweep(s, tmp_path / "b", workers=2)
    assert values(a).equals(values(b))
    # an existing cluster, by its scheduler's address (as a SLURM or Kubernetes cluster would be)
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        c = oc.sweep(s, tmp_path / "c", scheduler=cluster.scheduler_address)
    assert values(a).equals(values(c))


@pytest.mark.parametrize("axis", ["model.depth", "model.beta"])
def test_a_worker_killed_mid_sweep_loses_no_cell_and_runs_none_twice(tmp_path, monkeypatch, axis):
    """One cell per task (depths), and tasks of several cells that share a weight sample (betas, one
    fbm sample per init): the killed task is rerun elsewhere, redoing none of its finished cells."""
    distributed = pytest.importorskip("dask.distributed")
    from odecheck import sweeps

    train = {"steps": 150, "snapshots": [150], "checkpoint_every": 10}
    if axis == "model.depth":
        s = {**spec(**{"model.depth": [48, 56, 64, 72]}), "train": train}
        several = False
    else:  # two samples (fbm inits) x four betas; one task per sample
        monkeypatch.setattr(sweeps, "TASKS_PER_WORKER", 1)
        s = {**spec(**{"model.init": ["fbm(0.7)", "fbm(0.3)"], "model.beta": [0.5, 0.75, 1.0, 1.25]}),
             "train": train}
        s["model"]["depth"] = 48
        several = True
    ss = SweepSpec.from_dict(s)
    cells = ss.cells()
    ids = [cell_id(ss.config(c)) for c in cells]
    groups = sweeps.sample_groups(ss, cells, range(len(cells)), 2)
    assert max(len(g) for g in groups) == (4 if several else 1)
    members = {sweeps.task_key([ids[i] for i in g]): [ids[i] for i in g] for g in groups}
    ref = oc.sweep(s, tmp_path / "ref")
    folder = tmp_path / "dask" / "cells"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault("df", oc.sweep(s, tmp_path / "dask", client=client)))
        t.start()
        victim = None
        deadline = time.time() + 120
        while victim is None and time.time() < deadline:  # a worker in the middle of a cell (and, for
            for w, keys in client.processing().items():   # tasks of several cells, past a finished one)
                for key in keys:
                    mine = members.get(key, [])
                    finished = sum((folder / c / "result.json").exists() for c in mine)
                    running = any((folder / c / "checkpoint.pt").exists() and not (folder / c / "result.json").exists()
                                  for c in mine)
                    if running and (finished >= 1 or not several):
                        victim = w
            time.sleep(0.02)
        assert victim is not None
        os.kill(pids[victim], signal.SIGKILL)
        t.join(timeout=300)
        assert not t.is_alive()
    df = box["df"]
    assert values(df).equals(values(ref))
    for cell in folder.iterdir():
        assert len((cell / "completions.log").read_text().splitlines()) == 1, cell


def test_cells_sharing_a_weight_sample_are_one_task_in_grid_order():
    s = SweepSpec.from_dict(spec(**{"model.init": ["fbm(0.3)", "fbm(0.7)"], "model.beta": [0.5, 1.0, 1.5],
                                    "model.activation": ["relu", "tanh"]}))
    cells = s.cells()
    todo = [i for i in range(len(cells)) if i != 3]
    groups = sample_groups(s, cells, todo, 1)
    assert sorted(i for g in groups for i in g) == todo  # every unfinished cell once
    for g in groups:  # one init each (what the sample depends on), in the grid's order
        assert len({cells[i]["model.init"] for i in g}) == 1 and g == sorted(g)
    assert [len(g) for g in groups] == [3, 2, 3, 3]  # 11 cells, at most ceil(11 / 4) = 3 a task
    depths = SweepSpec.from_dict(spec(**{"model.depth": [4, 8, 16]}))
    groups = sample_groups(depths, depths.cells(), range(3), 1)
    assert groups == [[0], [1], [2]]  # another depth, another sample
    iid = SweepSpec.from_dict(spec(**{"model.init": ["iid"], "model.beta": [0.5, 1.0, 1.5]}))
    assert sample_groups(iid, iid.cells(), range(3), 1) == [[0], [1], [2]]  # not cached: nothing to share


def test_without_dask_the_error_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(oc.OdecheckError, match=r"pip install 'odecheck\[dask\]'"):
        oc.sweep(spec(**{"model.depth": [4]}), tmp_path, workers=2)
    (tmp_path / "s.toml").write_text('[sweep]\n"model.depth" = [4]\n')
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--workers", "2"])
    assert res.exit_code == 2 and "odecheck[dask]" in res.output


def test_cli_sweep_writes_parquet_and_json(tmp_path):
    import tomli_w

    (tmp_path / "s.toml").write_text(tomli_w.dumps(spec(**{"model.init": ["tied", "iid"]})))
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--json",
                                   str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "2 cells, 4 rows: 4 done, 0 diverged, 0 failed" in res.output
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    df = pd.read_parquet(out / "results.parquet")
    assert len(rows) == 4 and [r["final_loss"] for r in rows] == list(df["final_loss"])
    for args, needle in ((["--workers", "0"], "--workers 0"), (["--workers", "2", "--scheduler", "x:1"], "--workers 2")):
        res = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(out), *args])
        assert res.exit_code == 2 and needle in res.output, res.output
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "SPEC" in res.output


def test_local_cluster_workers_have_no_memory_cap():
    """--workers N: Dask's default cap (memory / N per worker) restarted the worker holding m24-fig1's
    2^14-deep reference cell over and over; the LocalCluster's workers have no cap."""
    pytest.importorskip("dask.distributed")
    from odecheck.sweeps import _dask_client

    cluster, client = _dask_client(None, 1, None)
    try:
        workers = client.scheduler_info()["workers"].values()
        assert [w["memory_limit"] for w in workers] == [0]
    finally:
        client.close()
        cluster.close()


def test_device_is_checked_and_auto_on_a_cpu_machine_is_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = spec(**{"model.depth": [4, 8]})
    with pytest.raises(oc.InvalidArgument, match=r"^device='cuda': expected a visible CUDA device"):
        oc.sweep(s, tmp_path / "x", device="cuda")
    with pytest.raises(oc.InvalidArgument, match=r"^device='tpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'$"):
        oc.sweep(s, tmp_path / "x", device="tpu", workers=1)  # Dask workers: the spelling is checked here
    assert not (tmp_path / "x").exists()  # refused before any cell
    a = oc.sweep(s, tmp_path / "a")
    b = oc.sweep(s, tmp_path / "b", device="auto")
    assert values(a).equals(values(b))
    res = CliRunner().invoke(app, ["reproduce", "m25-init", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--device 'cuda': expected a visible CUDA device" in res.output, res.output
    (tmp_path / "s.toml").write_text('[sweep]\n"model.depth" = [4]\n')
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.toml"), "--device", "gpu", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--device 'gpu'" in res.output, res.output


def test_a_running_cell_reports_its_checkpointed_step_and_loss(tmp_path):
    """progress.json follows the checkpoints: read from inside the run (the runner's own callback),
    it holds the last checkpointed step and the median loss there; `running_cells` lists the cell
    while it runs and not once its result is written, nor when written before `since`."""
    from odecheck.runner import PROGRESS_FILE, run
    from odecheck.sweeps import running_cells

    cfg = RunConfig.from_dict({**BASE, "model": {**BASE["model"], "ensemble": 3}})
    folder = tmp_path / "cells" / "abc"
    seen = []

    def look(e):
        t = e.done
        if t in (7, 12, 19):  # mid-chunk: the last checkpoint was at 5 or 10 (checkpoint_every = 5)
            seen.append((t, json.loads((folder / PROGRESS_FILE).read_text()), running_cells(tmp_path)))

    t0 = time.time()
    _, traj, _ = run(cfg, folder, progress=look)
    assert [(t, rec["step"], rec["steps"], rec["members"], rec["diverged"]) for t, rec, _ in seen] == \
        [(7, 5, 20, 3, 0), (12, 10, 20, 3, 0), (19, 15, 20, 3, 0)]
    for _t, rec, running in seen:
        assert rec["loss"] == float(np.median(traj.loss[rec["step"]]))  # the same numbers, through JSON
        assert [r["cell"] for r in running] == ["abc"] and running[0]["step"] == rec["step"]
    final = json.loads((folder / PROGRESS_FILE).read_text())
    assert final["step"] == 20 and final["time"] >= t0 and final["seconds_left"] == 0.0
    assert [rec["seconds_left"] > 0 for _, rec, _ in seen] == [True] * 3
    assert [r["step"] for r in running_cells(tmp_path)] == [20]  # no result.json: a bare run is "running"
    assert running_cells(tmp_path, since=time.time() + 1) == []  # written before `since`: a stale run
    (folder / "result.json").write_text("[]")
    assert running_cells(tmp_path) == []
    assert running_cells(tmp_path / "nowhere") == []


def test_progress_record_of_diverged_members():
    from odecheck.flow import Trajectory
    from odecheck.runner import progress_record

    nan = np.full((3, 3), np.nan)
    loss = np.array([[1.0, 2.0, 3.0], [0.5, np.inf, 0.25], [0.4, np.nan, 0.2]])
    traj = Trajectory(method="gradient_flow", lr=0.1, depth=4, loss=loss, pl_ratio=nan, grad_norm=nan,
                      max_increment=nan, diverged_at=np.array([-1, 1, -1]), start_step=10)
    rec = progress_record(traj, 40)
    assert (rec["step"], rec["steps"], rec["members"], rec["diverged"]) == (12, 40, 3, 1)
    assert rec["loss"] == pytest.approx(0.3)
    assert rec["seconds_left"] is None  # no start given: no pace
    at = progress_record(traj, 40, started=(rec["time"] - 10.0, 2))  # 10 steps in >= 10 s: 28 steps left
    assert 28.0 <= at["seconds_left"] < 28.0 * 1.01
    assert progress_record(traj, 40, started=(time.time(), 12))["seconds_left"] is None  # no step made yet
    gone = progress_record(Trajectory(method="sgd", lr=0.1, depth=4, loss=np.full((2, 2), np.inf),
                                      pl_ratio=nan[:2, :2], grad_norm=nan[:2, :2], max_increment=nan[:2, :2],
                                      diverged_at=np.array([1, 1])), 5)
    assert gone["loss"] is None and gone["diverged"] == 2
