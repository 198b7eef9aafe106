"""One tensor of a checkpoint, not loaded (``TensorRef``), its byte layouts, and the optional packages'
openers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.core._errors import InvalidArgument

WRAPPERS = ("state_dict", "model", "model_state_dict", "net")
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8,
              "F8_E5M2": np.uint8}
FP8_DTYPES = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}  # safetensors name -> torch dtype name
CHUNK_ENTRIES = 1 << 20  # columns per chunk: (L, 2^20) float64 is 8 MiB per layer
# count limits of one file, checked from its header before anything is built for its entries: more tensors than
# any published checkpoint file holds (a 671B model has about 92,000 over all its shards), metadata likewise
MAX_TENSORS = 200_000
MAX_METADATA = 100_000


def check_count(f: str, what: str, count: int, limit: int) -> None:
    """Refuse a file whose header declares more ``what`` than ``limit``, naming the file."""
    if count > limit:
        raise InvalidArgument(f"{f}: its header declares {count} {what}, more than odecheck reads in one file "
                              f"({limit}); not a checkpoint this tool can analyze")


FP8_BLOCK = (128, 128)  # DeepSeek-V3's blocks, the format's default when the checkpoint does not say


def _block_scale(scale: np.ndarray, block: tuple[int, int], shape: tuple[int, ...], a: int, b: int) -> np.ndarray:
    """The dequantization factor of entries a..b of an FP8 matrix of ``shape`` (rows, cols) whose
    ``weight_scale_inv`` holds one factor per ``block`` = (block_rows, block_cols) of entries (the last
    blocks of a side that is not a multiple are partial): entry (i, j) is multiplied by
    scale[i // block_rows, j // block_cols]."""
    cols = int(np.prod(shape[1:]))
    idx = np.arange(a, b)
    return scale[(idx // cols) // block[0], (idx % cols) // block[1]]


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
            raw = np.memmap(path, dtype=ST_DTYPES[self.dtype], mode="r", offset=offset, shape=(self.size,))[a:b]
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


def open_optional(f: str, what: str, package: str, opener):
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


def checkpoint_root(folder: Path) -> Path:
    """The folder a checkpoint's files may resolve into: the folder itself, or for a Hugging Face cache
    snapshot (``models--org--name/snapshots/<sha>``) its repository folder, whose snapshot files are links
    into ``blobs/``."""
    folder = Path(folder).resolve()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return folder
