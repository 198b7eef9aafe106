"""``odecheck sweep``: a grid of ``odecheck train`` runs, in process or on a Dask cluster, resumable,
gathered into one tidy table.

A spec is the ``[model]``, ``[data]``, ``[train]`` tables of ``odecheck train`` (the base config)
plus a ``[sweep]`` table: each key a dotted field name (``"model.depth"``) with a list of values;
the cells are the cartesian product of the lists. ``[[sweep.zip]]`` tables hold lists of equal
length that vary together (a depth with its learning rate) and enter the product as one axis::

    [sweep]
    "model.init" = ["tied", "iid"]
    [[sweep.zip]]
    "model.depth" = [16, 32, 64]
    "train.lr" = [0.16, 0.32, 0.64]

``save_weights = false`` in ``[sweep]`` (an option, not an axis) keeps only the table and each
cell's trajectory: no ``weights.npz`` per cell (a 50-member, 1000-layer width-40 cell is 1.2 GB of
them; the initialization sweeps need only the table).

Each cell is a checkpointed run in ``OUT/cells/<id>/`` (``id``: a hash of the cell's full config,
so a changed base config makes new cells); when it ends, its rows go to ``result.json`` in that
folder. A rerun finishes only cells without a result (failed cells are retried). The table has one
row per (cell, ensemble member): the swept fields by their dotted names, ``member``, ``status``
(done / diverged / failed), ``final_loss``, ``max_increment`` (max over layers and steps),
``hurst`` and ``regime`` of the final weights k -> Z_k, ``init_ratio`` and ``init_grad_ratio``
([M25]'s ||h_L - h_0|| / ||h_0|| and ||dl/dh_0 - dl/dh_L|| / ||dl/dh_L|| at initialization, on the
training inputs), ``seconds``, ``cell`` and ``error``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.core._errors import InvalidArgument, OdecheckError, invalid
from odecheck.core._io import atomic_write, jsonable
from odecheck.core.events import Meter, report
from odecheck.core.validation import writable_folder
from odecheck.experiments.config import RunConfig, read_toml

STATUSES = ("done", "diverged", "failed")
METRICS = ("member", "status", "final_loss", "max_increment", "hurst", "regime", "init_ratio", "init_grad_ratio",
           "train_accuracy", "test_accuracy", "test_loss", "seconds", "cell", "error")
NUMBERS = ("final_loss", "max_increment", "hurst", "init_ratio", "init_grad_ratio", "train_accuracy", "test_accuracy",
           "test_loss")
TABLE_EVERY_S = 30.0  # results.parquet is rewritten at most this often while cells finish (and at the end)


@dataclass(frozen=True)
class Axis:
    """One axis of the product: dotted field names that vary together, and their value tuples."""

    names: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class SweepSpec:
    base: dict[str, Any]
    axes: tuple[Axis, ...]
    save_weights: bool = True

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(n for a in self.axes for n in a.names)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        if not isinstance(d, dict):
            raise invalid("spec", type(d).__name__, "a table with [model], [data], [train] and [sweep]")
        d = dict(d)
        sweep = d.pop("sweep", None)
        if not isinstance(sweep, dict) or not sweep:
            raise invalid("sweep", sweep, "a [sweep] table of dotted field names with lists of values")
        sweep = dict(sweep)  # the caller's spec is left as it was
        save_weights = sweep.pop("save_weights", True)
        if not isinstance(save_weights, bool):
            raise invalid("sweep.save_weights", save_weights, "true or false")
        base_cfg = RunConfig.from_dict(d)  # validates the base tables
        axes: list[Axis] = []
        zips = sweep.pop("zip", [])
        if isinstance(zips, dict):
            zips = [zips]
        if not isinstance(zips, list):
            raise invalid("sweep.zip", zips, "[[sweep.zip]] tables of equally long lists")
        for key, values in sweep.items():
            _check_values(key, values)
            axes.append(Axis((key,), tuple((v,) for v in values)))
        for group in zips:
            if not isinstance(group, dict) or not group:
                raise invalid("sweep.zip", group, "a table of dotted field names with equally long lists")
            lengths = {k: _check_values(k, v) for k, v in group.items()}
            if len(set(lengths.values())) != 1:
                raise invalid("sweep.zip", lengths, "lists of one length (they vary together)")
            names = tuple(group)
            axes.append(Axis(names, tuple(zip(*(group[n] for n in names), strict=True))))
        seen: set[str] = set()
        for a in axes:
            for n in a.names:
                if n in seen:
                    raise invalid("sweep", n, "each field swept once")
                seen.add(n)
        spec = cls(base=base_cfg.to_dict(), axes=tuple(axes), save_weights=save_weights)
        for cell in spec.cells():  # every cell's config is valid before anything runs
            spec.config(cell)
        return spec

    @classmethod
    def load(cls, path) -> SweepSpec:
        return cls.from_dict(read_toml(path, "spec"))

    def write(self, path: Path) -> None:
        """The spec as JSON (base config, axes, save_weights): what a sweep folder was run with."""
        path.write_text(json.dumps({"base": self.base, "axes": [
            {"names": list(a.names), "values": [list(v) for v in a.values]} for a in self.axes],
            "save_weights": self.save_weights}, indent=1))

    def cells(self) -> list[dict[str, Any]]:
        """The cells in a fixed order: the product of the axes, first axis slowest."""
        out = []
        for combo in itertools.product(*(a.values for a in self.axes)):
            cell: dict[str, Any] = {}
            for a, vals in zip(self.axes, combo, strict=True):
                cell.update(zip(a.names, vals, strict=True))
            out.append(cell)
        return out

    def config(self, cell: dict[str, Any]) -> RunConfig:
        d = json.loads(json.dumps(self.base))
        for name, value in cell.items():
            table, _, key = name.partition(".")
            if table not in ("model", "data", "train") or not key:
                raise invalid("sweep", name, "a dotted name model.X, data.X or train.X")
            d.setdefault(table, {})[key] = value
        try:
            return RunConfig.from_dict(d)
        except InvalidArgument as e:
            raise InvalidArgument(f"sweep cell {json.dumps(cell, sort_keys=True)}: {e}") from None


def _check_values(key: str, values) -> int:
    if not isinstance(values, list) or not values:
        raise invalid(f"sweep.{key}" if not key.startswith("sweep") else key, values, "a non-empty list of values")
    return len(values)


def cell_id(cfg: RunConfig) -> str:
    return hashlib.sha256(cfg.dumps().encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- one cell
def _final_regularity(net, w: dict, r: int) -> tuple[float, str]:
    """Hurst exponent and regime of member r's path k -> Z_k (every per-layer family of ``w``, the
    network's public (R, L, ...) tensors: one member is copied at a time)."""
    from odecheck.analysis.estimators import classify_regime

    path = np.concatenate([w[f][r].detach().reshape(net.depth, -1).cpu().numpy()
                           for f in net.layer_families], axis=1)
    if net.depth < 3 or not np.all(np.isfinite(path)):
        return float("nan"), "inconclusive"
    d = classify_regime(path, seed=0)
    return float(d.hurst.estimate), d.regime


