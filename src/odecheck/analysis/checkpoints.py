"""Checkpoints as people publish them: tensors listed without loading them, grouped into weight paths
along depth, and their statistics computed one column chunk at a time.

Formats: ``.safetensors`` (read here from its header and memory-mapped: no tensor is loaded until its
columns are needed), sharded safetensors (``model.safetensors.index.json``), ``.pt`` / ``.pth`` /
``.bin`` state_dicts (``torch.load(weights_only=True, mmap=True)``: tensors only, never arbitrary
objects; wrapped in ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}`` or
``{"net": ...}``; ``module.`` prefixes dropped) and a folder holding any of these.

Names are grouped into paths by their first dot-separated integer, the layer index:
``model.layers.12.self_attn.q_proj.weight`` -> ``model.layers.*.self_attn.q_proj.weight``. Within a
group, consecutive layers of one shape form a path (``layer2.*.conv1.weight[1:4]`` when the shape
changes along the stage); what cannot form a path (a single layer of its shape) is listed with the
reason, never dropped silently.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.analysis.estimators.regularity import PathStats
from odecheck.core._errors import InvalidArgument, invalid

_LAYER = re.compile(r"^(.*?)(?:^|\.)(\d+)\.(.+)$")
WRAPPERS = ("state_dict", "model", "model_state_dict", "net")
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8,
              "F8_E5M2": np.uint8}
FP8_DTYPES = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}  # safetensors name -> torch dtype name
CHUNK_ENTRIES = 1 << 20  # columns per chunk: (L, 2^20) float64 is 8 MiB per layer


FP8_BLOCK = (128, 128)  # DeepSeek-V3's blocks, the format's default when the checkpoint does not say


def _block_scale(scale: np.ndarray, block: tuple[int, int], shape: tuple[int, ...], a: int, b: int) -> np.ndarray:
    """The dequantization factor of entries a..b of an FP8 matrix of ``shape`` (rows, cols) whose
    ``weight_scale_inv`` holds one factor per ``block`` = (block_rows, block_cols) of entries (the last
    blocks of a side that is not a multiple are partial): entry (i, j) is multiplied by
    scale[i // block_rows, j // block_cols]."""
    cols = int(np.prod(shape[1:]))
    idx = np.arange(a, b)
    return scale[(idx // cols) // block[0], (idx % cols) // block[1]]


def fp8_block_size(file: str) -> tuple[tuple[int, int], str]:
    """The FP8 block (rows, cols) of a checkpoint file and where it was found: ``weight_block_size`` in the
    ``quantization_config`` of a ``config.json`` beside the file, else in the safetensors header's
    ``__metadata__``, else the format's default 128 x 128."""
    path = Path(file)
    try:
        cfg = json.loads((path.parent / "config.json").read_text())
        size = cfg.get("quantization_config", {}).get("weight_block_size")
    except (OSError, ValueError, AttributeError):
        size = None
    if size is not None:
        return _block_pair(size, f"{path.parent / 'config.json'}"), "config.json"
    try:
        meta = _read_header(path)[1].get("__metadata__") or {}
    except (OSError, ValueError, AttributeError):
        meta = {}
    if isinstance(meta, dict) and "weight_block_size" in meta:
        try:
            size = json.loads(meta["weight_block_size"])
        except (TypeError, ValueError):
            size = meta["weight_block_size"]
        return _block_pair(size, f"{file} __metadata__"), "header metadata"
    return FP8_BLOCK, "default 128 x 128"


def _block_pair(size, where: str) -> tuple[int, int]:
    try:
        br, bc = (int(x) for x in size)
        if br > 0 and bc > 0:
            return br, bc
    except (TypeError, ValueError):
        pass
    raise InvalidArgument(f"{where}: weight_block_size {size!r} is not two positive integers")


@dataclass(frozen=True)
class TensorRef:
    """One tensor of a checkpoint, not loaded: ``flat(a, b)`` reads entries a..b of it as float64."""

    file: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    source: Any = field(repr=False, compare=False)  # (path, byte offset) for safetensors, a tensor otherwise
    reason: str = ""  # why the tensor is not read (an unsupported dtype); empty for a readable one

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def flat(self, a: int, b: int) -> np.ndarray:
        if isinstance(self.source, GGUFSource):
            return self.source.read(a, b)
        if isinstance(self.source, tuple):
            path, offset = self.source[:2]
            raw = np.memmap(path, dtype=_ST_DTYPES[self.dtype], mode="r", offset=offset, shape=(self.size,))[a:b]
            if self.dtype == "BF16":  # bfloat16: the high half of a float32
                return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            if self.dtype in FP8_DTYPES:
                import torch

                vals = torch.from_numpy(np.array(raw)).view(getattr(torch, FP8_DTYPES[self.dtype])).double().numpy()
                if len(self.source) < 4:
                    return vals
                scale, block = self.source[2:4]
                return vals * _block_scale(scale, block, self.shape, a, b)
            return np.asarray(raw, dtype=np.float64)
        return self.source.reshape(-1)[a:b].double().numpy()


@dataclass(frozen=True)
class GGUFSource:
    """A tensor of a GGUF file (llama.cpp), dequantized a block of rows at a time: entries a..b of the
    logical (rows, cols) tensor need only the rows that hold them (quantization blocks run along a row)."""

    data: Any  # the reader's memory-mapped (rows, bytes or values per row) array
    qtype: Any
    cols: int

    def read(self, a: int, b: int) -> np.ndarray:
        from gguf.quants import dequantize

        r0, r1 = a // self.cols, -(-b // self.cols)
        raw = np.asarray(self.data[r0:r1])
        rows = (raw.view(np.float64) if self.qtype.name == "F64" else dequantize(raw, self.qtype)).reshape(-1)
        return rows[a - r0 * self.cols: b - r0 * self.cols].astype(np.float64)


def _open_optional(f: str, what: str, package: str, opener):
    """``opener(module)`` on an optional package's module: a missing package or an unreadable file is an error
    naming the file and what to install (the extra has the package's name)."""
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise InvalidArgument(f"{f}: reading {what} needs the {package} package: "
                              f"pip install 'odecheck[{package}]'") from None
    try:
        return opener(module)
    except Exception as e:  # noqa: BLE001 - a malformed file is a corrupt file for the user
        raise InvalidArgument(f"{f}: unreadable or corrupt, read as {what} ({type(e).__name__})") from None


def _gguf(path: Path) -> list[TensorRef]:
    f = str(path)
    reader = _open_optional(f, "a GGUF file", "gguf", lambda gguf: gguf.GGUFReader(path))
    out = []
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # GGML lists the fastest axis first
        cols = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        kind = t.tensor_type.name
        if kind in GGUF_INTEGERS:
            out.append(TensorRef(f, t.name, shape, kind, None, f"GGUF type {kind}: not a floating-point weight"))
            continue
        src = GGUFSource(t.data.reshape(shape[0] if len(shape) > 1 else 1, -1), t.tensor_type, cols)
        try:
            src.read(0, min(cols, 1))  # a type the gguf package cannot dequantize says so here, not mid-analysis
        except NotImplementedError:
            out.append(TensorRef(f, t.name, shape, kind, None, f"GGUF type {kind}: the gguf package has no "
                                 "dequantization for it"))
            continue
        out.append(TensorRef(f, t.name, shape, kind, src))
    return out


GGUF_INTEGERS = ("I8", "I16", "I32", "I64")


def _onnx(path: Path) -> list[TensorRef]:
    import torch

    f = str(path)
    model = _open_optional(f, "an ONNX model", "onnx", lambda onnx: onnx.load(f))
    from onnx import numpy_helper

    out = []
    for init in model.graph.initializer:
        shape = tuple(int(d) for d in init.dims)
        try:
            a = numpy_helper.to_array(init)
        except (ValueError, TypeError) as e:  # raw data shorter than its dims, an unknown element type
            out.append(TensorRef(f, init.name, shape, str(init.data_type), None,
                                 f"unreadable initializer ({str(e).splitlines()[0][:80]})"))
            continue
        stored = str(a.dtype)
        if not np.issubdtype(a.dtype, np.floating) and a.dtype.name.startswith(("bfloat", "float")):
            a = a.astype(np.float32)  # bfloat16 and the float8 types (ml_dtypes): exact in float32
        if np.issubdtype(a.dtype, np.floating):
            out.append(TensorRef(f, init.name, tuple(a.shape), stored, torch.from_numpy(np.array(a, copy=True))))
        else:
            out.append(TensorRef(f, init.name, tuple(a.shape), str(a.dtype), None,
                                 f"dtype {a.dtype}: not a floating-point weight"))
    return out


# ----------------------------------------------------------------------------- listing tensors
def _unique_keys(pairs):
    """A JSON object whose keys are unique (a duplicate would silently replace an entry)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_header(path: Path) -> tuple[int, dict]:
    """The header's length and the JSON header of a safetensors file (ValueError when it is not one: shorter
    than its header, a header longer than the file or 100 MB, not a JSON object, duplicate keys, nested
    too deep)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError("shorter than its header length")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, 100_000_000):
            raise ValueError(f"a header of {n} bytes in a file of {size}")
        try:
            header = json.loads(fh.read(n), object_pairs_hook=_unique_keys)
        except RecursionError:
            raise ValueError("a header nested too deep") from None
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    return n, header


def _entry(f: str, name: str, info, data: int) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, start, end) of one header entry, every field checked: a dtype string, a shape of
    non-negative integers, two integer offsets with 0 <= start <= end <= the data section's ``data`` bytes."""
    def ints(v):
        return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)

    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or not ints(info.get("shape")) \
            or not ints(info.get("data_offsets")) or len(info["data_offsets"]) != 2:
        raise InvalidArgument(f"{f}: tensor {name!r} has a malformed header entry (dtype a string, shape and "
                              "data_offsets lists of integers)")
    shape, (a, b) = tuple(info["shape"]), info["data_offsets"]
    if any(x < 0 for x in shape):
        raise InvalidArgument(f"{f}: tensor {name!r} has a negative dimension {list(shape)}")
    if not 0 <= a <= b <= data:
        raise InvalidArgument(f"{f}: tensor {name!r} has data_offsets [{a}, {b}] outside the data section "
                              f"(0..{data} bytes; truncated?)")
    return info["dtype"], shape, a, b


