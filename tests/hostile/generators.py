"""Hostile and odd checkpoint files, generated: valid files of every format cut at many lengths, with header
bytes overwritten, and headers edited field by field. The test tree keeps them (never the package)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def valid_files(folder: Path) -> dict[str, Path]:
    """One small valid checkpoint per format, 6 layers of 4 x 4."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    ws = {f"layers.{k}.w": rng.standard_normal((4, 4)).astype(np.float32) for k in range(6)}
    out = {}
    out["safetensors"] = folder / "v.safetensors"
    save_file(ws, out["safetensors"])
    out["torch"] = folder / "v.pt"
    torch.save({k: torch.from_numpy(v) for k, v in ws.items()}, out["torch"])
    out["legacy"] = folder / "v_legacy.pt"
    torch.save({k: torch.from_numpy(v) for k, v in ws.items()}, out["legacy"], _use_new_zipfile_serialization=False)
    out["npz"] = folder / "v.npz"
    np.savez(out["npz"], w=np.stack(list(ws.values())))
    try:
        import gguf

        w = gguf.GGUFWriter(str(folder / "v.gguf"), "llama")
        for k, v in ws.items():
            w.add_tensor(k.replace("layers.", "blk.").replace(".w", ".attn.weight"), v)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out["gguf"] = folder / "v.gguf"
    except ImportError:
        pass
    try:
        import onnx
        from onnx import helper, numpy_helper

        inits = [numpy_helper.from_array(v, name=k) for k, v in ws.items()]
        onnx.save(helper.make_model(helper.make_graph([], "g", [], [], initializer=inits)), folder / "v.onnx")
        out["onnx"] = folder / "v.onnx"
    except ImportError:
        pass
    return out


def truncations(path: Path, n: int) -> list[tuple[str, bytes]]:
    """The file cut at n lengths spread over it (never whole)."""
    data = path.read_bytes()
    cuts = sorted({int(x) for x in np.linspace(0, len(data) - 1, n)})
    return [(f"{path.name} cut at {c}", data[:c]) for c in cuts]


def overwrites(path: Path, n: int, seed: int) -> list[tuple[str, bytes]]:
    """The file with one byte of its first 200 replaced, at n positions."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    out = []
    for pos in sorted(rng.choice(min(200, len(data)), size=min(n, len(data)), replace=False)):
        d = bytearray(data)
        d[pos] = (d[pos] + 1 + int(rng.integers(254))) % 256
        out.append((f"{path.name} byte {pos} changed", bytes(d)))
    return out


def header_edits() -> list[tuple[str, dict | str]]:
    """safetensors headers edited field by field (as JSON objects or raw text)."""
    ok = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    cases = []
    for field, bad in (("dtype", 3), ("dtype", "F128"), ("dtype", None), ("shape", "2x2"), ("shape", [2, "2"]),
                       ("shape", [True, 2]), ("shape", [2, -2]), ("shape", [2 ** 62, 2 ** 62]), ("data_offsets", [0]),
                       ("data_offsets", [16, 0]), ("data_offsets", [0, 1 << 40]), ("data_offsets", [-16, 0]),
                       ("data_offsets", [0.5, 16]), ("data_offsets", None), ("data_offsets", [0, 16, 32])):
        cases.append((f"{field}={bad!r}", {"layers.0.w": {**ok, field: bad}}))
    for text in ("", "{", "null", "true", "[]", '"x"', "{}" + "x" * 10, '{"a": 1}', '{"__metadata__": 5}',
                 '{"a": {"dtype": "F32"}}', "{" * 5000):
        cases.append((f"header text {text[:20]!r}", text))
    return cases


def write_header_file(path: Path, header: dict | str, data: bytes = b"\0" * 16) -> Path:
    head = (header if isinstance(header, str) else json.dumps(header)).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + data)
    return path