def _init_ratios(net, data) -> tuple[np.ndarray, np.ndarray]:
    """[M25]'s ratios at initialization on the cell's training inputs: ||h_L - h_0|| / ||h_0|| and
    ||dl/dh_0 - dl/dh_L|| / ||dl/dh_L|| per member (inf where the forward pass overflowed)."""
    from odecheck.analysis.estimators import init_ratios

    with np.errstate(all="ignore"):
        fwd, bwd = init_ratios(net, data.x, data.y)
    return np.where(np.isfinite(fwd), fwd, np.inf), np.where(np.isfinite(bwd), bwd, np.inf)


def run_cell(spec_base: dict, cell: dict, out: str, threads: int | None = None,
             save_weights: bool = True, device: str = "cpu") -> list[dict[str, Any]]:
    """Run (or resume) one cell under ``out/cells/<id>`` and return its rows; writes ``result.json``
    (and the cell's ``weights.npz`` unless ``save_weights`` is false).
    A cell that raises is recorded as failed with its error; the exception does not propagate."""
    import torch

    from odecheck.experiments import runner

    if threads:
        torch.set_num_threads(threads)
    spec = SweepSpec(base=spec_base, axes=())
    cfg = spec.config(cell)
    cid = cell_id(cfg)
    folder = Path(out) / "cells" / cid
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    R = cfg.model.ensemble
    try:
        box: dict[str, tuple] = {}
        net, traj, _ = runner.run(cfg, folder, device=device, save_weights=save_weights,
                                  at_init=lambda n, d: (box.setdefault("r", _init_ratios(n, d)),
                                                        box.setdefault("data", d)))
        ratios = box["r"]
        summary = runner.summarize(cfg, net, traj, box["data"])
        rows = []
        weights = net.weights
        for r in range(R):
            diverged = bool(traj.diverged[r])
            h, reg = (float("nan"), "inconclusive") if diverged else _final_regularity(net, weights, r)
            rows.append({"member": r, "status": "diverged" if diverged else "done",
                         "final_loss": float(traj.loss[-1, r]), "max_increment": float(summary.max_increment[r]),
                         "hurst": h, "regime": reg, "init_ratio": float(ratios[0][r]),
                         "init_grad_ratio": float(ratios[1][r]), "train_accuracy": float(summary.train_accuracy[r]),
                         "test_accuracy": float(summary.test_accuracy[r]), "test_loss": float(summary.test_loss[r]),
                         "error": ""})
    except Exception as e:  # noqa: BLE001 - a failing cell is recorded and the sweep goes on
        err = f"{type(e).__name__}: {e}"
        (folder / "error.txt").write_text(traceback.format_exc())
        rows = [{**dict.fromkeys(NUMBERS, float("nan")), "member": r, "status": "failed", "regime": "", "error": err}
                for r in range(R)]
    seconds = time.perf_counter() - t0
    for row in rows:
        row.update({"seconds": seconds, "cell": cid})
        row.update({k: cell[k] for k in cell})
    _write_result(folder, cell, rows)
    return rows


