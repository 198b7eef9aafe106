"""Writing files so that a reader never sees half of one: the one atomic write every module uses."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


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
