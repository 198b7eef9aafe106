"""The thread policy (odecheck.threads): the count it picks from scripted machine samples, where it may act,
the files it reads, and that results do not depend on the thread count it picks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from odecheck.models import ResNet
from odecheck.threads import Governor, busy_seconds, cgroup_quota, threads_for

from odecheck import threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_for_counts_cores_at_least_half_free():
    # 2 cores: one busy process (1.0, or 2/3 while we spin beside it) leaves one thread; a light load two
    assert [threads_for(2, o) for o in (0.0, 0.3, 0.5, 0.51, 0.67, 1.0, 1.7, 2.0, 3.0)] == [2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert [threads_for(8, o) for o in (0.0, 2.2, 2.6, 7.9)] == [8, 6, 5, 1]
    assert threads_for(1, 0.0) == 1


def test_busy_seconds_reads_the_aggregate_line_steal_included_guest_not_twice():
    hz = __import__("os").sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    line = "cpu  100 20 30 5000 7 1 2 40 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert busy_seconds(line) == pytest.approx((100 + 20 + 30 + 1 + 2 + 40) / hz)
    assert busy_seconds("cpu0 1 2 3\n") is None
    assert busy_seconds("garbage") is None


def test_cgroup_quota(tmp_path):
    f = tmp_path / "cpu.max"
    for text, want in (("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("300000 100000", 3),
                       ("nonsense", None)):
        f.write_text(text)
        assert cgroup_quota(f) == want, text
    assert cgroup_quota(tmp_path / "missing") is None


class _Scripted(Governor):
    """A governor whose machine samples (time, busy seconds, own seconds) come from a script."""

    def __init__(self, samples, **kw):
        self._script = iter(samples)
        super().__init__(**kw)

    def _sample(self):
        return next(self._script)


def test_governor_follows_the_others_load_and_records_each_change():
    # windows of 1 s: others use 0.1, 1.0 (a busy process), 0.67, then 0.0 cores
    samples = [(0.0, 0.0, 0.0), (1.0, 1.1, 1.0), (2.0, 3.1, 2.0), (3.0, 4.77, 3.0), (4.0, 5.77, 4.0)]
    gov = _Scripted(samples, allowed=2, every_s=0.0)
    assert gov.apply(force=True) == 2 and torch.get_num_threads() == 2
    assert gov.apply() == 1 and torch.get_num_threads() == 1 and gov.others == pytest.approx(1.0)
    assert gov.apply() == 1
    assert gov.apply() == 2 and torch.get_num_threads() == 2
    assert [c[1] for c in gov.changes] == [2, 1, 2]
    s = gov.summary()
    assert s["policy"] == "free cores" and s["allowed_cores"] == 2 and s["threads"] == 2


def test_governor_rechecks_only_after_its_window_and_only_on_the_main_thread():
    gov = _Scripted([(0.0, 0.0, 0.0), (0.5, 0.5, 0.0)], allowed=2, every_s=1e9)
    gov.threads = 2
    assert gov.check() == 2  # the window is not over: no sample taken (a second would raise StopIteration)
    gov2 = _Scripted([(0.0, 0.0, 0.0)], allowed=2, every_s=0.0)
    gov2.threads = 2
    out = []
    t = threading.Thread(target=lambda: out.append(gov2.apply()))
    t.start()
    t.join()
    assert out == [2]  # off the main thread: nothing measured, nothing set


def test_without_proc_stat_the_count_is_the_allowed_cores():
    gov = _Scripted([(0.0, None, 0.0), (1.0, None, 1.0)], allowed=3, every_s=0.0)
    assert gov.apply(force=True) == 3


def test_governed_restores_torch_threads_and_check_is_a_noop_outside():
    torch.set_num_threads(1)
    with threads.governed() as gov:
        assert threads.active() is gov and 1 <= gov.threads <= gov.allowed
    assert threads.active() is None and torch.get_num_threads() == 1
    threads.check()  # no governor: nothing happens


def _train_at(n_threads: int, R: int, native: bool) -> dict:
    from odecheck.data import gaussian_task
    from odecheck.optim import GradientFlow
    from odecheck.training import train

    from odecheck import _native

    torch.set_num_threads(n_threads)
    net = ResNet(block="mlp", depth=12, dim=16, width=32, activation="gelu", init="iid", ensemble=R, seed=4)
    ctx = _native.forcing() if native else _native.disabled()
    with ctx:
        traj = train(net, gaussian_task(100, 16, 16, seed=1), GradientFlow(lr=0.05), steps=3)
    return {"loss": traj.loss, **net.numpy_weights()}


@pytest.mark.parametrize("R", [1, 2, 3, 16])
@pytest.mark.parametrize("native", [True, False], ids=["fused", "batched"])
def test_training_is_identical_for_any_thread_count(R, native):
    # the policy changes the count as the machine's load changes: the numbers must not follow it
    from odecheck import _native

    if native and _native.library() is None:
        pytest.skip("fused kernels unavailable")
    runs = [_train_at(t, R, native) for t in (1, 2, 3)]
    for other in runs[1:]:
        for k in runs[0]:
            np.testing.assert_array_equal(other[k], runs[0][k], err_msg=k)


def test_the_timed_path_choice_does_not_depend_on_the_thread_count(tmp_path, monkeypatch):
    # the engine times its fused and batched paths on first use of a shape class and remembers the winner;
    # the two round differently, so a choice per thread count made numbers follow the load (float64 small
    # layers: 6.7e-16 apart at 1 and 2 threads). Here the timing is scripted to name a different winner each
    # time it runs: it must run once for all three thread counts, and the outputs must be identical.
    from odecheck.blocks import mlp

    from odecheck import _native

    if _native.library() is None:
        pytest.skip("fused kernels unavailable")
    monkeypatch.setenv("ODECHECK_CACHE", str(tmp_path))
    monkeypatch.delenv("ODECHECK_NATIVE", raising=False)
    monkeypatch.setitem(_native._state, "choices", {})
    calls = []

    def scripted(kind, *args):
        calls.append(args)
        return {"path": ("fused", "batched")[len(calls) % 2], "kind": kind, "fused_s": 1.0, "batched_s": 1.0}

    monkeypatch.setattr(mlp, "time_paths", scripted)
    outs = []
    for t in (1, 2, 3):
        torch.set_num_threads(t)
        net = ResNet(block="mlp", depth=40, dim=8, width=8, activation="tanh", init="iid", ensemble=8, seed=2,
                     dtype=torch.float64)
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        outs.append(net(x).numpy())
    assert len(calls) == 1
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_the_command_line_governs_by_default_and_fixes_a_count_when_asked(tmp_path):
    import json

    from typer.testing import CliRunner

    from odecheck.cli import app

    runner = CliRunner()
    for args, policy in ((["verify"], "free cores"), (["--threads", "auto", "verify"], "free cores"),
                         (["--threads", "1", "verify"], "fixed")):
        out = tmp_path / policy.replace(" ", "-") / str(len(args))
        res = runner.invoke(app, [*args, "--budget", "quick", "--claims", "relu-counterexample", "--out", str(out)])
        assert res.exit_code == 0, res.output
        env = json.loads((out / "report.json").read_text())["environment"]
        assert env["thread_policy"]["policy"] == policy
        # the run ends with one summary line before the report's paths
        lines = res.output.strip().splitlines()
        assert lines[-2].startswith("1 of 1 confirmed in ") and lines[-2].endswith(" s"), lines[-2:]
        assert lines[-1].startswith("wrote ")
    res = runner.invoke(app, ["--threads", "two", "verify"])
    assert res.exit_code == 2 and "--threads 'two': expected an integer >= 1 or 'auto'" in res.output


def test_intervals_print_with_enough_digits_to_differ():
    from odecheck.render import interval_text, verify_summary

    assert interval_text(-1.00213, -1.00121) == "[-1.002, -1.001]"
    assert interval_text(-1.0000021, -1.0000012) == "[-1.000002, -1.000001]"
    assert interval_text(0.123456, 0.98) == "[0.123, 0.98]"
    assert interval_text(2.0, 2.0) == "[2, 2]" and interval_text(None, 1.0) == "[n/a, n/a]"
    v = [{"verdict": "confirmed"}, {"verdict": "confirmed"}, {"verdict": "inconclusive"}]
    assert verify_summary(v, 95.6) == "2 of 3 confirmed, 1 inconclusive in 96 s"
    assert verify_summary(v, 1.2, reused=2) == "2 of 3 confirmed, 1 inconclusive in 1 s (2 reused from an earlier run)"


def test_contention_benchmark_reports_every_policy_quiet_and_busy(monkeypatch):
    from odecheck import contention

    monkeypatch.setitem(contention.STEPS, "train L=64 R=16", 2)
    res = contention.run_contention(["train L=64 R=16"], rounds=1)
    (row,) = res["rows"]
    for state in ("quiet", "busy"):
        assert set(row["seconds"][state]) == {"free-cores", "all-cores", "one-thread"}
        assert all(t > 0 for t in row["seconds"][state].values())
    assert row["busy_policy_vs_one_thread"] == pytest.approx(row["seconds"]["busy"]["free-cores"]
                                                           / row["seconds"]["busy"]["one-thread"])
    with pytest.raises(Exception, match="workloads"):
        contention.run_contention(["nope"])
