"""Weights trained by anyone: load layer-stacked paths from .npz or PyTorch state_dicts and analyze them.

A *path* is one weight family seen along depth: an array (L, ...) (or (R, L, ...) for ensembles).
In a state_dict, parameters named like ``layers.7.conv1.weight`` are grouped into the path
``layers.*.conv1.weight`` by dropping the layer index; shapes must agree across layers.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._errors import InvalidArgument
from .estimators import path_stats, scaling_exponent

_LAYER = re.compile(r"^(.*?)(?:^|\.)(\d+)\.(.+)$")


@dataclass(frozen=True)
class WeightPath:
    file: str
    name: str
    array: np.ndarray  # (L, ...)
    member: int | None = None


def _check_finite(file: str, name: str, a: np.ndarray) -> None:
    if not np.issubdtype(a.dtype, np.number):
        raise InvalidArgument(f"{file}: array {name!r} has dtype {a.dtype}, expected numbers")
    if not np.all(np.isfinite(a)):
        raise InvalidArgument(f"{file}: array {name!r} has NaN or inf weights")


def load_paths(file: str | Path, *, stacked: bool = False, key: str | None = None) -> list[WeightPath]:
    """Read every weight path of ``file`` (.npz, .pt, .pth). ``stacked``: npz arrays are (R, L, ...)."""
    f = str(file)
    p = Path(file)
    if not p.exists():
        raise InvalidArgument(f"{f}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        paths = _load_npz(p, stacked)
    elif suffix in (".pt", ".pth"):
        paths = _load_torch(p)
    else:
        raise InvalidArgument(f"{f}: unknown file type {suffix!r}; expected .npz, .pt or .pth")
    if key is not None:
        paths = [w for w in paths if key in w.name]
        if not paths:
            raise InvalidArgument(f"{f}: no weight path matches --key {key!r}")
    if not paths:
        raise InvalidArgument(f"{f}: no weight path with a layer axis found")
    return paths


def _load_npz(p: Path, stacked: bool) -> list[WeightPath]:
    f = str(p)
    try:
        data = np.load(p, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InvalidArgument(f"{f}: unreadable or corrupt npz ({type(e).__name__}: {str(e).split('.')[0]})") from None
    out = []
    families = arrays.pop("_layer_families", None)
    if families is not None:  # written by `odecheck train`: (R, L, ...) stacks named <tag>/<family>
        fams = {str(f) for f in np.atleast_1d(families)}
        arrays = {k: v for k, v in arrays.items() if k.rsplit("/", 1)[-1] in fams}
        stacked = True
    for name, a in arrays.items():
        need = 2 if stacked else 1
        if a.ndim < need or a.shape[1 if stacked else 0] < 2:
            raise InvalidArgument(f"{f}: array {name!r} of shape {a.shape} has no layer axis "
                                  f"(expected {'(R, L, ...)' if stacked else '(L, ...)'} with L >= 2)")
        _check_finite(f, name, a)
        if stacked:
            out += [WeightPath(f, name, a[r].astype(float), r) for r in range(a.shape[0])]
        else:
            out.append(WeightPath(f, name, a.astype(float)))
    return out


def _load_torch(p: Path) -> list[WeightPath]:
    import torch

    f = str(p)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file for the user
        raise InvalidArgument(f"{f}: unreadable or corrupt PyTorch checkpoint ({type(e).__name__})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise InvalidArgument(f"{f}: expected a state_dict (a dict of tensors), got {type(sd).__name__}")
    groups: dict[str, dict[int, np.ndarray]] = {}
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        m = _LAYER.match(name)
        if m is None:
            continue
        prefix, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        gname = f"{prefix}.*.{rest}" if prefix else f"*.{rest}"
        groups.setdefault(gname, {})[idx] = t.detach().double().numpy()
    out = []
    for gname, layers in groups.items():
        if len(layers) < 2:
            continue
        idxs = sorted(layers)
        shapes = {layers[i].shape for i in idxs}
        if len(shapes) > 1:
            first = layers[idxs[0]].shape
            bad = next(i for i in idxs if layers[i].shape != first)
            raise InvalidArgument(f"{f}: path {gname!r} has mismatched shapes across layers: layer {idxs[0]} "
                                  f"{tuple(first)} vs layer {bad} {tuple(layers[bad].shape)}")
        a = np.stack([layers[i] for i in idxs])
        _check_finite(f, gname, a)
        out.append(WeightPath(f, gname, a))
    return out


def analyze(paths: list[WeightPath], *, seed: int = 0) -> dict:
    """Per-path statistics and, for names seen at several depths, scaling exponents."""
    rows = []
    for w in paths:
        s = asdict(path_stats(w.array, seed=seed))
        row = {"file": w.file, "name": w.name, **({"member": w.member} if w.member is not None else {}), **s}
        row["shape"] = list(row["shape"])
        row["hurst_ci"] = list(row["hurst_ci"])
        rows.append(row)
    scaling = []
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    for name, rs in by_name.items():
        depths = sorted({r["depth"] for r in rs})
        if len(depths) < 2:
            continue
        for stat in ("max_increment", "max_norm"):
            per = [[r[stat] for r in rs if r["depth"] == L] for L in depths]
            R = min(len(v) for v in per)
            vals = np.array([v[:R] for v in per])
            if np.any(vals <= 0):
                continue
            fit = scaling_exponent(depths, vals, seed=seed)
            scaling.append({"name": name, "statistic": stat, "exponent": fit.estimate, "ci": list(fit.ci),
                            "depths": depths})
    return {"paths": rows, "scaling": scaling}
