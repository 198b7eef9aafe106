"""Run part of `reproduce c21-fc --scale paper`: its settings, restricted to some delta modes, inits and a
largest depth, analysed and drawn as the reproduction does (the whole paper grid is 1056 cells up to
L = 9100: hours on a CPU). Resumable: cells already in OUT are reused.

    python scripts/c21_fc_subset.py OUT [--modes shared] [--inits xavier-depth] [--max-depth 1000]
        [--variant epochs|c21-shuffle] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from odecheck.reproduce import write_report
from odecheck.reproduce.c21 import c21_depths
from odecheck.reproduce.c21_fc import C21_FC_REPRODUCTION as REP
from odecheck.reproduce.c21_fc import INITS, MODES
from odecheck.sweeps import SweepSpec, sweep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--modes", nargs="+", default=["shared"], choices=list(MODES))
    ap.add_argument("--inits", nargs="+", default=["xavier-depth"], choices=list(INITS))
    ap.add_argument("--max-depth", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None, help="run the sweep on a Dask LocalCluster of N workers")
    ap.add_argument("--variant", default=None, choices=list(REP.variants), help="the code's epoch loop, with or "
                                                                                 "without its duplicating shuffle")
    args = ap.parse_args()
    spec = REP.variants[args.variant][0]("paper") if args.variant else REP.spec("paper")
    modes = spec["sweep"]["zip"][1]
    keep = [i for i, d in enumerate(modes["model.delta"]) if d in [MODES[m][0] for m in args.modes]]
    spec["sweep"]["zip"][1] = {k: [v[i] for i in keep] for k, v in modes.items()}
    spec["sweep"]["model.init"] = [INITS[i] for i in args.inits]
    spec["sweep"]["model.depth"] = c21_depths(3, args.max_depth)
    t0 = time.perf_counter()
    df = sweep(SweepSpec.from_dict(spec), args.out, workers=args.workers)
    report = write_report(REP, df, args.out, spec, t0=t0, label=f"c21-fc paper settings, modes {args.modes}, inits "
                          f"{args.inits}, L <= {args.max_depth}",
                          fields={"name": "c21-fc", "variant": args.variant,
                                  "scale": f"paper settings, modes {args.modes}, inits {args.inits}, depths "
                                           f"3..{args.max_depth}", "description": REP.description,
                                  "executor": f"LocalCluster({args.workers})" if args.workers else "in process",
                                  "device": "cpu"})
    print(json.dumps({r["id"]: (r["verdict"], r["estimate"], r["ci"]) for r in report["results"]}, indent=1))


if __name__ == "__main__":
    main()
