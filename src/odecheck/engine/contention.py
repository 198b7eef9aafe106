"""``odecheck bench --contention``: the same workload quiet and beside a busy process, under each thread policy.

A busy process (``python -c "while True: pass"``, one core's worth) is started and stopped by the benchmark
itself. Each workload runs, in interleaved rounds, under:

- ``free-cores``: the default of the command line (:mod:`odecheck.threads`: the cores others leave free,
  re-checked as the run goes);
- ``all-cores``: torch's default, one thread per allowed core, fixed (what odecheck did before);
- ``one-thread``: ``--threads 1``.

quiet and busy. The ratios that matter are reported per workload: busy free-cores against busy one-thread
(what a busy core should cost at most: target <= 1.2), quiet free-cores against quiet all-cores (no loss on
a quiet machine: target <= 1.05), and busy all-cores against busy one-thread (the collapse the policy
avoids). Times are medians over the rounds.

Workloads: the fused mlp step ([M24] workload, L = 256, R = 16), the batched torch path on the same
network (the fused kernels switched off), and a short gradient-flow training through ``odecheck.train`` at
the claims' scale (L = 64, R = 16, 40 steps: per-step re-checks of the policy included).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import torch

POLICIES = ("free-cores", "all-cores", "one-thread")
STATES = ("quiet", "busy")


@contextmanager
def busy_process(cores: int = 1):
    """``cores`` processes that spin on the CPU for the duration of the block (started, given a moment to be
    scheduled, killed at the end)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _fused_workload(steps: int) -> Callable[[], None]:
    from odecheck.engine.bench import N, Q, engine_step_fn

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, Q, generator=g), torch.randn(N, Q, generator=g)
    step = engine_step_fn(256, 16, x, y)

    def run():
        from odecheck.core import threads

        for _ in range(steps):
            threads.check()
            step()

    return run


def _batched_workload(steps: int) -> Callable[[], None]:
    from odecheck.engine import _native

    inner = _fused_workload(steps)

    def run():
        with _native.disabled():
            inner()

    return run


def _train_workload(steps: int) -> Callable[[], None]:
    from odecheck.engine.data import gaussian_task
    from odecheck.engine.models import ResNet
    from odecheck.engine.optim import GradientFlow
    from odecheck.engine.training import train

    data = gaussian_task(100, 16, 16, seed=0)

    def run():
        net = ResNet(block="mlp", depth=64, dim=16, width=32, activation="gelu", init="tied", ensemble=16, seed=0)
        train(net, data, GradientFlow(lr=1e-2), steps=steps)

    return run


WORKLOADS: dict[str, Callable[[int], Callable[[], None]]] = {
    "fused L=256 R=16": _fused_workload, "batched L=256 R=16": _batched_workload,
    "train L=64 R=16": _train_workload}
STEPS = {"fused L=256 R=16": 40, "batched L=256 R=16": 15, "train L=64 R=16": 40}


def _timed(policy: str, fn: Callable[[], None], allowed: int) -> tuple[float, list]:
    """Wall seconds of ``fn`` under ``policy`` (the thread count restored after), and the policy's changes."""
    from odecheck.core import threads

    before = torch.get_num_threads()
    try:
        if policy == "free-cores":
            with threads.governed() as gov:
                t0 = time.perf_counter()
                fn()
                return time.perf_counter() - t0, [list(c) for c in gov.changes]
        torch.set_num_threads(allowed if policy == "all-cores" else 1)
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0, []
    finally:
        torch.set_num_threads(before)


def run_contention(workloads: list[str] | None = None, *, rounds: int = 3, busy_cores: int = 1,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Time each workload under every policy, quiet and beside ``busy_cores`` busy processes, in ``rounds``
    interleaved rounds (quiet, busy, quiet, ...); medians and the three ratios per workload."""
    from odecheck.core._errors import invalid
    from odecheck.core.threads import allowed_cores
    from odecheck.engine import _native

    names = list(WORKLOADS) if not workloads else list(workloads)
    for w in names:
        if w not in WORKLOADS:
            raise invalid("workloads", w, f"one of {', '.join(WORKLOADS)}")
    if rounds < 1:
        raise invalid("rounds", rounds, "an integer >= 1")
    allowed = allowed_cores()
    fns = {w: WORKLOADS[w](STEPS[w]) for w in names}
    for w, fn in fns.items():  # warm-up: kernel builds, path timings, allocations
        if progress:
            progress(f"warm-up {w}")
        for policy in ("all-cores", "one-thread"):
            _timed(policy, fn, allowed)
    times: dict = {w: {s: {p: [] for p in POLICIES} for s in STATES} for w in names}
    changes: dict = {w: {s: [] for s in STATES} for w in names}
    for r in range(rounds):
        for state in STATES:
            ctx = busy_process(busy_cores) if state == "busy" else nullcontext()
            with ctx:
                for w, fn in fns.items():
                    for policy in POLICIES:
                        if progress:
                            progress(f"round {r + 1}/{rounds}: {w}, {state}, {policy}")
                        t, ch = _timed(policy, fn, allowed)
                        times[w][state][policy].append(t)
                        if ch:
                            changes[w][state].append(ch)
    rows = [_row(w, times[w], changes[w]) for w in names]
    return {"allowed_cores": allowed, "busy_processes": busy_cores, "rounds": rounds, "cpu": _native.cpu_model(),
            "torch": torch.__version__, "native": _native.status(), "rows": rows}


def _row(w: str, t: dict, changes: dict) -> dict:
    med = {s: {p: statistics.median(t[s][p]) for p in POLICIES} for s in STATES}
    return {"workload": w, "seconds": med, "samples": t,
            "busy_policy_vs_one_thread": med["busy"]["free-cores"] / med["busy"]["one-thread"],
            "quiet_policy_vs_all_cores": med["quiet"]["free-cores"] / med["quiet"]["all-cores"],
            "busy_all_cores_vs_one_thread": med["busy"]["all-cores"] / med["busy"]["one-thread"],
            "policy_changes": changes}


__all__ = ["POLICIES", "WORKLOADS", "busy_process", "run_contention"]
