"""Tensors grouped into weight paths along depth, their statistics computed one column chunk at a time, and
the rows of ``analyze_checkpoint`` least regular first."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.analysis.checkpoints.listing import list_tensors
from odecheck.analysis.checkpoints.refs import CHUNK_ENTRIES, TensorRef
from odecheck.analysis.estimators.huge import HUGE, huge_exponent, scaled_back
from odecheck.analysis.estimators.regularity import PathStats
from odecheck.core._errors import InvalidArgument, invalid

_LAYER = re.compile(r"^(.*?)(?:^|\.)(\d+)\.(.+)$")


@dataclass(frozen=True)
class CheckpointPath:
    name: str
    layers: tuple[TensorRef, ...]
    indices: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layers[0].shape


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm's running statistics


def group_paths(tensors: list[TensorRef], *, include_buffers: bool = False) -> tuple[list[CheckpointPath], list[dict]]:
    """Paths along depth, and what was left out with why: tensors not read (their dtype), normalization
    buffers (unless ``include_buffers``), layers with an index that could not join a path."""
    groups: dict[str, dict[int, TensorRef]] = {}
    unread = []
    for t in tensors:
        if t.reason:
            unread.append({"name": t.name, "layers": [], "shape": list(t.shape), "reason": t.reason})
            continue
        if not include_buffers and t.name.rsplit(".", 1)[-1] in BUFFERS:
            unread.append({"name": t.name, "layers": [], "shape": list(t.shape),
                           "reason": "a BatchNorm buffer (running statistics), not a trained weight "
                                     "(include_buffers=True, --include-buffers on the command line, analyzes it)"})
            continue
        name = t.name[len("module."):] if t.name.startswith("module.") else t.name
        m = _LAYER.match(name)
        if m is None:
            continue
        prefix, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        groups.setdefault(f"{prefix}.*.{rest}" if prefix else f"*.{rest}", {})[idx] = t
    paths, skipped = [], unread
    for gname, layers in groups.items():
        idxs = sorted(layers)
        runs: list[list[int]] = []
        for i in idxs:  # consecutive layers of one shape
            if runs and layers[i].shape == layers[runs[-1][-1]].shape:
                runs[-1].append(i)
            else:
                runs.append([i])
        split = len(runs) > 1
        for run in runs:
            label = f"{gname}[{run[0]}:{run[-1] + 1}]" if split else gname
            if len(run) < 2:
                skipped.append({"name": label, "layers": run, "shape": list(layers[run[0]].shape),
                                "reason": "a single layer of this shape: no path along depth"})
                continue
            paths.append(CheckpointPath(label, tuple(layers[i] for i in run), tuple(run)))
    return paths, skipped


# ----------------------------------------------------------------------------- statistics, chunk by chunk
def path_statistics(path: CheckpointPath, *, level: float = 0.95, seed: int = 0,
                    chunk: int = CHUNK_ENTRIES) -> PathStats:
    """The :class:`~odecheck.estimators.PathStats` of a checkpoint path (the record ``path_stats`` gives for an
    array in memory), reading ``chunk`` columns of every layer at a time: memory (L x chunk) whatever the
    tensors' size. Small paths (< 8 entries per layer) are read whole and go through ``path_stats`` (its
    block bootstrap). A path with an entry above ``HUGE`` is read again as Z 2^-e (e the largest entry's binary
    exponent, found by a third pass), as ``path_stats`` computes it in memory: exact, nothing overflows."""
    from odecheck.analysis.estimators import path_stats

    L, P = len(path.layers), path.layers[0].size
    if P < 8 or L < 3:
        return replace(path_stats(_read(path, 0, P), seed=seed), shape=tuple(path.shape))
    try:
        sums = _streamed_sums(path, chunk)
    except _Huge:  # entries beyond HUGE: read again, every chunk scaled by 2^-e (exact), then scaled back
        e = huge_exponent(max(_largest(path, a, b) for a, b in _chunks(path, chunk)))
        return scaled_back(_stats_of_sums(path, _streamed_sums(path, chunk, e), level), e)
    return _stats_of_sums(path, sums, level)


class _Huge(Exception):
    """A chunk holds an entry above HUGE: the path is read again, scaled."""


def _chunks(path: CheckpointPath, chunk: int):
    """Column ranges of ``chunk`` entries, no narrower than the jackknife group count (a floor against tiny
    reads: the sums place any range's columns in their groups themselves)."""
    from odecheck.analysis.estimators.regularity import jackknife_groups

    P = path.layers[0].size
    step = max(jackknife_groups(P), chunk)
    return [(a, min(P, a + step)) for a in range(0, P, step)]


def _read(path: CheckpointPath, a: int, b: int) -> np.ndarray:
    Z = np.stack([t.flat(a, b) for t in path.layers])
    _finite(path, Z)
    return Z


def _largest(path: CheckpointPath, a: int, b: int) -> float:
    return float(np.abs(_read(path, a, b)).max())


def _streamed_sums(path: CheckpointPath, chunk: int, e: int | None = None):
    """The path's ``LagSums``, one chunk of columns at a time; ``e``: read every chunk as Z 2^-e. Unscaled,
    a chunk with an entry above HUGE raises ``_Huge``."""
    from odecheck.analysis.estimators.regularity import LagSums, dyadic_lags

    L = len(path.layers)
    sums = LagSums(L, path.layers[0].size, dyadic_lags(L))
    for a, b in _chunks(path, chunk):
        Z = _read(path, a, b)
        if e is not None:
            Z = np.ldexp(Z, -e)
        elif np.abs(Z).max() > HUGE:
            raise _Huge
        sums.add(Z, a)
    return sums


def _stats_of_sums(path: CheckpointPath, sums, level: float) -> PathStats:
    from odecheck.analysis.estimators.regularity import regime_from_sums

    L = len(path.layers)
    inc = np.sqrt(sums.increment2)
    norms = np.sqrt(sums.norm2)
    dec = regime_from_sums(sums, level)
    return PathStats(depth=L, shape=tuple(path.shape), max_increment=float(inc.max()),
                     quadratic_variation=float(sums.increment2.sum()), max_norm=float(norms.max()),
                     root_sum_squares=float(np.sqrt(sums.norm2.sum())), hurst=dec.hurst.estimate,
                     hurst_ci=tuple(dec.hurst.ci), regime=dec.regime, increments=tuple(inc.tolist()),
                     norms=tuple(norms.tolist()), regime_reason=dec.reason, local=tuple(dec.local),
                     max_normalized_increment=float(sums.normalized_increments().max()))


class NonFinite(InvalidArgument):
    """A path with NaN or inf weights: reported as left out, the file's other paths analyzed."""


def _finite(path: CheckpointPath, Z: np.ndarray) -> None:
    ok = np.isfinite(Z).all(axis=tuple(range(1, Z.ndim)))
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        raise NonFinite(f"{path.layers[0].file}: path {path.name!r} has NaN or inf weights (first in tensor "
                        f"{path.layers[k].name!r}, layer {path.indices[k]})")


NORM_WORDS = ("bn", "norm", "ln")  # BatchNorm, LayerNorm, RMSNorm, GroupNorm, `bn1`, `ln_1`, `LayerNorm`


def _is_norm(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1].lower()
    return any(w in leaf for w in NORM_WORDS)


def normalization_vector(name: str) -> bool:
    """Whether the path ``name`` is a normalization layer's own vector (a BatchNorm or LayerNorm weight or bias:
    its module, the name less its last part, is a normalization layer)."""
    base = re.sub(r"\[\d+:\d*\]$", "", name)  # a run [1:4], or a family of runs [1:]
    return "." in base and _is_norm(base.rsplit(".", 1)[0])


def feeds_normalization(name: str, tensor_names) -> bool:
    """Whether the weight path ``name`` (``prefix.*.module.weight``) feeds a normalization layer, read from
    the names around it at its first layer: ``convN`` followed by a sibling ``bnN`` / ``normN`` (ResNets),
    a module with a normalization sibling in the same parent (BERT's ``attention.output.dense`` and
    ``attention.output.LayerNorm``), or entry i of a Sequential whose entry i + 1 keeps BatchNorm running
    statistics (``downsample.0`` and ``downsample.1``). A pre-norm transformer's projections (the norm
    sits before them, at the layer's level) do not count."""
    names = [n[len("module."):] if n.startswith("module.") else n for n in tensor_names]
    base = re.sub(r"\[\d+:\d+\]$", "", name)
    if ".*." not in base and not base.startswith("*."):
        return False
    prefix, _, rest = base.partition("*.")
    module = rest.rsplit(".", 1)[0]  # e.g. conv1, attention.output.dense, downsample.0
    first = next((n for n in names if re.match(re.escape(prefix) + r"\d+\." + re.escape(rest) + "$", n)), None)
    if first is None or "." not in rest:
        return False
    layer = first[: len(first) - len(rest)]  # prefix + index + "."
    parent, _, leaf = module.rpartition(".")
    siblings = {n[len(layer) + len(parent) + (1 if parent else 0):].split(".", 1)[0]
                for n in names if n.startswith(layer + (parent + "." if parent else ""))}
    m = re.match(r"^conv(\d+)$", leaf)
    if m and any(_is_norm(s) and s.endswith(m.group(1)) for s in siblings):
        return True
    if leaf.isdigit():  # a Sequential: is entry i + 1 a BatchNorm?
        nxt = layer + (parent + "." if parent else "") + str(int(leaf) + 1) + "."
        return any(n.startswith(nxt) and n.endswith("running_var") for n in names)
    return not leaf[-1:].isdigit() and not _is_norm(leaf) and any(_is_norm(s) for s in siblings - {leaf}) and bool(parent)


REGULARITY_ORDER = {"none": 0, "sde": 1, "mixed": 2, "inconclusive": 3, "ode": 4}


def least_regular_first(row: dict) -> tuple[int, float]:
    """Sort key of analysis rows: by regime (none, sde, mixed, inconclusive, ode), then by Hurst exponent."""
    return REGULARITY_ORDER[row["regime"]], row["hurst"] if np.isfinite(row["hurst"]) else 9.0


def analyze_checkpoint(path: str | Path, *, key: str | None = None, level: float = 0.95, seed: int = 0,
                       chunk: int = CHUNK_ENTRIES, on_path=None, include_buffers: bool = False) -> dict[str, Any]:
    """Every path of a checkpoint file or folder: statistics and regime, least regular first
    (regime none, sde, mixed, inconclusive, ode; then by Hurst exponent), and what was left out, with
    why: tensors of an unsupported dtype, layers that form no path, paths with NaN or inf weights (the
    other paths are still analyzed)."""
    tensors = list_tensors(path)
    names = [t.name for t in tensors]
    paths, skipped = group_paths(tensors, include_buffers=include_buffers)
    if key is not None:
        paths = [p for p in paths if key in p.name]
        skipped = [s for s in skipped if key in s["name"]]
    if not paths:
        left = "; ".join(f"{s['name']} {tuple(s['shape'])} ({s['reason']})" for s in skipped[:4])
        left = f"; left out: {left}" if left else ""
        if key is not None:
            raise invalid("key", key, f"a part of a weight path's name in {path}{left}")
        raise InvalidArgument(f"{path}: no weight path with a layer axis found{left}")
    rows = []
    for i, p in enumerate(paths):
        try:
            stats = path_statistics(p, level=level, seed=seed, chunk=chunk)
        except NonFinite as e:  # this path is reported; the others are analyzed
            skipped.append({"name": p.name, "layers": list(p.indices), "shape": list(p.shape),
                            "reason": f"non-finite: {e}"})
            continue
        rows.append({"file": str(path), "name": p.name, "layers": list(p.indices), **stats.to_json(),
                     "feeds_norm": feeds_normalization(p.name, names)})
        if on_path is not None:
            on_path(p.name, i + 1, len(paths))
    rows.sort(key=least_regular_first)
    return {"paths": rows, "skipped": skipped, "tensors": len(tensors)}


__all__ = ["CheckpointPath", "TensorRef", "analyze_checkpoint", "group_paths", "list_tensors", "path_statistics"]


_RUN = re.compile(r"\[(\d+):\d+\]$")


def family_name(path_name: str) -> str:
    """The family of a path across depths: a run of a stage whose shape changes (``layer2.*.conv1.weight[1:4]``)
    belongs with the runs that start at the same layer in deeper networks (``[1:6]``, ``[1:9]``), so its end
    is dropped: ``layer2.*.conv1.weight[1:]``."""
    return _RUN.sub(r"[\1:]", path_name)
