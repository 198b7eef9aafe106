"""GGUF files (llama.cpp): tensors dequantized a block of rows at a time by the ``gguf`` package; the types
it cannot dequantize, and integer tensors, listed as left out by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import GGUFSource, TensorRef, open_optional


def read_gguf(path: Path) -> list[TensorRef]:
    f = str(path)
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
