"""Progress of long runs as the command line shows it: a bar over a grid's cells on a terminal, and off
one (a log file, a batch job) a plain line at most once a minute with the cells done, the elapsed time and
the time left; inside a long cell, the step its progress file says (``runner.PROGRESS_FILE``)."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from odecheck.experiments.sweeps import running_cells

CELL_LOG_EVERY_S = 60.0  # off a terminal (nohup, batch jobs): one progress line at most this often
WATCH_EVERY_S = 5.0  # how often the running cells' progress files are read while no cell finishes


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def running_text(running: list[dict]) -> str:
    """One phrase for the cells under way: the newest two with step, share, time left and median loss."""
    parts = []
    for r in running[:2]:
        loss = "all diverged" if r.get("loss") is None else f"median loss {r['loss']:.3g}"
        share = 100 * r["step"] / max(r["steps"], 1)
        left = "" if r.get("seconds_left") is None else f", about {clock(r['seconds_left'])} left"
        parts.append(f"cell {r['cell']} at step {r['step']}/{r['steps']} ({share:.0f} %){left}, {loss}")
    more = f" and {len(running) - 2} more" if len(running) > 2 else ""
    return "running " + "; ".join(parts) + more


class _CellLog:
    """The state behind :func:`cell_progress`: cells done (of how many), when a plain line was last
    written, and the pace of this run (from the first cell it finished, not those found done on disk)."""

    def __init__(self, label: str, total: int | None, prog, task, live: bool):
        self.label, self.n, self.prog, self.task, self.live = label, total, prog, task, live
        self.t0, self.started = time.monotonic(), time.time()
        self.logged: float | None = None
        self.first: tuple[float, int] | None = None
        self.final, self.done = False, 0
        self.lock = threading.Lock()

    def counted(self, now: float) -> str:
        """Cells done (of how many), elapsed time, and the time left at this run's pace."""
        done, n = self.done, self.n
        text = f"{done}/{n} cells ({100 * done / max(n, 1):.1f} %)" if n is not None else f"{done} cells done"
        text += f", {clock(now - self.t0)} elapsed"
        if self.first is not None and n is not None:
            t1, d1 = self.first
            rate = (done - d1) / (now - t1) if now > t1 and done > d1 else 0.0
            text += f", about {clock((n - done) / rate)} left" if rate > 0 and done < n else ""
        return text

    def on_cell(self, event) -> None:
        """The meter: a ``Progress`` event of a finished cell (task "sweep" or "reproduce")."""
        if event.stage != "done":
            return
        cell, rows, done, n = event.item, event.result, int(event.done), int(event.total)
        statuses = "/".join(sorted({r["status"] for r in rows}))
        with self.lock:
            self.done, self.n = done, n
            self.prog.update(self.task, completed=done, total=n, last=f"{cell}: {statuses}", running="")
            if self.live:
                return
            now = time.monotonic()
            if self.first is None or now - self.first[0] < 1.0:
                self.first = (now, done)  # the burst of cells found finished on disk is not this run's speed
            final = done >= n
            if self.final or (not final and self.logged is not None and now - self.logged < CELL_LOG_EVERY_S):
                return
            self.logged, self.final = now, final
            print(f"{self.label}: {self.counted(now)}; last {cell}: {statuses}", file=sys.stderr, flush=True)

    def running(self, folder: Path) -> None:
        """Show the running cells' checkpointed steps (from their progress files)."""
        running = running_cells(folder, since=self.started)
        if not running:
            return
        text = running_text(running)
        with self.lock:
            now = time.monotonic()
            if self.live:
                self.prog.update(self.task, running=text)
            elif not self.final and (self.logged is None or now - self.logged >= CELL_LOG_EVERY_S):
                self.logged = now
                print(f"{self.label}: {self.counted(now)}; {text}", file=sys.stderr, flush=True)


