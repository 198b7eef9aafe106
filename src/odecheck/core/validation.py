"""Argument validation shared by the library: one message shape, ``invalid(name, value, expected)``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from odecheck.core._errors import invalid


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise invalid(name, value, f"an integer >= {minimum}")
    return int(value)


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise invalid(name, value, f"one of {', '.join(map(repr, choices))}")
    return value


DType = Literal["float32", "float64"]
DTYPES: tuple[DType, ...] = get_args(DType)


def check_dtype(dtype) -> torch.dtype:
    """torch.float32 or torch.float64, from the dtype or its name in :data:`DTYPES`."""
    if dtype in ("float32", torch.float32):
        return torch.float32
    if dtype in ("float64", torch.float64):
        return torch.float64
    raise invalid("dtype", dtype, "torch.float32 or torch.float64")


def parse_device(device) -> torch.device:
    """The spelling of a device ('cpu', 'cuda', 'cuda:N', torch.device), whether or not it is visible here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise invalid("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise invalid("device", device, "'cpu' or 'cuda'")
    return dev


def resolve_device(device) -> torch.device:
    """'auto' -> cuda if available else cpu; validates 'cpu', 'cuda', 'cuda:N' and torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = parse_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise invalid("device", device, "a visible CUDA device (torch.cuda.is_available() is False)")
    return dev


def as_tensor(name: str, value, *, ndim: tuple[int, ...], dtype=None, device=None) -> torch.Tensor:
    """Convert array-likes to tensors, checking ndim and finiteness."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError):
            raise invalid(name, type(value).__name__, "an array or tensor") from None
    if t.ndim not in ndim:
        raise invalid(name, f"<tensor of shape {tuple(t.shape)}>", f"{' or '.join(map(str, ndim))} dimensions")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise invalid(name, f"<tensor of dtype {t.dtype}>", "a floating-point array")
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    if not torch.isfinite(t).all():
        raise invalid(name, "<tensor with NaN or inf entries>", "finite values")
    return t


def check_float(name: str, value, *, minimum: float | None = None) -> float:
    """A finite real number (not a bool), at least ``minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value) or (
            minimum is not None and value < minimum):
        raise invalid(name, value, "a finite float" + (f" >= {minimum}" if minimum is not None else ""))
    return float(value)


def writable_folder(name: str, path) -> Path:
    """``path`` as a folder that exists (created if missing) and can be written; else an error naming ``name``."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise invalid(name, str(out), f"a folder that can be created ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise invalid(name, str(out), "a writable folder")
    return out
