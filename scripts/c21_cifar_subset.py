"""[C21]'s convolutional study (reproduce c21-cifar) on part of its grid, sized for a CPU: the code's
training settings (SGD 0.1, momentum, weight decay, cosine, batch 128, crops and flips) with narrower
stages and fewer epochs and depths than the paper scale. Resumable: rerun with the same OUT.

    python scripts/c21_cifar_subset.py OUT [--depths 8 12 18] [--seeds 3] [--epochs 120]
        [--widths 8 16 32 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from odecheck.reproduce import write_report
from odecheck.reproduce.c21_cifar import C21_CIFAR_REPRODUCTION as REP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 12, 18])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--widths", type=int, nargs=4, default=[8, 16, 32, 64])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    settings = {"depths": a.depths, "widths": a.widths, "epochs": a.epochs, "n_train": None, "seeds": a.seeds}
    t0 = time.perf_counter()

    def progress(e):
        row = e.result[0]
        print(f"{e.item}: {row['status']}, test accuracy {row['test_accuracy']:.3f}, {row['seconds']:.1f} s "
              f"({int(e.done)}/{int(e.total)}, {time.perf_counter() - t0:.0f} s)", flush=True)

    df = REP.run(settings, a.out, device=a.device, progress=progress)
    write_report(REP, df, a.out, settings, t0=t0, label=f"c21-cifar subset: depths {a.depths}, widths {a.widths}, "
                 f"{a.epochs} epochs, {a.seeds} seeds",
                 fields={"name": "c21-cifar", "scale": "subset", "description": REP.description
                         + f"; subset: {json.dumps(settings)}", "cell_seconds": float(df["seconds"].sum()),
                         "executor": f"in process, {a.threads} thread(s)", "device": a.device})
    print((a.out / "report.md").read_text())


if __name__ == "__main__":
    main()
