"""Torch's CPU thread count chosen from the cores that other processes leave free, and re-checked as a run goes.

Why: torch's CPU operators and the fused kernels run one OpenMP parallel region per layer, whose threads
wait for each other at its end. When another process takes one of two cores, one of the two threads is
descheduled for a scheduler slice (milliseconds) at a time while its partner spins at the barrier: measured
on a 2-core machine, a claim that takes 18 s quiet took 126 s beside one busy process at 2 threads and 27.5
s at 1 thread. The engine's work has no coarser grain to move to without changing its arithmetic (each
member's gradient is summed by one thread, so results do not depend on the thread count; a test checks it),
so the lever is the count itself: use the cores that are free.

How: the cores this process may use (``os.sched_getaffinity``, capped by a cgroup v2 ``cpu.max`` quota), less
the cores other processes kept busy over the last window. The others' share is the machine's busy time
(``/proc/stat``: user, nice, system, irq, softirq and steal, so a hypervisor that takes a virtual core counts
too) minus this process's own CPU time (``os.times``), over the wall time of the window. A core counts as
free when at least half of it is, so a busy process on one of two cores leaves one thread, and a browser
that wakes now and then leaves two. The count is re-checked at most once every ``EVERY_S`` seconds from
the points that long runs pass often (every training step, every progress report), only on the main thread
(torch's thread count belongs to the thread that sets it).

Where ``/proc/stat`` does not exist (macOS, Windows) the count is the allowed cores, as torch's default.

The command line governs by default (``odecheck --threads N`` or ``ODECHECK_THREADS=N`` fixes N instead);
library users opt in with :func:`governed`.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

EVERY_S = 1.0  # the shortest window between two re-checks
FIRST_WINDOW_S = 0.25  # the window measured before the first choice (the process is idle then)
FREE_SHARE = 0.5  # a core counts as free when at least this share of it is not used by other processes


def allowed_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (containers,
    CI runners, ``systemd-run -p CPUQuota``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(n, quota)) if quota is not None else max(1, n)


def cgroup_quota(path: str | os.PathLike = "/sys/fs/cgroup/cpu.max") -> int | None:
    """Whole cores of a cgroup v2 quota ("QUOTA PERIOD", rounded half up, at least 1); None without one."""
    try:
        quota, period = Path(path).read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, int(float(quota) / float(period) + 0.5))
    except (OSError, ValueError):
        return None


def busy_seconds(stat: str | None = None) -> float | None:
    """Seconds of CPU time the whole machine has been busy since boot (the aggregate ``cpu`` line of
    ``/proc/stat``: user, nice, system, irq, softirq, steal; guest time is already inside user); None where
    there is no such file."""
    try:
        text = stat if stat is not None else Path("/proc/stat").read_text()
        fields = text.split("\n", 1)[0].split()
        if fields[0] != "cpu":
            return None
        v = [int(x) for x in fields[1:]]
        user, nice, system, _idle, _iowait, irq, softirq = v[:7]
        steal = v[7] if len(v) > 7 else 0
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_seconds() -> float:
    """CPU seconds used by this process, all its threads."""
    t = os.times()
    return t.user + t.system


def threads_for(allowed: int, others: float) -> int:
    """Threads for ``allowed`` cores when other processes keep ``others`` cores busy: the cores at least
    FREE_SHARE free, at least one."""
    return max(1, min(allowed, int(allowed - others + (1.0 - FREE_SHARE))))


@dataclass
class Governor:
    """Sets torch's thread count from the free cores; :meth:`check` re-checks when the window is long enough.

    ``changes`` records (seconds since start, threads, other processes' cores) each time the count changed;
    ``others`` is the last measured load of other processes in cores (None before the first window)."""

    allowed: int = field(default_factory=allowed_cores)
    every_s: float = EVERY_S
    threads: int = 0
    others: float | None = None
    changes: list[tuple[float, int, float]] = field(default_factory=list)

    def __post_init__(self):
        self._t0 = time.monotonic()
        self._mark = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float | None, float]:
        return time.monotonic(), busy_seconds(), own_seconds()

    def measure(self) -> float | None:
        """Cores used by other processes since the last mark (and set a new mark)."""
        then, now = self._mark, self._sample()
        self._mark = now
        wall = now[0] - then[0]
        if then[1] is None or now[1] is None or wall <= 0:
            return None
        return max(0.0, ((now[1] - then[1]) - (now[2] - then[2])) / wall)

    def start(self) -> int:
        """The first choice, after a short window measured while this process waits."""
        if self.allowed > 1 and self._mark[1] is not None:
            time.sleep(FIRST_WINDOW_S)
        return self.apply(force=True)

    def check(self) -> int:
        """Re-check when at least ``every_s`` passed since the last window (cheap otherwise)."""
        if time.monotonic() - self._mark[0] < self.every_s:
            return self.threads
        return self.apply()

    def apply(self, force: bool = False) -> int:
        import torch

        if threading.current_thread() is not threading.main_thread():
            return self.threads
        others = self.measure() if self.allowed > 1 else 0.0
        if others is not None:
            self.others = others
        n = self.allowed if others is None else threads_for(self.allowed, others)
        if n != self.threads or force:
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
            if n != self.threads:
                self.changes.append((round(time.monotonic() - self._t0, 2), n, round(others or 0.0, 2)))
            self.threads = n
        return n

    def summary(self) -> dict:
        """What the report records: the policy, the allowed cores and every change of the count."""
        return {"policy": "free cores", "allowed_cores": self.allowed, "threads": self.threads,
                "changes": [list(c) for c in self.changes]}


def parse_option(value: str | int | None) -> int | None:
    """The ``--threads`` option (or ``ODECHECK_THREADS``): None for the free-cores policy ('auto' or unset),
    else a fixed count, an integer >= 1 (InvalidArgument naming ``threads`` otherwise)."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        from odecheck.core._errors import invalid

        raise invalid("threads", int(value) if str(value).strip().lstrip("-").isdigit() else value,
                      "an integer >= 1 or 'auto'")
    return n


def apply_option(value: str | int | None, on_close) -> None:
    """What the command line does with ``--threads``: a fixed count, or the free-cores policy for the whole
    command (``on_close`` registers its end: torch's count restored)."""
    import torch

    n = parse_option(value)
    if n is not None:
        torch.set_num_threads(n)
        return
    gov = governed()
    gov.__enter__()
    on_close(lambda: gov.__exit__(None, None, None))


_active: Governor | None = None


def check() -> None:
    """Re-check the active governor's count, if there is one (no-op otherwise): long loops call this."""
    if _active is not None:
        _active.check()


def active() -> Governor | None:
    return _active


@contextmanager
def governed(every_s: float = EVERY_S):
    """Within the block, torch's thread count follows the free cores; torch's count is restored after."""
    global _active
    import torch

    before, previous = torch.get_num_threads(), _active
    gov = Governor(every_s=every_s)
    _active = gov
    try:
        gov.start()
        yield gov
    finally:
        _active = previous
        torch.set_num_threads(before)


__all__ = ["Governor", "allowed_cores", "busy_seconds", "cgroup_quota", "check", "governed", "apply_option", "parse_option",
           "threads_for"]