def _safetensors(path: Path) -> list[TensorRef]:
    f = str(path)
    try:
        n, header = _read_header(path)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{f}: unreadable or corrupt safetensors ({e})") from None
    data = path.stat().st_size - 8 - n
    out, spans = [], []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, a, b = _entry(f, name, info, data)
        spans.append((a, b, name))
        if dtype not in _ST_DTYPES:  # named in the left-out list, never read
            out.append(TensorRef(f, name, shape, dtype, None, f"dtype {dtype}: not a floating-point weight"))
            continue
        if b - a != math.prod(shape) * np.dtype(_ST_DTYPES[dtype]).itemsize:  # Python integers: no overflow
            raise InvalidArgument(f"{f}: tensor {name!r} has {b - a} bytes for shape {list(shape)} of {dtype}")
        out.append(TensorRef(f, name, shape, dtype, (f, 8 + n + a)))
    spans.sort()
    for (_, b0, n0), (a1, _, n1) in zip(spans, spans[1:], strict=False):
        if a1 < b0:
            raise InvalidArgument(f"{f}: tensors {n0!r} and {n1!r} overlap in the file")
    return out


SCALE_SUFFIX = "_scale_inv"  # FP8 checkpoints (DeepSeek-V3 style): w.weight and its w.weight_scale_inv


