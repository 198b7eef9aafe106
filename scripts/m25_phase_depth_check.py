"""Does the m25-phase crossing at small H move towards beta = H with depth?

The paper spec of ``odecheck reproduce m25-phase`` with 10 draws instead of 50, at L = 100, 1000 and
10,000, for a few H rows and the betas around their crossing; the colour and crossing rule are
the reproduction's (median log10 ||h_L - h_0|| / ||h_0|| crossing 0, linear interpolation in beta).
Numbers and their reading: docs/reproductions.md, section m25-phase. About 15 minutes on 2 cores.

    python scripts/m25_phase_depth_check.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from odecheck.reproduce.m25 import _m25_phase_spec, boundary_crossing, median_log_ratio
from odecheck.sweeps import SweepSpec, sweep

# (depth, init, lowest beta, highest beta)
ROWS = [(L, init, 0.0, 0.75) for L in (100, 1000) for init in ("fbm(0.05)", "fbm(0.1)", "fbm(0.5)")] + \
       [(10000, "fbm(0.05)", 0.0, 0.3), (10000, "fbm(0.5)", 0.38, 0.6)]


def crossing(df, betas):
    med = [median_log_ratio(df[df["model.beta"] == b]["init_ratio"]) for b in betas]
    cross = boundary_crossing(betas, med)
    return (cross if np.isfinite(cross) else None), med


def main(out: Path) -> None:
    found = []
    for L, init, lo, hi in ROWS:
        spec = _m25_phase_spec("paper")
        spec["model"].update(depth=L, ensemble=10)
        betas = [b for b in spec["sweep"]["model.beta"] if lo <= b <= hi]
        spec["sweep"].update({"model.beta": betas, "model.init": [init]})
        t0 = time.time()
        df = sweep(SweepSpec.from_dict(spec), out / f"L{L}")
        cross, med = crossing(df, betas)
        found.append({"depth": L, "init": init, "crossing": cross, "betas": betas, "median_log10": med,
                      "seconds": time.time() - t0})
        print(f"L = {L}, {init}: crossing {cross}", flush=True)
        (out / "crossings.json").write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("m25-phase-depth-check"))
