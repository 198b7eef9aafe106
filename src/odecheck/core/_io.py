"""The one I/O module: atomic writes (a reader never sees half a file), JSON without NaN (numpy values
converted, non-finite numbers as null)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a binary handle to ``path``'s temporary sibling (``<name>.tmp``), then rename it
    over ``path``: a reader sees the old file or the new one, never a partial one, and a crash leaves the
    old file. The folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def number(v) -> float | None:
    """A float for JSON: non-finite values (NaN, inf) become None (null)."""
    v = float(v)
    return v if np.isfinite(v) else None


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars as Python values, non-finite floats as None, keys as strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return number(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (:func:`jsonable`, no NaN) atomically; the folder is created if missing."""
    import json

    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically; the folder is created if missing."""
    atomic_write(path, lambda f: f.write(text.encode()))
