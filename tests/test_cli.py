import numpy as np
import pytest
from odecheck.config import RunConfig
from odecheck.runner import run
from typer.testing import CliRunner

from odecheck.cli import app

runner = CliRunner()

SMALL = """
[model]
depth = 6
dim = 4
width = 5
ensemble = 2
[data]
n = 12
[train]
steps = 12
lr = 0.05
snapshots = [0, 12]
checkpoint_every = 5
"""


def test_train_writes_outputs(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    traj = np.load(tmp_path / "run" / "trajectory.npz")
    assert traj["loss"].shape == (13, 2)
    w = np.load(tmp_path / "run" / "weights.npz")
    assert w["final/V"].shape == (2, 6, 4, 5) and w["step0/W"].shape == (2, 6, 5, 4)
    assert "step12/V" in w


@pytest.mark.parametrize("text,needle", [("[model]\ndepth = -1\n", "depth"), ("[model]\nfoo = 1\n", "foo"),
                                         ("not toml ===", "TOML"), ("[train]\nmethod='lbfgs'\n", "method")])
def test_train_bad_config_exits_2_with_one_line(tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_train_refuses_other_config_in_same_dir(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL)
    assert runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")]).exit_code == 0
    cfg.write_text(SMALL.replace("depth = 6", "depth = 7"))
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "different config" in res.output
    assert (tmp_path / "run" / "trajectory.npz").exists()


@pytest.mark.parametrize("method,interrupt_at,resumed_from", [("gradient_flow", 8, 5), ("adam", 9, 5), ("sgd", 9, 5)])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, method, interrupt_at, resumed_from):
    # checkpoints every 5 steps, for every method (the training loop keeps snapshots inside a chunk)
    cfg = RunConfig.from_dict({"model": {"depth": 6, "dim": 4, "width": 5, "ensemble": 2, "init": "iid"},
                               "data": {"n": 12}, "train": {"method": method, "steps": 12, "lr": 0.01,
                                                            "batch_size": 4, "checkpoint_every": 5,
                                                            "snapshots": [0, 7, 12]}})
    _, full, _ = run(cfg, tmp_path / "a")

    def boom(e):
        if e.done == interrupt_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", progress=boom)
    _, resumed, start = run(cfg, tmp_path / "b")
    assert start == resumed_from  # lost at most one checkpoint interval
    assert full.loss.shape == (13, 2)
    np.testing.assert_allclose(resumed.loss, full.loss, rtol=1e-6)
    assert sorted(resumed.snapshots) == [0, 7, 12]
    a, b = np.load(tmp_path / "a" / "weights.npz"), np.load(tmp_path / "b" / "weights.npz")
    for key in ("final/V", "step7/W"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6)


def test_chunked_adam_equals_one_run():
    import torch

    import odecheck as oc

    net = oc.ResNet(depth=5, dim=3, width=4, init="iid", ensemble=2, dtype=torch.float64)
    ds = oc.gaussian_task(10, 3, 3, dtype=torch.float64)
    a = net.clone()
    one = oc.adam(a, ds.x, ds.y, steps=8, lr=1e-2, batch_size=4, seed=3)
    b = net.clone()
    st = {}
    p1 = oc.adam(b, ds.x, ds.y, steps=3, lr=1e-2, batch_size=4, seed=3, state=st)
    p2 = oc.adam(b, ds.x, ds.y, steps=5, lr=1e-2, batch_size=4, seed=3, state=st, start_step=3)
    np.testing.assert_allclose(p1.then(p2).loss, one.loss, rtol=1e-12)
    torch.testing.assert_close(b.weights["V"], a.weights["V"])


def test_bench_writes_the_issue_keys(tmp_path):
    import json

    from odecheck import _native

    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", "--depths", "4", "--depths", "8", "--ensemble", "2", "--repeat", "1",
                              "--baseline-max-depth", "4", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert {"device", "threads", "workload", "results", "bmm_gflops"} <= set(data)
    assert [r["depth"] for r in data["results"]] == [4, 8]
    first, second = data["results"]
    assert {"depth", "ensemble", "baseline_s", "engine_s", "speedup", "gflops", "roofline_fraction",
            "engine_path", "batched_s"} <= set(first)
    assert first["engine_s"] > 0 and first["speedup_normalized"] > 0 and first["roofline_fraction"] > 0
    assert first["speedup"] == pytest.approx(first["baseline_s"] / first["engine_s"])
    assert first["module_s"] > 0 and first["module_vs_engine"] == pytest.approx(first["module_s"] / first["engine_s"])
    assert second["baseline_s"] is None and second["speedup"] is None  # above --baseline-max-depth
    fused = _native.library() is not None
    # the engine runs the fused kernels where it measured them faster than the batched path
    assert first["engine_path"] == (first["choice"]["path"] if fused else "batched")
    assert (first["batched_s"] is not None) == fused
    if fused:  # two float32 implementations of the pass agree within twice its rounding bound
        from helpers import rounding_bound

        assert first["choice"]["fused_s"] > 0 and first["choice"]["batched_s"] > 0
        assert data["native"]["state"] == "available" and data["native"]["isa"]
        variants = first["variants"]
        assert "native" in variants and ("avx2" in variants) == (data["native"]["isa"] == "avx512")
        for v in variants.values():
            assert v["fused_s"] > 0 and v["vs_batched"] == pytest.approx(first["batched_s"] / v["fused_s"])
            assert 0 < v["path_max_rel_diff"] < 2 * rounding_bound(4, 16, 32, 100)


@pytest.mark.parametrize("args,needle", [(["--depths", "0"], "--depths"), (["--ensemble", "0"], "--ensemble"),
                                         (["--isa", "avx1024"], "--isa"),
                                         (["--recompute", "0"], "--recompute"), (["--device", "tpu"], "device"),
                                         (["--json", "/proc/odecheck/bench.json"], "--json")])
def test_bench_bad_arguments_exit_2(args, needle):
    res = runner.invoke(app, ["bench", *args])
    assert res.exit_code == 2
    assert needle in res.output


def test_bench_normalizes_by_the_reference_timed_alongside():
    from odecheck.bench import _normalized

    # a load that doubles halfway slows both the timed function and its reference
    assert _normalized([2.0, 2.0, 4.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0, 2.0]) == 2.0


def test_bench_reports_each_depth_as_it_finishes():
    import torch
    from odecheck.bench import run_bench

    seen = []
    res = run_bench([3, 5], 2, torch.device("cpu"), repeat=1, baseline_max_depth=0,
                    on_result=lambda partial: seen.append([r["depth"] for r in partial["results"]]))
    assert seen == [[3], [3, 5]]
    assert [r["depth"] for r in res["results"]] == [3, 5]


def test_train_refuses_a_model_that_cannot_take_the_data_before_drawing_progress(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\ndim = 16\n[data]\ntask = "digits"\n')  # digits have 64 inputs: dim 16 < 64
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "dim" in res.output
    assert "train" not in res.output.split("error")[0]  # no progress line before the error
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_train_with_adam_reports_a_finite_increment(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\ndepth = 4\nensemble = 2\n[train]\nmethod = "adam"\nsteps = 3\nsnapshots = []\n')
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "nan" not in res.output and "of the final weights, median" in res.output


def test_threads_option_sets_torch_threads_and_the_report_says_so(tmp_path):
    import json

    import torch

    before = torch.get_num_threads()
    try:
        res = runner.invoke(app, ["--threads", "1", "verify", "--budget", "quick", "--claims", "relu-counterexample",
                                  "--out", str(tmp_path / "r")])
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1
        assert json.loads((tmp_path / "r" / "report.json").read_text())["environment"]["threads"] == 1
    finally:
        torch.set_num_threads(before)
    for args, env in ((["--threads", "0", "verify"], {}), (["verify"], {"ODECHECK_THREADS": "0"})):
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 2 and "--threads 0: expected an integer >= 1 or 'auto'" in res.output, res.output


def test_sweep_off_a_terminal_logs_plain_progress_lines(tmp_path, monkeypatch):
    """A batch job's log gets lines (the first cell, then at most one a minute, and the last), not a bar."""
    import tomli_w

    from odecheck import progress

    monkeypatch.setattr(progress, "CELL_LOG_EVERY_S", 0.0)  # every cell
    spec = {"model": {"dim": 4, "width": 8, "ensemble": 2}, "data": {"n": 10}, "train": {"steps": 5, "snapshots": [5]},
            "sweep": {"model.depth": [4, 8, 16]}}
    (tmp_path / "s.toml").write_text(tomli_w.dumps(spec))
    res = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("sweep: ")]
    assert [ln.split(" cells")[0] for ln in lines] == ["sweep: 1/3", "sweep: 2/3", "sweep: 3/3"], res.output
    assert "(100.0 %)" in lines[-1] and "'model.depth': 16}: done" in lines[-1]
    res = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")])
    assert [ln.split(" cells")[0] for ln in res.output.splitlines() if ln.startswith("sweep: ")] == \
        ["sweep: 3/3"]  # a rerun with nothing left: one line
    (tmp_path / "s.toml").write_text(tomli_w.dumps({**spec, "sweep": {"model.depth": [4, 8, 16, 32, 64]}}))
    monkeypatch.setattr(progress, "CELL_LOG_EVERY_S", 3600.0)  # resumed: the first line (3 found done), the last
    res = runner.invoke(app, ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")])
    assert [ln.split(" cells")[0] for ln in res.output.splitlines() if ln.startswith("sweep: ")] == \
        ["sweep: 3/5", "sweep: 5/5"]


def test_a_long_cell_is_followed_through_its_progress_file(tmp_path, monkeypatch, capsys):
    """Off a terminal, while no cell finishes, a line names the running cell, its checkpointed step
    and median loss (at most once per CELL_LOG_EVERY_S); a cell finished since is not shown."""
    import io
    import json
    import re
    import time

    from rich.console import Console

    from odecheck import progress

    monkeypatch.setattr(progress, "WATCH_EVERY_S", 0.01)
    monkeypatch.setattr(progress, "CELL_LOG_EVERY_S", 3600.0)
    cell = tmp_path / "cells" / "0a1b2c"
    cell.mkdir(parents=True)
    console = Console(file=io.StringIO(), force_terminal=False)
    with progress.cell_progress(console, "m24-fig2", folder=tmp_path):
        (cell / "progress.json").write_text(json.dumps({"step": 12000, "steps": 80000, "loss": 3.14159e-6,
                                                        "members": 4, "diverged": 0, "time": time.time()}))
        err = ""
        for _ in range(500):
            err += capsys.readouterr().err
            if "running" in err:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("no line about the running cell within 5 s")
    assert re.fullmatch(r"m24-fig2: 0 cells done, 0:00:0\d elapsed; running cell 0a1b2c at step 12000/80000 "
                        r"\(15 %\), median loss 3.14e-06\n", err), err
    with progress.cell_progress(console, "m24-fig2", folder=tmp_path):  # written before this run began: stale
        time.sleep(0.1)
    assert capsys.readouterr().err == ""
    assert progress.running_text([{"cell": "0a1b2c", "step": 12000, "steps": 80000, "loss": 3.14159e-6}]) == \
        "running cell 0a1b2c at step 12000/80000 (15 %), median loss 3.14e-06"
    assert progress.running_text([{"cell": "0a1b2c", "step": 12000, "steps": 80000, "loss": 3.14159e-6,
                               "seconds_left": 3725.4}]) == \
        "running cell 0a1b2c at step 12000/80000 (15 %), about 1:02:05 left, median loss 3.14e-06"
    many = [{"cell": c, "step": 1, "steps": 4, "loss": None} for c in "abcd"]
    assert progress.running_text(many) == ("running cell a at step 1/4 (25 %), all diverged; "
                                       "cell b at step 1/4 (25 %), all diverged and 2 more")


def test_every_help_text_is_complete_and_rendered():
    # rich markup ate "[model]"; falsify named 4 of its 6 probes, reproduce one variant, analyze three formats
    import re

    from odecheck.falsify import PROBES
    from odecheck.reproduce import REPRODUCTIONS

    def text(*cmd):
        res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "300"}, terminal_width=300)
        assert res.exit_code == 0, res.output
        return re.sub(r"[\s│]+", " ", res.output)

    assert "TOML: [model], [data], [train] (the base config) and [sweep]" in text("sweep")
    falsify = text("falsify")
    assert all(c in falsify for c in PROBES), falsify
    variants = text("reproduce")
    assert all(v in variants for rep in REPRODUCTIONS.values() for v in rep.variants), variants
    analyze = text("analyze")
    assert all(f in analyze for f in (".safetensors", ".gguf", ".onnx", ".th", ".ckpt", ".pth.tar", ".npz")), analyze
