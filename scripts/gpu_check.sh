#!/usr/bin/env bash
# One prepared run of every CUDA path on a lent GPU (issue: GPU), within a few minutes of device time.
# Each step writes its result into $OUT as soon as it has it, so a later step that times out loses
# nothing. On a machine without CUDA every GPU step says so and is skipped (tried on the CPU that way).
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Steps: (1) the CUDA tests; (2) verify --budget quick on cuda against the committed CPU run
# (docs/gpu/verify-cpu-quick.json, same seed): the largest relative difference of every estimate;
# (3) bench on cuda at L = 1024, R = 16 and 64; (4) 3 steps of one paper-scale m24-table1 cell on cuda,
# timed, to size the full table.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
has_cuda=$(python -c "import torch; print(int(torch.cuda.is_available()))")
DEVICE=${GPU_CHECK_DEVICE:-cuda}  # GPU_CHECK_DEVICE=cpu runs steps 2-4 on the CPU: a dry run of the script
python -c "import torch, json; print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(),
  'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))" > "$OUT/device.json"
cat "$OUT/device.json"

echo "== 1. CUDA tests"
python -m pytest -m cuda -q -p no:cacheprovider tests 2>&1 | tail -3 | tee "$OUT/pytest-cuda.txt"

if [ "$has_cuda" != "1" ] && [ "$DEVICE" = "cuda" ]; then
  echo "no CUDA device: steps 2-4 skipped" | tee "$OUT/skipped.txt"
  exit 0
fi

echo "== 2. verify --device $DEVICE --budget quick, against the committed CPU run"
timeout 300 odecheck verify --device "$DEVICE" --budget quick --json "$OUT/verify-cuda-quick.json" --out "$OUT/verify" \
  > "$OUT/verify.log" 2>&1; echo "verify rc $?"
python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
cpu = {c["id"]: c for c in json.load(open("docs/gpu/verify-cpu-quick.json"))["claims"]}
gpu = {c["id"]: c for c in json.load(open(f"{out}/verify-cuda-quick.json"))["claims"]}
rows = []
for cid, c in cpu.items():
    g = gpu.get(cid)
    if g is None or c["estimate"] is None or g["estimate"] is None:
        rows.append({"claim": cid, "cpu": c["estimate"], "cuda": None if g is None else g["estimate"]})
        continue
    rel = abs(g["estimate"] - c["estimate"]) / max(abs(c["estimate"]), 1e-12)
    rows.append({"claim": cid, "cpu": c["estimate"], "cuda": g["estimate"], "rel_diff": rel,
                 "verdicts": [c["verdict"], g["verdict"]]})
worst = max((r.get("rel_diff", 0.0) for r in rows), default=0.0)
json.dump({"largest_relative_difference": worst, "claims": rows}, open(f"{out}/verify-compare.json", "w"), indent=1)
print("largest relative difference of an estimate, cuda against cpu:", worst)
PY

echo "== 3. bench on $DEVICE"
timeout 240 odecheck bench --device "$DEVICE" --depths 1024 --ensemble 16 --ensemble 64 --json "$OUT/bench-cuda.json" \
  2>&1 | tail -8; echo "bench rc $?"

echo "== 4. 3 steps of a paper-scale m24-table1 cell on $DEVICE"
timeout 180 python - "$OUT" "$DEVICE" <<'PY'
import json, sys, time, tempfile
from pathlib import Path
from odecheck.reproduce import REPRODUCTIONS
from odecheck.sweeps import SweepSpec
from odecheck import runner
from dataclasses import replace
spec = SweepSpec.from_dict(REPRODUCTIONS["m24-table1"].spec("paper"))
cfg = spec.config(spec.cells()[0])
full = cfg.train.steps
cfg = replace(cfg, train=replace(cfg.train, steps=3, snapshots=(0,), checkpoint_every=3))
t0 = time.perf_counter()
runner.run(cfg, Path(tempfile.mkdtemp()), device=sys.argv[2], save_weights=False)
dt = time.perf_counter() - t0
rec = {"device": sys.argv[2], "seconds_for_3_steps": dt, "full_steps": full, "cells": len(spec.cells()),
       "estimated_table_seconds": dt / 3 * full * len(spec.cells())}
json.dump(rec, open(f"{sys.argv[1]}/m24-table1-3-steps.json", "w"), indent=1)
print(rec)
PY
echo "done: $OUT"
