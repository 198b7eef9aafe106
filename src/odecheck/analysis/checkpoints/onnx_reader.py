"""ONNX models: their initializers are the weights (bfloat16 and float8 read exactly in float32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import TensorRef, open_optional


def read_onnx(path: Path) -> list[TensorRef]:
    import torch

    f = str(path)
    model = open_optional(f, "an ONNX model", "onnx", lambda onnx: onnx.load(f))
    from onnx import numpy_helper

    out = []
    for init in model.graph.initializer:
        shape = tuple(int(d) for d in init.dims)
        name = init.name if isinstance(init.name, str) else bytes(init.name).decode("utf-8", "backslashreplace")
        try:
            a = numpy_helper.to_array(init)
        except (ValueError, TypeError, KeyError) as e:  # raw data shorter than its dims, an unknown element type
            out.append(TensorRef(f, name, shape, str(init.data_type), None,
                                 f"unreadable initializer ({str(e).splitlines()[0][:80]})"))
            continue
        stored = str(a.dtype)
        if not np.issubdtype(a.dtype, np.floating) and a.dtype.name.startswith(("bfloat", "float")):
            a = a.astype(np.float32)  # bfloat16 and the float8 types (ml_dtypes): exact in float32
        if np.issubdtype(a.dtype, np.floating):
            out.append(TensorRef(f, name, tuple(a.shape), stored, torch.from_numpy(np.array(a, copy=True))))
        else:
            out.append(TensorRef(f, name, tuple(a.shape), str(a.dtype), None,
                                 f"dtype {a.dtype}: not a floating-point weight"))
    return out
