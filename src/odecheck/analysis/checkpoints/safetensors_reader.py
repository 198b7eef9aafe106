"""safetensors files, single or sharded: the header checked in full before any byte of data is read, the
tensors memory-mapped."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import MAX_TENSORS, ST_DTYPES, TensorRef, check_count, checkpoint_root
from odecheck.core._errors import InvalidArgument


def _unique_keys(pairs):
    """A JSON object whose keys are unique (a duplicate would silently replace an entry)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_header(path: Path) -> tuple[int, dict]:
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


def read_safetensors(path: Path) -> list[TensorRef]:
    f = str(path)
    try:
        n, header = read_header(path)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{f}: unreadable or corrupt safetensors ({e})") from None
    data = path.stat().st_size - 8 - n
    check_count(f, "tensors", len(header) - ("__metadata__" in header), MAX_TENSORS)
    out, spans = [], []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, a, b = _entry(f, name, info, data)
        spans.append((a, b, name))
        if dtype not in ST_DTYPES:  # named in the left-out list, never read
            out.append(TensorRef(f, name, shape, dtype, None, f"dtype {dtype}: not a floating-point weight"))
            continue
        if b - a != math.prod(shape) * np.dtype(ST_DTYPES[dtype]).itemsize:  # Python integers: no overflow
            raise InvalidArgument(f"{f}: tensor {name!r} has {b - a} bytes for shape {list(shape)} of {dtype}")
        out.append(TensorRef(f, name, shape, dtype, (f, 8 + n + a)))
    spans.sort()
    for (_, b0, n0), (a1, _, n1) in zip(spans, spans[1:], strict=False):
        if a1 < b0:
            raise InvalidArgument(f"{f}: tensors {n0!r} and {n1!r} overlap in the file")
    return out


def read_sharded(index: Path) -> list[TensorRef]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"{index}: unreadable safetensors index ({type(e).__name__})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InvalidArgument(f"{index}: unreadable safetensors index (weight_map is not names -> shard files)")
    shards = sorted(set(weight_map.values()))
    root = checkpoint_root(index.parent)
    outside = [s for s in shards if Path(s).is_absolute() or Path(s).name != s
               or root not in (index.parent / s).resolve().parents]
    if outside:  # a shard is a file beside its index: never follow a path out of the folder
        raise InvalidArgument(f"{index}: shard {outside[0]!r} is not a file in the index's folder")
    missing = [s for s in shards if not (index.parent / s).exists()]
    if missing:
        raise InvalidArgument(f"{index}: shard {missing[0]!r} is missing")
    return [t for s in shards for t in read_safetensors(index.parent / s) if weight_map.get(t.name) == s]
