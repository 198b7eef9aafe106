"""Time odecheck analyze on large generated checkpoints (random bf16 weights, nothing downloaded).

    python scripts/bench_checkpoint.py path  DIR   # one 32 x 4096 x 4096 path (1 GiB safetensors)
    python scripts/bench_checkpoint.py 7b    DIR   # a sharded checkpoint shaped like a 7B model (13 GiB)
    python scripts/bench_checkpoint.py family DIR  # four such checkpoints of 8, 16, 24, 32 layers (34 GiB):
                                                   # odecheck.analyze over the family, families across depths

Generates the checkpoint under DIR if it is not there, then analyzes it in a fresh process and
prints wall time and peak resident memory (ru_maxrss of that process) as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

LAYERS, HIDDEN, FFN, VOCAB = 32, 4096, 11008, 32000


def _save(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))


def make_path(folder: Path) -> Path:
    import torch

    f = folder / "path-32x4096x4096.safetensors"
    if not f.exists():
        folder.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        _save({f"layers.{k}.w": torch.randn(HIDDEN, HIDDEN, generator=g).to(torch.bfloat16) for k in range(LAYERS)}, f)
    return f


def make_7b(folder: Path, layers: int = LAYERS) -> Path:
    """Llama-7B names and shapes: per layer q, k, v, o (4096 x 4096), gate, up (11008 x 4096), down
    (4096 x 11008), two norms (4096); embeddings and head (32000 x 4096); shards of 4 layers."""
    import torch

    index = folder / "model.safetensors.index.json"
    if index.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    shards = max(1, layers // 4)
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        for k in range(s * layers // shards, (s + 1) * layers // shards):
            p = f"model.layers.{k}."
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                tensors[p + f"self_attn.{proj}.weight"] = torch.randn(HIDDEN, HIDDEN, generator=g).to(torch.bfloat16)
            tensors[p + "mlp.gate_proj.weight"] = torch.randn(FFN, HIDDEN, generator=g).to(torch.bfloat16)
            tensors[p + "mlp.up_proj.weight"] = torch.randn(FFN, HIDDEN, generator=g).to(torch.bfloat16)
            tensors[p + "mlp.down_proj.weight"] = torch.randn(HIDDEN, FFN, generator=g).to(torch.bfloat16)
            tensors[p + "input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
            tensors[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        if s == 0:
            tensors["model.embed_tokens.weight"] = torch.randn(VOCAB, HIDDEN, generator=g).to(torch.bfloat16)
        if s == shards - 1:
            tensors["lm_head.weight"] = torch.randn(VOCAB, HIDDEN, generator=g).to(torch.bfloat16)
            tensors["model.norm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        _save(tensors, folder / name)
        weight_map.update({t: name for t in tensors})
        del tensors
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


FAMILY_CHILD = """
import json, resource, sys, time
import odecheck
t0 = time.perf_counter()
a = odecheck.analyze(sys.argv[1:])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": round(dt, 2), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "paths": len(a.paths), "families": len(a.report["families"]),
                  "limits": sorted({f["limit"] for f in a.report["families"]})}))
"""

CHILD = """
import json, resource, sys, time
from odecheck.checkpoints import analyze_checkpoint
t0 = time.perf_counter()
res = analyze_checkpoint(sys.argv[1])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": round(dt, 2), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
                  "paths": len(res["paths"]), "skipped": len(res["skipped"]), "tensors": res["tensors"],
                  "regimes": sorted({r["regime"] for r in res["paths"]})}))
"""


def main() -> None:
    what, folder = sys.argv[1], Path(sys.argv[2])
    t0 = time.perf_counter()
    if what == "family":
        targets = [str(make_7b(folder / f"layers{L}", layers=L)) for L in (8, 16, 24, 32)]
        made = time.perf_counter() - t0
        out = subprocess.run([sys.executable, "-c", FAMILY_CHILD, *targets], capture_output=True, text=True, check=True)
        print(json.dumps({"what": what, **json.loads(out.stdout), "generated_s": round(made, 1)}))
        return
    target = make_path(folder) if what == "path" else make_7b(folder)
    made = time.perf_counter() - t0
    out = subprocess.run([sys.executable, "-c", CHILD, str(target)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    res["generated_s"] = round(made, 1)
    print(json.dumps({"what": what, **res}))


if __name__ == "__main__":
    main()
