"""Weights trained by anyone: load layer-stacked paths from .npz or PyTorch state_dicts and analyze them.

A *path* is one weight family seen along depth: an array (L, ...) (or (R, L, ...) for ensembles).
In a state_dict, parameters named like ``layers.7.conv1.weight`` are grouped into the path
``layers.*.conv1.weight`` by dropping the layer index (see :mod:`odecheck.checkpoints`: layers whose
shape differs along a group form separate paths, and what cannot form one is reported).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.analysis.estimators import path_stats, scaling_exponent
from odecheck.core._errors import InvalidArgument, OdecheckError, invalid
from odecheck.core.events import report


@dataclass(frozen=True)
class WeightPath:
    file: str
    name: str
    array: np.ndarray  # (L, ...)
    member: int | None = None
    extra: dict | None = None  # further per-path results (--features: the network's Heun gain)


def _check_finite(file: str, name: str, a: np.ndarray) -> None:
    if not np.issubdtype(a.dtype, np.number):
        raise InvalidArgument(f"{file}: array {name!r} has dtype {a.dtype}, expected numbers")
    if not np.all(np.isfinite(a)):
        raise InvalidArgument(f"{file}: array {name!r} has NaN or inf weights")


def load_paths(file: str | Path, *, stacked: bool = False, key: str | None = None,
               skipped: list | None = None) -> list[WeightPath]:
    """Read every weight path of ``file`` (.npz, .pt, .pth). ``stacked``: npz arrays are (R, L, ...).
    ``skipped``: a list that receives the npz arrays left out (NaN or inf weights, no layer axis, not numbers),
    each with its reason, instead of the first of them failing the file; the file fails only when no path
    is left."""
    from odecheck.analysis.checkpoints import regular_file

    f = str(file)
    p = Path(file)
    if not p.exists():
        raise InvalidArgument(f"{f}: no such file")
    regular_file(p)
    left: list[dict] = []
    if _is_npz(p):
        paths = _load_npz(p, stacked, None if skipped is None else left)
    else:  # .pt, .pth, .bin, .safetensors, or any name whose content is a checkpoint (list_tensors says if not)
        paths = _load_torch(p)
    if key is not None:
        paths, left = [w for w in paths if key in w.name], [s for s in left if key in s["name"]]
        if not paths and not left:
            raise invalid("key", key, f"a part of a weight path's name in {f}")
    if skipped is not None:
        skipped += left
    if not paths:
        raise InvalidArgument(f"{f}: no weight path with a layer axis found" + (
            "; left out: " + "; ".join(f"{s['name']} {tuple(s['shape'])} ({s['reason']})" for s in left[:4])
            if left else ""))
    return paths


NPZ_BYTES = 1 << 29  # the most an npz's arrays may hold once inflated (512 MiB; read as float64 they take 2x)


def _npz_sizes(p: Path) -> None:
    """Refuse, before any array is read, an npz whose arrays inflate past NPZ_BYTES in all (a 3 MB file can
    hold a 3 GiB array) or whose array header declares more data than its member holds."""
    total = 0
    with zipfile.ZipFile(p) as z:
        for info in z.infolist():
            total += info.file_size
            if total > NPZ_BYTES:
                raise InvalidArgument(f"{p}: its arrays inflate to over {total} bytes (array {info.filename!r}: "
                                      f"{info.file_size} from {info.compress_size} compressed), more than the "
                                      f"{NPZ_BYTES} an npz may hold here")
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
                need = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if need > info.file_size:
                    raise InvalidArgument(f"{p}: array {info.filename!r} declares shape {shape} of {dtype} "
                                          f"({need} bytes) in a member of {info.file_size}")


def _load_npz(p: Path, stacked: bool, left: list | None = None) -> list[WeightPath]:
    """The npz's paths; an array that cannot be one fails the file, or with ``left`` is listed there."""
    from odecheck.analysis.checkpoints.listing import printable

    f = str(p)
    try:
        _npz_sizes(p)
        data = np.load(p, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except InvalidArgument:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError) as e:
        raise InvalidArgument(f"{f}: unreadable or corrupt npz ({type(e).__name__}: {str(e).split('.')[0]})") from None
    out = []
    families = arrays.pop("_layer_families", None)
    if families is not None:  # written by `odecheck train`: (R, L, ...) stacks named <tag>/<family>
        fams = {str(f) for f in np.atleast_1d(families)}
        arrays = {k: v for k, v in arrays.items() if k.rsplit("/", 1)[-1] in fams}
        stacked = True
    arrays = {printable(k): v for k, v in arrays.items()}  # names that print anywhere, as for checkpoints
    for name, a in arrays.items():
        need = 2 if stacked else 1
        try:
            if a.ndim < need or a.shape[1 if stacked else 0] < 2:
                raise InvalidArgument(f"{f}: array {name!r} of shape {a.shape} has no layer axis "
                                      f"(expected {'(R, L, ...)' if stacked else '(L, ...)'} with L >= 2)")
            _check_finite(f, name, a)
        except InvalidArgument as e:
            if left is None:
                raise
            left.append({"name": name, "layers": [], "shape": list(a.shape),
                         "reason": str(e).removeprefix(f"{f}: array {name!r} ")})
            continue
        if stacked:
            out += [WeightPath(f, name, a[r].astype(float), r) for r in range(a.shape[0])]
        else:
            out.append(WeightPath(f, name, a.astype(float)))
    return out


