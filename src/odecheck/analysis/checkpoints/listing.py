"""Every tensor of a checkpoint file or folder, by content where the name does not say: one reader per
format, a folder one checkpoint only when an index or one set of shard names makes it one, links out of a
folder and special files refused unread."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from odecheck.analysis.checkpoints.fp8 import dequantize_fp8
from odecheck.analysis.checkpoints.gguf_reader import read_gguf
from odecheck.analysis.checkpoints.onnx_reader import read_onnx
from odecheck.analysis.checkpoints.refs import TensorRef, checkpoint_root
from odecheck.analysis.checkpoints.safetensors_reader import read_safetensors, read_sharded
from odecheck.analysis.checkpoints.torch_reader import read_torch
from odecheck.core._errors import InvalidArgument


def list_tensors(path: str | Path) -> list[TensorRef]:
    """Every tensor of a checkpoint file or folder, without loading any: the readable ones, and the others
    with the reason they are not read. FP8 weights come with their block scales applied."""
    return dequantize_fp8([t if t.name.isprintable() else replace(t, name=printable(t.name)) for t in _list_tensors(path)])


def printable(name: str) -> str:
    """A tensor name that prints anywhere: lone surrogates (valid in a JSON header, not in UTF-8) and control
    characters written as escapes."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _inside(folder: Path) -> None:
    """Refuse a checkpoint folder holding a link that leads out of it (a file it would read is then not the
    folder's; a Hub cache snapshot's links into its repository's blobs/ are its own): every entry resolved,
    before anything is read."""
    root = checkpoint_root(folder)
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
            return read_sharded(index[0])
        files = checkpoint_files(p)
        if len(files) > 1 and not is_shard_set(files):
            raise InvalidArgument(f"{p}: {len(files)} checkpoint files that are not one set of shards "
                                  f"({', '.join(q.name for q in files[:3])}{', ...' if len(files) > 3 else ''}): "
                                  "each is its own checkpoint (odecheck analyze FOLDER analyzes them one by one)")
        return [t for q in files for t in _list_tensors(q)]
    if p.name.endswith(".safetensors.index.json"):
        return read_sharded(p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(p)
    kind = sniff(p)  # the content decides where it can: a GGUF or safetensors file named .bin is read as one
    if suffix in (".pt", ".pth", ".bin") and kind not in ("gguf", "safetensors"):
        return read_torch(p)
    if suffix == ".onnx":
        return read_onnx(p)
    if kind == "gguf":
        return read_gguf(p)  # other names (.th, .pth.tar, .ckpt, none): recognized by content
    if kind == "safetensors":
        return read_safetensors(p)
    if kind == "torch":
        return read_torch(p)
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