def _dequantize(refs: list[TensorRef]) -> list[TensorRef]:
    """FP8 tensors with a ``<name>_scale_inv`` beside them are read multiplied by it, block by block; the
    scales themselves are not weights (left out, named)."""
    by_name = {t.name: t for t in refs}
    blocks: dict[str, tuple[tuple[int, int], str]] = {}  # per file: its FP8 block and where it was found
    out = []
    for t in refs:
        if t.name.endswith(SCALE_SUFFIX) and by_name.get(t.name[: -len(SCALE_SUFFIX)], t).dtype in FP8_DTYPES:
            out.append(TensorRef(t.file, t.name, t.shape, t.dtype, None,
                                 f"the dequantization scale of {t.name[: -len(SCALE_SUFFIX)]!r}, applied to it"))
            continue
        sc = by_name.get(t.name + SCALE_SUFFIX) if t.dtype in FP8_DTYPES else None
        if sc is not None and t.file not in blocks:
            blocks[t.file] = fp8_block_size(t.file)
        out.append(t if sc is None else _scaled(t, sc, *blocks.get(t.file, (FP8_BLOCK, ""))))
    return out


def _scaled(t: TensorRef, sc: TensorRef, block: tuple[int, int], origin: str) -> TensorRef:
    """FP8 tensor ``t`` with its block scales ``sc`` attached, or left out (named, with the reason) when the
    scale grid does not match the shape and the checkpoint's block: ceil(rows / block_rows) x
    ceil(cols / block_cols) factors."""
    if len(t.shape) < 2:
        return TensorRef(t.file, t.name, t.shape, t.dtype, None, f"an FP8 tensor of shape {list(t.shape)} with "
                         "block scales: a block-scaled FP8 weight is a matrix")
    rows, cols = t.shape[0], int(np.prod(t.shape[1:]))
    grid = (-(-rows // block[0]), -(-cols // block[1]))
    if tuple(sc.shape) != grid:
        return TensorRef(t.file, t.name, t.shape, t.dtype, None,
                         f"FP8 scale grid {t.name + SCALE_SUFFIX!r} of shape {list(sc.shape)} does not match the "
                         f"shape {list(t.shape)} in blocks of {block[0]} x {block[1]} ({origin}): expected "
                         f"{list(grid)}")
    scale = sc.flat(0, sc.size).reshape(grid)
    return TensorRef(t.file, t.name, t.shape, t.dtype, (*t.source[:2], scale, block))


def _torch_extras() -> list:
    """What training scripts save beside a state_dict and ``weights_only`` may rebuild (torch's allow-list):
    numpy scalars and their dtypes (an epoch, a best accuracy) and an argparse Namespace (the run's
    arguments). Nothing else is unpickled."""
    import argparse

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return [scalar, np.dtype, *dtypes, argparse.Namespace]


def _torch(path: Path) -> list[TensorRef]:
    import torch

    f = str(path)
    try:
        with torch.serialization.safe_globals(_torch_extras()):
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) checkpoints cannot be memory-mapped
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file for the user
        raise InvalidArgument(f"{f}: unreadable or corrupt PyTorch checkpoint ({type(e).__name__}); only "
                              "tensors are loaded (weights_only=True)") from None
    for wrapper in WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise InvalidArgument(f"{f}: expected a state_dict (a dict of tensors), got {type(sd).__name__}")
    return [_torch_ref(f, str(name), t) for name, t in sd.items() if isinstance(t, torch.Tensor)]


def _torch_ref(f: str, name: str, t) -> TensorRef:
    """One tensor of a state_dict (keys of any type named by their text; a Parameter read without its
    gradient), or left out with the reason: sparse or meta tensors have no dense data to read."""
    shape, dtype = tuple(t.shape), str(t.dtype)
    why = ("a sparse tensor: not a dense weight" if t.layout != __import__("torch").strided else
           "a meta tensor: no data was saved" if t.is_meta else
           "" if t.is_floating_point() else f"dtype {dtype.replace('torch.', '')}: not a floating-point weight")
    return TensorRef(f, name, shape, dtype, None, why) if why else TensorRef(f, name, shape, dtype, t.detach())


def list_tensors(path: str | Path) -> list[TensorRef]:
    """Every tensor of a checkpoint file or folder, without loading any: the readable ones, and the others
    with the reason they are not read. FP8 weights come with their block scales applied."""
    return _dequantize([t if t.name.isprintable() else replace(t, name=_printable(t.name)) for t in _list_tensors(path)])


def _printable(name: str) -> str:
    """A tensor name that prints anywhere: lone surrogates (valid in a JSON header, not in UTF-8) and control
    characters written as escapes."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _inside(folder: Path) -> None:
    """Refuse a checkpoint folder holding a link that leads out of it (a file it would read is then not the
    folder's): every entry resolved, before anything is read."""
    root = folder.resolve()
    for q in folder.iterdir():
        if q.is_symlink() and root not in q.resolve().parents:
            raise InvalidArgument(f"{q}: a link to {q.resolve()}, outside the checkpoint's folder {folder}: refused")


_SHARD = re.compile(r"^(.*?)-(\d+)-of-(\d+)(\.[\w.]+)$")


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoint files of a folder (by suffix or by content), after refusing any link out of it."""
    _inside(folder)
    files = sorted(q for q in folder.iterdir() if q.is_file() and (
        q.suffix.lower() in (".safetensors", ".pt", ".pth", ".bin", ".onnx")
        or sniff(q) in ("torch", "safetensors", "gguf")))
    if not files:
        raise InvalidArgument(f"{folder}: no .safetensors, .pt, .pth, .bin, .onnx or GGUF file in this folder")
    return files


def is_shard_set(files: list[Path]) -> bool:
    """Whether ``files`` are one checkpoint's shards by their names: PREFIX-K-of-N.SUFFIX with one prefix,
    suffix and N, and every K from 1 to N once."""
    parts = [_SHARD.match(q.name) for q in files]
    if not all(parts):
        return False
    keys = {(m.group(1), m.group(3), m.group(4)) for m in parts}
    if len(keys) != 1:
        return False
    n = int(next(iter(keys))[1])
    return sorted(int(m.group(2)) for m in parts) == list(range(1, n + 1))


def regular_file(p: Path) -> None:
    """Refuse, before opening it, a path that is neither a folder nor a regular file (a FIFO would block the
    read forever, a device never ends)."""
    import stat

    mode = p.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidArgument(f"{p}: not a regular file or folder (a FIFO, socket or device): refused unread")


def _list_tensors(path: str | Path) -> list[TensorRef]:
    p = Path(path)
    if not p.exists():
        raise InvalidArgument(f"{p}: no such file or folder")
    regular_file(p)
    if p.is_dir():
        index = sorted(p.glob("*.safetensors.index.json"))
        if index:
            return _sharded(index[0])
        files = checkpoint_files(p)
        if len(files) > 1 and not is_shard_set(files):
            raise InvalidArgument(f"{p}: {len(files)} checkpoint files that are not one set of shards "
                                  f"({', '.join(q.name for q in files[:3])}{', ...' if len(files) > 3 else ''}): "
                                  "each is its own checkpoint (odecheck analyze FOLDER analyzes them one by one)")
        return [t for q in files for t in _list_tensors(q)]
    if p.name.endswith(".safetensors.index.json"):
        return _sharded(p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return _safetensors(p)
    kind = sniff(p)  # the content decides where it can: a GGUF or safetensors file named .bin is read as one
    if suffix in (".pt", ".pth", ".bin") and kind not in ("gguf", "safetensors"):
        return _torch(p)
    if suffix == ".onnx":
        return _onnx(p)
    if kind == "gguf":
        return _gguf(p)  # other names (.th, .pth.tar, .ckpt, none): recognized by content
    if kind == "safetensors":
        return _safetensors(p)
    if kind == "torch":
        return _torch(p)
    raise InvalidArgument(f"{p}: not a checkpoint odecheck reads (by its content: neither safetensors, GGUF nor a "
                          "torch.save file, zip or legacy pickle); expected .safetensors, .pt, .pth, .bin, .gguf, "
                          ".onnx or .npz")


def sniff(path: Path) -> str | None:
    """'torch' for a torch.save file (a zip holding a data.pkl, or a legacy pickle), 'safetensors' for a
    safetensors file (8-byte header length, then a JSON object), 'npz' for a numpy zip, else None."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return None
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        return "npz" if names and all(n.endswith(".npy") for n in names) else None
    if head[:1] == b"\x80":  # a pickle, protocol 2 or newer: torch.save's legacy format
        return "torch"
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return None


def _sharded(index: Path) -> list[TensorRef]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"{index}: unreadable safetensors index ({type(e).__name__})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InvalidArgument(f"{index}: unreadable safetensors index (weight_map is not names -> shard files)")
    shards = sorted(set(weight_map.values()))
    folder = index.parent.resolve()
    outside = [s for s in shards if Path(s).is_absolute() or (folder / s).resolve().parent != folder]
    if outside:  # a shard is a file beside its index: never follow a path out of the folder
        raise InvalidArgument(f"{index}: shard {outside[0]!r} is not a file in the index's folder")
    missing = [s for s in shards if not (index.parent / s).exists()]
    if missing:
        raise InvalidArgument(f"{index}: shard {missing[0]!r} is missing")
    return [t for s in shards for t in _safetensors(index.parent / s) if weight_map.get(t.name) == s]


# ----------------------------------------------------------------------------- grouping into paths
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
    block bootstrap)."""
    from odecheck.analysis.estimators import path_stats
    from odecheck.analysis.estimators.regularity import LagSums, dyadic_lags, regime_from_sums

    L, P = len(path.layers), path.layers[0].size
    if P < 8 or L < 3:
        Z = np.stack([t.flat(0, P) for t in path.layers])
        _finite(path, Z)
        return replace(path_stats(Z, seed=seed), shape=tuple(path.shape))
    lags = dyadic_lags(L)
    sums = LagSums(L, P, lags)
    step = max(sums.G, chunk)
    for a in range(0, P, step):
        b = min(P, a + step)
        Z = np.stack([t.flat(a, b) for t in path.layers])
        _finite(path, Z)
        sums.add(Z, a)
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