@contextmanager
def cell_progress(console, label: str, total: int | None = None, folder: Path | None = None):
    """A progress bar over a sweep's cells; yields the meter (``odecheck.events``) that advances it. Off a
    terminal (a log file, a batch job) the bar is replaced by a plain line every CELL_LOG_EVERY_S
    seconds and at the last cell: cells done, elapsed time, an estimate of the time left.
    With ``folder`` (the sweep's), a long cell is followed inside: every WATCH_EVERY_S the cells'
    progress files are read, and the step each running cell has checkpointed is shown (on the bar, or
    off a terminal in a line, if no line was written for CELL_LOG_EVERY_S)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    live = console.is_terminal
    stop = threading.Event()
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed}/{task.total} cells"),
                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[running]}"),
                  console=console, transient=False, disable=not live) as prog:
        log = _CellLog(label, total, prog, prog.add_task(label, total=total, last="", running=""), live)

        def watch() -> None:
            while not stop.wait(WATCH_EVERY_S):
                log.running(folder)

        watcher = threading.Thread(target=watch, daemon=True) if folder is not None else None
        if watcher is not None:
            watcher.start()
        try:
            yield log.on_cell
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()


@contextmanager
def step_progress(console, label: str, total: int):
    """A bar over a run's steps with the members' median loss; yields the meter (``odecheck.events``)."""
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as prog:
        task = prog.add_task(label, total=total, loss="-")
        yield lambda e: prog.update(task, completed=e.done, loss=f"{np.nanmedian(e.result):.4g}")


class _ClaimMeter:
    """The meter of :func:`claim_progress`: a bar per claim (status, elapsed, time left at the claim's own
    pace, its reference time on the budget) and an overall bar whose time left comes from the reference
    times of the claims still to run, scaled by this run's pace so far (``claims.timing``)."""

    def __init__(self, prog, ids: list[str], budget: str, report_name: str, live: bool):
        from odecheck.experiments.claims.timing import FALLBACK_SECONDS, reference_seconds

        self.prog, self.ids, self.report_name, self.live = prog, ids, report_name, live
        known = {c: reference_seconds(c, budget) for c in ids}
        self.shown = {c: "n/a" if s is None else f"~{s:.0f} s" for c, s in known.items()}
        self.ref = {c: FALLBACK_SECONDS if s is None else s for c, s in known.items()}
        self.total_ref = sum(self.ref.values())
        self.t0 = time.monotonic()
        self.tasks: dict = {}
        self.first: dict = {}  # each claim's index: its advance events count from it
        self.done_ref = 0.0  # reference seconds of the claims finished (computed, not reused)
        self.done_s = 0.0  # their wall seconds
        self.reused: set[str] = set()
        self.overall = None

    def _tasks(self) -> None:
        if self.tasks:
            return
        self.overall = self.prog.add_task("all claims", total=self.total_ref, status=f"0/{len(self.ids)}",
                                          budget=f"~{self.total_ref:.0f} s")
        self.tasks.update({c: self.prog.add_task(c, total=1.0, status="queued", budget=self.shown[c])
                           for c in self.ids})

    def elapsed(self) -> float:
        """Seconds since the meter was made (the run's wall time)."""
        return time.monotonic() - self.t0

    def left(self) -> float:
        """Seconds left: the unfinished claims' reference seconds at this run's pace (reference until one
        claim has run)."""
        n_done = sum(1 for c in self.ids if self.prog.tasks[self.tasks[c]].completed >= 1.0)
        rest = sum(self.ref[c] for c in self.ids[n_done:])
        pace = self.done_s / self.done_ref if self.done_ref > 0 else 1.0
        return rest * pace

    def __call__(self, e) -> None:
        self._tasks()
        if e.stage == "start":
            self.first[e.item] = e.done
            self.prog.update(self.tasks[e.item], status="running")
        elif e.stage == "advance":
            frac = e.done - self.first[e.item]
            self.prog.update(self.tasks[e.item], completed=frac)
            self.prog.update(self.overall, completed=self._overall(e.item, frac))
        else:
            self._done(e.result["verdict"], e.result["reused"])

    def _overall(self, cid: str, frac: float) -> float:
        i = self.ids.index(cid)
        return sum(self.ref[c] for c in self.ids[:i]) + frac * self.ref[cid]

    def _done(self, v: dict, reused: bool) -> None:
        cid = v["id"]
        if reused:
            self.reused.add(cid)
            status = f"{v['verdict']} (from {self.report_name})"
        else:
            self.done_ref += self.ref[cid]
            self.done_s += v["seconds"]
            status = v["verdict"]
        self.prog.update(self.tasks[cid], completed=1.0, status=status)
        n_done = sum(1 for c in self.ids if self.prog.tasks[self.tasks[c]].completed >= 1.0)
        self.prog.update(self.overall, completed=self._overall(cid, 1.0), status=f"{n_done}/{len(self.ids)}")
        if not self.live:
            est = "n/a" if v["estimate"] is None else f"{v['estimate']:.4g}"
            left = self.left()
            print(f"[{n_done}/{len(self.ids)}] {cid}: {status}, estimate {est}, {v['seconds']:.1f} s "
                  f"(reference {self.shown[cid]}); {clock(time.monotonic() - self.t0)} elapsed"
                  + (f", about {clock(left)} left" if n_done < len(self.ids) else ""),
                  file=sys.stderr, flush=True)


@contextmanager
def claim_progress(console, ids: list[str], report_name: str, budget: str = "standard"):
    """One bar per claim and one over all of them on a terminal (elapsed, time left, the reference time of
    the claim on ``budget``); elsewhere (CI logs, nohup) one plain line per finished claim with the time
    elapsed and left. Yields the meter (``odecheck.events``) for ``odecheck.verification.verify``; its
    ``reused`` holds the claims taken from an earlier report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    live = console.is_terminal
    with Progress(TextColumn("{task.description:<26}"), BarColumn(), TextColumn("{task.fields[status]:<14}"),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                  TextColumn("(reference {task.fields[budget]})"), console=console, disable=not live) as prog:
        yield _ClaimMeter(prog, ids, budget, report_name, live)