def _load_torch(p: Path) -> list[WeightPath]:
    """A state_dict's paths, materialized (for checkpoints larger than memory, use
    :func:`odecheck.checkpoints.analyze_checkpoint`, which reads them a chunk at a time)."""
    from odecheck.analysis.checkpoints import group_paths, list_tensors

    paths, skipped = group_paths(list_tensors(p))
    if not paths and skipped:
        raise InvalidArgument(f"{p}: no weight path along depth; left out: "
                              + "; ".join(f"{s['name']} {tuple(s['shape'])} ({s['reason']})" for s in skipped[:4]))
    out = []
    for cp in paths:
        a = np.stack([t.flat(0, t.size).reshape(t.shape) for t in cp.layers])
        _check_finite(str(p), cp.name, a)
        out.append(WeightPath(str(p), cp.name, a))
    return out


def _is_npz(p: Path) -> bool:
    """An .npz file, or a file of another name whose content is a numpy zip (checkpoint suffixes excluded)."""
    from odecheck.analysis.checkpoints import sniff

    suffix = p.suffix.lower()
    return suffix == ".npz" or (suffix not in (".pt", ".pth", ".bin", ".safetensors") and p.is_file()
                                and sniff(p) == "npz")


def analyze(paths: list[WeightPath], *, seed: int = 0) -> dict:
    """Per-path statistics and, for names seen at several depths, scaling exponents."""
    rows = []
    for w in paths:
        row = {"file": w.file, "name": w.name, **({"member": w.member} if w.member is not None else {}),
               **path_stats(w.array, seed=seed).to_json(), **(w.extra or {})}
        rows.append(row)
    return {"paths": rows, "scaling": scaling_across_depths(rows, seed=seed)}


FAMILY_MIN_DEPTHS = 3  # an interval from one network per depth needs a residual: three depths at least


def scaling_across_depths(rows: list[dict], *, seed: int = 0) -> list[dict]:
    """For path names seen at several depths: the exponents in L of the max increment, the max norm, and
    the max increment of the layer-normalized path (scale-free: what a weight feeding a normalization
    sees, and unmoved by weight decay's effect on scale). With at least 3 depths, each increment
    exponent also gets the family's limit (``limit``, estimators.decisions.limit_decision: slope interval
    below -3/4 'ode', inside (-3/4, -1/4) 'sde', above -1/4 'none'); the depth of a member of the
    family is the number of layers in its path."""
    from odecheck.analysis.checkpoints.paths import family_name
    from odecheck.analysis.estimators.decisions import limit_decision

    scaling = []
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(family_name(r["name"]), []).append(r)
    for name, rs in by_name.items():
        depths = sorted({r["depth"] for r in rs})
        if len(depths) < 2:
            continue
        for stat in ("max_increment", "max_norm", "max_normalized_increment"):
            if any(stat not in r for r in rs):
                continue
            per = [[r[stat] for r in rs if r["depth"] == L] for L in depths]
            R = min(len(v) for v in per)
            vals = np.array([v[:R] for v in per])
            if np.any(vals <= 0):
                continue
            fit = scaling_exponent(depths, vals, seed=seed)
            row = {"name": name, "statistic": stat, "exponent": fit.estimate, "ci": list(fit.ci), "depths": depths,
                   "interval": fit.method}
            if stat != "max_norm":
                row["limit"] = (limit_decision(fit.ci) if len(depths) >= FAMILY_MIN_DEPTHS else "inconclusive")
            scaling.append(row)
    return scaling


