"""FP8 checkpoints (DeepSeek-V3 style): each ``w`` with its ``w_scale_inv`` of one factor per block, the block
size from the checkpoint's own metadata (``config.json``, the header), 128 x 128 by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import FP8_BLOCK, FP8_DTYPES, TensorRef
from odecheck.analysis.checkpoints.safetensors_reader import read_header
from odecheck.core._errors import InvalidArgument


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
        meta = read_header(path)[1].get("__metadata__") or {}
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


SCALE_SUFFIX = "_scale_inv"  # FP8 checkpoints (DeepSeek-V3 style): w.weight and its w.weight_scale_inv


def dequantize_fp8(refs: list[TensorRef]) -> list[TensorRef]:
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
