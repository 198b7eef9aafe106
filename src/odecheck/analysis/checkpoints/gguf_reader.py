"""GGUF files (llama.cpp): tensors dequantized a block of rows at a time by the ``gguf`` package; the types
it cannot dequantize, and integer tensors, listed as left out by name."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import (
    MAX_METADATA,
    MAX_TENSORS,
    GGUFSource,
    TensorRef,
    check_count,
    open_optional,
)
from odecheck.core._errors import InvalidArgument


def gguf_counts(path: Path) -> tuple[int, int]:
    """(tensors, metadata entries) a GGUF file's fixed header declares (magic, version, two counts), read before
    the gguf package builds anything for them; ValueError when the header is not GGUF's."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:4] != b"GGUF":
        raise ValueError("not a GGUF header")
    order = "<" if struct.unpack("<I", head[4:8])[0] < 0x10000 else ">"  # big-endian files carry a swapped version
    return struct.unpack(order + "QQ", head[8:24])


def read_gguf(path: Path) -> list[TensorRef]:
    f = str(path)
    try:
        tensors, metadata = gguf_counts(path)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{f}: unreadable or corrupt GGUF ({e})") from None
    check_count(f, "tensors", tensors, MAX_TENSORS)
    check_count(f, "metadata entries", metadata, MAX_METADATA)
    reader = open_optional(f, "a GGUF file", "gguf", lambda gguf: gguf.GGUFReader(path))
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