def _write_result(folder: Path, cell: dict, rows: list[dict]) -> None:
    text = json.dumps({"cell": cell, "rows": rows})
    atomic_write(folder / "result.json", lambda f: f.write(text.encode()))
    with open(folder / "completions.log", "a") as f:  # one line per completed run of this cell
        f.write(f"{time.time():.3f} {os.getpid()}\n")


def _read_result(folder: Path) -> list[dict] | None:
    try:
        return json.loads((folder / "result.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _finished(folder: Path) -> list[dict] | None:
    """The rows of a cell that needs no rerun (a result with no failed member), else None."""
    rows = _read_result(folder)
    return rows if rows is not None and all(r["status"] != "failed" for r in rows) else None


def running_cells(out: str | os.PathLike, since: float | None = None) -> list[dict[str, Any]]:
    """The cells under ``out`` whose training is under way: a ``progress.json`` (written by the runner
    with each checkpoint) newer than the cell's result, if any, and written at or after ``since`` (a
    ``time.time()``; so that a run killed earlier does not show as running). Their records (step,
    steps, loss, members, diverged, time) with ``cell``, the folder's id; most recently written first."""
    from odecheck.experiments.runner import PROGRESS_FILE

    found = []
    for path in (Path(out) / "cells").glob(f"*/{PROGRESS_FILE}"):
        try:
            written = path.stat().st_mtime
            result = path.parent / "result.json"
            if result.exists() and result.stat().st_mtime >= written:
                continue
            rec = json.loads(path.read_text())
        except (OSError, ValueError):  # replaced or removed while we looked: the next look sees it
            continue
        if since is not None and rec.get("time", 0.0) < since:
            continue
        found.append({"cell": path.parent.name, **rec})
    return sorted(found, key=lambda r: -r.get("time", 0.0))


# ----------------------------------------------------------------------------- the sweep
def _on_dask(client, workers, scheduler, run) -> None:
    """``run(client)`` on the given client, or on one the sweep opens (a LocalCluster of ``workers`` or the
    scheduler's address) and closes after, with its LocalCluster."""
    given = client is not None
    cluster, client = _dask_client(client, workers, scheduler)
    try:
        run(client)
    finally:
        if not given:  # what the sweep opened, it closes: its client, and its LocalCluster
            client.close()
        if cluster is not None:
            cluster.close()


def sweep(spec, out: str | os.PathLike, *, client=None, workers: int | None = None, scheduler: str | None = None,
          progress: Meter | None = None, device: str = "cpu"):
    """Run every unfinished cell of ``spec`` (a SweepSpec, a dict or a TOML path) under ``out`` and
    return the table (a pandas DataFrame), also written to ``out/results.parquet``.

    Executor: in process (default); ``client``, a ``dask.distributed.Client``; ``workers=N``, a
    LocalCluster of N single-threaded processes, each with cores/N torch threads; ``scheduler``,
    the address of a running Dask scheduler. On Dask, cells that share a weight sample (a phase
    diagram's row) run as one task (``sample_groups``). ``device``: where each cell computes, "cpu"
    (default), "cuda", "cuda:N" or "auto" (resolved where the cell runs: on a Dask worker, by that
    worker). A cell's id does not depend on it: a cell finished on one device is not rerun on another. ``progress``: a meter of
    :mod:`odecheck.events` (task "sweep", "done" per cell with its rows, the cells found finished first).
    """
    pd = _pandas()
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.load(spec) if isinstance(spec, (str, os.PathLike)) else SweepSpec.from_dict(spec)
    check_executor(client=client, workers=workers, scheduler=scheduler)
    device = check_device(device, local=client is None and workers is None and scheduler is None)
    out = writable_folder("out", out)
    spec.write(out / "spec.json")
    cells = spec.cells()
    ids = [cell_id(spec.config(cell)) for cell in cells]
    results = {i: rows for i, cid in enumerate(ids) if (rows := _finished(out / "cells" / cid)) is not None}
    todo = [i for i in range(len(cells)) if i not in results]
    total = len(cells)
    for i in sorted(results):  # found finished on disk: done counts them all at once
        report(progress, "sweep", len(results), total, cells[i], "done", results[i])

    written = [time.monotonic()]

    def record(i: int, rows: list[dict]) -> None:
        results[i] = rows  # each cell's rows are already on disk (its result.json)
        if time.monotonic() - written[0] > TABLE_EVERY_S:  # the table grows as cells finish, not per cell:
            _write_table(pd, spec, cells, results, out)     # rewriting it each time is quadratic in cells
            written[0] = time.monotonic()
        report(progress, "sweep", len(results), total, cells[i], "done", rows)

    try:
        if todo and client is None and workers is None and scheduler is None:
            for i in todo:
                record(i, run_cell(spec.base, cells[i], str(out), save_weights=spec.save_weights, device=device))
        elif todo:
            _on_dask(client, workers, scheduler, lambda c: _run_on_dask(
                c, spec, cells, ids, todo, str(out.resolve()), _threads_per_worker(c), record, device))
    finally:  # an interrupted sweep still leaves the table of what finished
        table = _write_table(pd, spec, cells, results, out)
    return table


def check_executor(*, client=None, workers: int | None = None, scheduler: str | None = None) -> None:
    """Raise InvalidArgument unless at most one executor is named and ``workers`` is a positive integer."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise invalid("workers", workers, "a positive integer")
    if sum(x is not None for x in (client, workers, scheduler)) > 1:
        raise invalid("workers", workers, "one executor: client, workers or scheduler, not several")


# The model fields that enter the sampled weight stack (init.sample_stack's cache key): cells that agree
# on them share one sample. Only speed depends on this list; a field missing here splits no group wrongly,
# a field wrongly listed only merges cells that then sample anew.
SAMPLE_FIELDS = ("block", "depth", "dim", "width", "init", "init_scale", "ensemble", "seed")
TASKS_PER_WORKER = 4  # at least this many tasks per worker when a group would otherwise hold the whole grid


def sample_groups(spec: SweepSpec, cells: Sequence[dict], todo: Sequence[int], workers: int) -> list[list[int]]:
    """``todo`` cut into Dask tasks: cells that share a cached weight sample (smooth, fbm inits) run in
    one task, in the grid's order, so a worker samples a phase diagram's row once, not once per cell
    (20 s against 4 s a cell at [M25]'s paper scale); a group is split into pieces of at most
    ceil(len(todo) / (TASKS_PER_WORKER * workers)) cells so that every worker has work. Cells with
    other inits (sampled anew whatever the order) are a task each."""
    from odecheck.engine.init import CACHED_KINDS, as_init

    cap = max(1, -(-len(todo) // (TASKS_PER_WORKER * max(1, workers))))
    groups: dict[tuple, list[int]] = {}
    for i in todo:
        m = spec.config(cells[i]).model
        shared = as_init(m.init).kind in CACHED_KINDS  # other inits are sampled anew anyway: a task each
        groups.setdefault(tuple(getattr(m, f) for f in SAMPLE_FIELDS) if shared else (i,), []).append(i)
    return [g[j:j + cap] for g in groups.values() for j in range(0, len(g), cap)]


def run_cells(spec_base: dict, cells: Sequence[dict], out: str, threads: int | None = None,
              save_weights: bool = True, device: str = "cpu") -> list[list[dict[str, Any]]]:
    """One Dask task: ``run_cell`` on each cell in order, skipping a cell whose result is already on disk
    (a task rerun after its worker died redoes no finished cell)."""
    spec = SweepSpec(base=spec_base, axes=())
    rows = []
    for cell in cells:
        done = _finished(Path(out) / "cells" / cell_id(spec.config(cell)))
        rows.append(done if done is not None else run_cell(spec_base, cell, out, threads, save_weights, device))
    return rows


def check_device(device, *, local: bool = True) -> str:
    """``device`` as a string every executor can ship. In process (``local``) it must be usable here;
    for Dask workers (which may have the GPU this machine lacks) only its spelling is checked."""
    from odecheck.core.validation import parse_device, resolve_device

    if local:
        return str(resolve_device(device))
    return "auto" if device == "auto" else str(parse_device(device))


def _run_on_dask(client, spec, cells, ids, todo, out, threads, record, device) -> None:
    from dask.distributed import as_completed

    futures = {}
    for group in sample_groups(spec, cells, todo, _n_workers(client)):
        # the key is the group's cells: resubmitting a group that is still running reuses its task
        f = client.submit(run_cells, spec.base, [cells[i] for i in group], out, threads, spec.save_weights, device,
                          key=task_key([ids[i] for i in group]), pure=False)
        futures[f] = group
    for f in as_completed(list(futures)):
        for i, rows in zip(futures[f], f.result(), strict=True):
            record(i, rows)


def task_key(ids: Sequence[str]) -> str:
    """The Dask key of the task that runs the cells ``ids``."""
    return "odecheck-cells-" + hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]


def _n_workers(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _threads_per_worker(client) -> int:
    info = client.scheduler_info()
    ws = list(info.get("workers", {}).values())
    if not ws:
        return 1
    cores = os.cpu_count() or 1
    # workers on this machine share its cores; remote workers report their own thread counts
    local = [w for w in ws if w.get("host", "") in ("127.0.0.1", "localhost")]
    return max(1, cores // len(local)) if local else max(1, int(ws[0].get("nthreads", 1)))


def _dask_client(client, workers, scheduler):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise OdecheckError("Dask executors (--workers, --scheduler) need the dask extra: "
                            "pip install 'odecheck[dask]'") from None
    if client is not None:
        return None, client
    if scheduler is not None:
        try:
            return None, Client(scheduler, timeout=30)
        except OSError as e:
            raise invalid("scheduler", scheduler, f"the address of a running Dask scheduler ({e})") from None
    # no per-worker memory cap: Dask's default (the machine's memory / N) restarts a worker that holds a
    # large cell (m24-fig1's 2^14-deep reference) again and again, each time on another worker
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=0)
    return cluster, Client(cluster)


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise OdecheckError("odecheck sweep writes its table with pandas: pip install 'odecheck[sweep]'") from None
    return pd


def _write_table(pd, spec: SweepSpec, cells: Sequence[dict], results: dict[int, list[dict]], out: Path):
    rows = [r for i in sorted(results) for r in results[i]]
    cols = list(spec.fields) + list(METRICS)
    df = pd.DataFrame(rows, columns=cols)
    try:
        atomic_write(out / "results.parquet", lambda f: df.to_parquet(f, index=False))
    except ImportError:
        raise OdecheckError("results.parquet needs pyarrow: pip install 'odecheck[sweep]'") from None
    return df


def table_json(df) -> list[dict]:
    """The table's rows as JSON objects (NaN as null)."""
    return jsonable([{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                     for row in df.to_dict(orient="records")])


__all__ = ["STATUSES", "SweepSpec", "cell_id", "run_cell", "sweep", "table_json"]