def feature_paths(run_dir: str | Path, *, inputs=None) -> list[WeightPath]:
    """Hidden-state paths k -> h_k (all samples' states of one member, (L+1, n q)) of the networks an
    ``odecheck train`` run saved (``final`` and every ``step<s>`` snapshot in weights.npz), on
    ``inputs`` (an (n, d) array or .npy file; default: the run's training inputs). Each path also carries its
    network's Heun gain ([S22], claim 12: Euler's reconstruction error of h_0 over Heun's on the network's
    weight nodes; about L^2 for weights smooth in depth, O(1) for rough ones) where the block has one."""
    import torch

    from odecheck.core.validation import check_dtype
    from odecheck.experiments.config import RunConfig
    from odecheck.experiments.runner import build_data, build_model

    d = Path(run_dir)
    if not (d / "config.toml").exists() or not (d / "weights.npz").exists():
        raise InvalidArgument(f"{d}: expected an `odecheck train` folder with config.toml and weights.npz "
                              "(--features reads the networks it saved)")
    cfg = RunConfig.load(d / "config.toml")
    dtype = check_dtype(cfg.model.dtype)
    data = build_data(cfg, dtype)
    if inputs is None:
        x = data.x
    else:
        try:
            arr = np.load(inputs, allow_pickle=False) if isinstance(inputs, (str, Path)) else np.asarray(inputs)
        except (OSError, ValueError) as e:
            raise invalid("inputs", str(inputs), f"a readable .npy file ({type(e).__name__})") from None
        if arr.ndim != 2 or arr.shape[1] != data.input_dim:
            raise invalid("inputs", f"<shape {arr.shape}>", f"an (n, {data.input_dim}) array")
        x = torch.as_tensor(arr, dtype=dtype)
    net = build_model(cfg, data)
    with np.load(d / "weights.npz", allow_pickle=False) as z:
        saved = {k: z[k] for k in z.files if "/" in k}
    tags = sorted({k.split("/", 1)[0] for k in saved}, key=lambda t: (t != "final", t))
    out = []
    for tag in tags:
        w = {k.split("/", 1)[1]: torch.as_tensor(v) for k, v in saved.items() if k.startswith(tag + "/")}
        net.load_weights_({k: v for k, v in w.items() if k in net.weights})
        H = net.hidden_states(x).double().cpu().numpy()  # (R, L+1, n, q)
        gains = _heun_gains(net, x)
        for r in range(H.shape[0]):
            path = H[r].reshape(H.shape[1], -1)
            _check_finite(str(d), f"features/{tag}", path)
            out.append(WeightPath(str(d), f"features/{tag}", path, r,
                                  None if gains is None else {"heun_gain": float(gains[r])}))
    return out


def _heun_gains(net, x):
    """The members' Heun gains on inputs x, or None where the block has none (conv, a trained delta, one layer)."""
    import torch

    from odecheck.analysis.estimators.discretization import heun_gain
    from odecheck.engine.blocks import get as get_block

    if not get_block(net.block).acts_on_vectors or net.delta_mode != "fixed" or net.depth < 2:
        return None
    return heun_gain(net.to(dtype=torch.float64), x.to(torch.float64)).cpu().numpy()


def families(scaling: list[dict]) -> list[dict]:
    """The scaling rows grouped per family: {name, depths, statistics: {stat: {exponent, ci, limit}}, limit},
    the family's limit being that of its normalized max increment where there is one (scale-free), else of
    its raw max increment."""
    out: dict[str, dict] = {}
    for s in scaling:
        fam = out.setdefault(s["name"], {"name": s["name"], "depths": s["depths"], "statistics": {}})
        fam["statistics"][s["statistic"]] = {k: s[k] for k in ("exponent", "ci", "limit", "interval") if k in s}
    for fam in out.values():
        st = fam["statistics"]
        key = "max_normalized_increment" if "max_normalized_increment" in st else "max_increment"
        fam["limit"] = st.get(key, {}).get("limit", "inconclusive")
        fam["limit_from"] = key
    return list(out.values())


def markdown(res: dict) -> str:
    """report.md of ``odecheck analyze --out``: the families first, then the paths, then what was left out."""
    def ci(c):
        return "-" if c[0] is None or c[0] != c[0] else f"[{c[0]:.3f}, {c[1]:.3f}]"

    lines = ["# odecheck analyze", ""]
    fams = res.get("families", [])
    if fams:
        lines += ["## Families across depths", "",
                  "Exponent of each statistic in the depth L (layers in the path), its 95 % interval, and the "
                  "family's limit from the increment exponent (below -3/4 `ode`, inside (-3/4, -1/4) `sde`, above "
                  "-1/4 `none`; at least 3 depths).", "",
                  "| family | depths | max increment | normalized max increment | max norm | limit |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for f in fams:
            st = f["statistics"]
            cell = [f"{st[k]['exponent']:.3f} {ci(st[k]['ci'])}" if k in st else "-"
                    for k in ("max_increment", "max_normalized_increment", "max_norm")]
            lines.append(f"| `{f['name']}` | {', '.join(map(str, f['depths']))} | " + " | ".join(cell)
                         + f" | {f['limit']} |")
        lines.append("")
    lines += ["## Paths, least regular first", "",
              "| file | path | L | max increment | normalized | Hurst [95 %] | regime | why |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["paths"]:
        why = r.get("regime_reason", "") if r["regime"] in ("mixed", "inconclusive") else ""
        star = " (feeds a norm)" if r.get("feeds_norm") else ""
        lines.append(f"| {Path(r['file']).name} | `{r['name']}` | {r['depth']} | {r['max_increment']:.3g} | "
                     f"{r.get('max_normalized_increment', float('nan')):.3g}{star} | {r['hurst']:.2f} {ci(r['hurst_ci'])} | "
                     f"{r['regime']} | {why} |")
    if res.get("skipped"):
        lines += ["", "## Left out", ""] + [f"- `{s['name']}` {tuple(s['shape'])}: {s['reason']}" for s in res["skipped"]]
    return "\n".join(lines) + "\n"


def analysis_figures(res: dict, folder: Path, *, per_path: bool = False) -> list[Path]:
    """analyze's figures: one per family across depths, one overview per file, and with ``per_path`` one
    per path (ImportError without matplotlib)."""
    from odecheck.presentation.plot import family_figures, file_overviews, path_figures

    written = family_figures(res["paths"], res["scaling"], folder) + file_overviews(res["paths"], folder)
    return written + (path_figures(res["paths"], folder) if per_path else [])


def write_report(res: dict, folder: str | os.PathLike) -> int | None:
    """Write report.json, report.md and the figures of :func:`analyze_files`'s result ``res`` into ``folder``;
    the number of figures, or None without matplotlib (the reports are written all the same)."""
    from odecheck.core._io import write_json, write_text

    folder = Path(folder)
    write_json(folder / "report.json", res)
    write_text(folder / "report.md", markdown(res))
    try:
        return len(analysis_figures(res, folder))
    except ImportError:
        return None


def analyze_files(files, *, key: str | None = None, stacked: bool = False, features: bool = False, inputs=None,
                  include_buffers: bool = False, seed: int = 0, progress=None) -> dict:
    """Everything ``odecheck analyze FILE ...`` computes, as data: {"families", "paths", "scaling",
    "skipped", "failed"}. ``files``: checkpoints (any format :func:`odecheck.checkpoints.list_tensors` reads,
    or .npz), Hub ids ``hf://org/name[@revision]`` and Hub cache folders (:mod:`odecheck.analysis.hub`), or,
    with ``features``, ``odecheck train`` folders; a file that fails is reported in ``failed``. ``progress``: a meter of :mod:`odecheck.events` (task
    "analyze", "start" per path of a checkpoint). Paths least regular first; families as :func:`families`."""
    from odecheck.analysis.checkpoints import analyze_checkpoint, least_regular_first

    rows: list[dict] = []
    skipped: list[dict] = []
    failed: list[dict] = []
    for label, f in _checkpoints(files, features):
        try:
            if isinstance(f, InvalidArgument):  # a Hub id or Hub cache folder that could not be resolved
                raise f
            if features:
                rows += analyze(feature_paths(f, inputs=inputs), seed=seed)["paths"]
            elif _is_npz(f):
                left: list[dict] = []
                rows += analyze(load_paths(f, stacked=stacked, key=key, skipped=left), seed=seed)["paths"]
                skipped += [{"file": str(f), **s} for s in left]
            else:
                res = analyze_checkpoint(f, key=key, seed=seed, include_buffers=include_buffers,
                                         on_path=None if progress is None else (
                                             lambda n, i, k, f=f: report(progress, "analyze", i, k, f"{f}: {n}", "start")))
                rows += res["paths"]
                skipped += [{"file": str(f), **s} for s in res["skipped"]]
        except InvalidArgument as e:  # this file's answer is its error; the other files are still analyzed
            failed.append({"file": label, "error": str(e), "argument": getattr(e, "argument", None)})
    if failed and not rows:
        first = failed[0]
        err = InvalidArgument(first["error"] + (f" (and {len(failed) - 1} more files failed)" if len(failed) > 1 else ""))
        err.argument = first["argument"]
        raise err
    rows.sort(key=least_regular_first)
    scaling = scaling_across_depths(rows, seed=seed)
    return {"families": families(scaling), "paths": rows, "scaling": scaling, "skipped": skipped,
            "failed": [{k: v for k, v in x.items() if k != "argument"} for x in failed]}


def _checkpoints(files, features: bool) -> list[tuple[str, Path | InvalidArgument]]:
    """(what the user named, what to analyze) one checkpoint at a time: each file, each Hub id and Hub cache
    folder as its snapshot, and each folder as one checkpoint when an index or one set of shard names makes it
    one, else each of its checkpoint files (never spliced into one); a name that cannot be resolved, with its
    error in place of the path."""
    from odecheck.analysis import hub
    from odecheck.analysis.checkpoints import checkpoint_files, is_shard_set

    out: list[tuple[str, Path | InvalidArgument]] = []
    for spec in map(str, files):
        try:
            f = hub.resolve(spec) if hub.is_hub_id(spec) else Path(spec)
            f = (hub.cache_snapshot(f) or f) if f.is_dir() else f
        except InvalidArgument as e:
            out.append((spec, e))
            continue
        if features or not f.is_dir() or any(f.glob("*.safetensors.index.json")):
            out.append((spec, f))
            continue
        try:
            inner = checkpoint_files(f)
        except InvalidArgument:
            out.append((spec, f))  # its error is reported as this folder's answer
            continue
        out += [(spec, f)] if len(inner) == 1 or is_shard_set(inner) else [(str(q), q) for q in inner]
    return out


@dataclass(frozen=True)
class Analysis:
    """:func:`analyze_weights`' result: one pandas DataFrame per table, and the report as JSON-ready data."""

    families: Any
    paths: Any
    skipped: Any
    report: dict


def analyze_weights(files, **options) -> Analysis:
    """``odecheck analyze`` from Python (exported as ``odecheck.analyze``): the families across depths (one
    row per family and statistic: exponent, interval, limit), the paths (one row each, least regular first)
    and what was left out, as pandas DataFrames (pandas is a dependency). Options as
    :func:`analyze_files`."""
    try:
        import pandas as pd
    except ImportError:
        raise OdecheckError("odecheck.analyze returns DataFrames: pip install pandas") from None
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    rep = analyze_files(files, **options)
    fam_rows = [{"family": f["name"], "depths": f["depths"], "statistic": stat, **st,
                 "family_limit": f["limit"]} for f in rep["families"] for stat, st in f["statistics"].items()]
    paths = pd.DataFrame([{k: v for k, v in r.items() if k not in ("increments", "norms", "local")} for r in rep["paths"]])
    return Analysis(pd.DataFrame(fam_rows), paths, pd.DataFrame(rep["skipped"]), rep)
