"""``odecheck reproduce``: the papers' headline figures, run on ``sweep``, decided as in ``verify``.

Each reproduction is a sweep spec per scale (``smoke``: seconds, in CI; ``paper``: the paper's
settings) and an analysis of the sweep's table (and of its cells' saved weights) into results:
an estimate with its interval, the error rate alpha, a verdict, and the paper's published value.
The figure draws the paper's result next to ours.

References
----------
[M24] Marion et al., ICLR 2024, Fig. 1, 2, Table 1.  [M25] Marion et al., JMLR 2025, Figs. 1, 3, 7.
[C21] Cohen et al., ICML 2021, sec. 4.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from odecheck.core._errors import invalid
from odecheck.core.events import Meter
from odecheck.experiments.reproduce.base import SCALES, Reproduction, Result
from odecheck.experiments.reproduce.c21 import C21_BETA_REPRODUCTION, c21_depths
from odecheck.experiments.reproduce.c21_cifar import C21_CIFAR_REPRODUCTION
from odecheck.experiments.reproduce.c21_fc import C21_FC_REPRODUCTION
from odecheck.experiments.reproduce.ccm26 import CCM26_REPRODUCTION
from odecheck.experiments.reproduce.lr_law import LR_LAW_REPRODUCTION
from odecheck.experiments.reproduce.m24 import M24_REPRODUCTIONS
from odecheck.experiments.reproduce.m25 import M25_REPRODUCTIONS
from odecheck.experiments.reproduce.s22 import S22_REPRODUCTION
from odecheck.experiments.reproduce.transfer import TRANSFER_REPRODUCTION

REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r for r in (*M24_REPRODUCTIONS, *M25_REPRODUCTIONS, C21_BETA_REPRODUCTION, C21_FC_REPRODUCTION,
                    C21_CIFAR_REPRODUCTION, TRANSFER_REPRODUCTION, CCM26_REPRODUCTION, S22_REPRODUCTION,
                    LR_LAW_REPRODUCTION)}


def reproduction_folder(out, name: str, scale: str, variant: str | None = None) -> Path:
    """Where ``reproduce(name, scale=scale, out=out, variant=variant)`` keeps its sweep, figure and report:
    OUT/NAME-SCALE, or OUT/NAME-VARIANT-SCALE for a variant."""
    return Path(out) / (f"{name}-{variant}-{scale}" if variant else f"{name}-{scale}")


def check_variant(name: str, variant: str | None) -> None:
    """Refuse a variant that reproduction ``name`` does not have, naming the argument."""
    variants = REPRODUCTIONS[name].variants
    if variant is not None and variant not in variants:
        raise invalid("variant", variant, f"one of {', '.join(variants)}" if variants
                      else f"none: {name} has no variants")


def check_reproduction(name: str, *, scale: str, client=None, workers=None, scheduler=None, device="cpu",
                       variant: str | None = None) -> str:
    """Check every argument of :func:`reproduce` (errors name them) before anything runs; the device as
    the executors ship it."""
    from odecheck.experiments.sweeps import check_device, check_executor

    if name not in REPRODUCTIONS:
        raise invalid("name", name, f"one of {', '.join(REPRODUCTIONS)}")
    if scale not in SCALES:
        raise invalid("scale", scale, "'smoke' or 'paper'")
    check_executor(client=client, workers=workers, scheduler=scheduler)
    device = check_device(device, local=client is None and workers is None and scheduler is None)
    check_variant(name, variant)
    return device


def reproduce(name: str, *, scale: str = "smoke", out: str | os.PathLike = "odecheck-reproduce", client=None,
              workers: int | None = None, scheduler: str | None = None,
              progress: Meter | None = None,
              device: str = "cpu", variant: str | None = None) -> dict[str, Any]:
    """Run reproduction ``name`` at ``scale`` on ``sweep`` under ``out/<name>-<scale>`` and return its
    JSON report (also written there as report.json, with report.md and figure.png). ``device``: where
    the cells compute (as in :func:`odecheck.sweep`); ``progress``: a meter of :mod:`odecheck.events` (the
    sweep's, task "sweep", or c21-cifar's own runs, task "reproduce"). ``variant``: one of the reproduction's other
    parametrizations (``m24-fig2``: ``script``), kept under ``out/<name>-<variant>-<scale>``."""
    from odecheck.experiments.sweeps import SweepSpec, sweep

    device = check_reproduction(name, scale=scale, client=client, workers=workers, scheduler=scheduler,
                                device=device, variant=variant)
    rep = REPRODUCTIONS[name]
    folder = reproduction_folder(out, name, scale, variant)
    t0 = time.perf_counter()
    spec = rep.variants[variant][0](scale) if variant else rep.spec(scale)
    if rep.run is not None:
        if client is not None or workers is not None or scheduler is not None:
            raise invalid("workers", workers or scheduler or "client", f"none: {name} trains in process (its "
                                                                        "networks are not engine models); use --device")
        df = rep.run(spec, folder, device=device, progress=progress)
    else:
        df = sweep(SweepSpec.from_dict(spec), folder, client=client, workers=workers, scheduler=scheduler,
                   progress=progress, device=device)
    executor = ("client" if client is not None else f"LocalCluster({workers})" if workers
                else f"scheduler {scheduler}" if scheduler else "in process")
    description = rep.description + (f"; variant {variant}: {rep.variants[variant][1]}" if variant else "")
    label = f"{name}{f' --variant {variant}' if variant else ''} ({rep.source}), {scale} scale"
    return write_report(rep, df, folder, spec, t0=t0, label=label,
                        fields={"name": name, "scale": scale, "variant": variant, "description": description,
                                "executor": executor, "device": device})


def write_report(rep: Reproduction, df, folder: Path, spec, *, t0: float, label: str, fields: dict) -> dict[str, Any]:
    """Analyse a finished study's table (``rep.analyse``), draw its figure (none without matplotlib) and write
    ``folder/report.json`` and ``report.md``; returns the report. ``t0``: ``time.perf_counter()`` when the study
    began; ``fields``: name, scale, variant, description, executor, device (and any further entries)."""
    from odecheck.core._io import write_json, write_text

    results, data = rep.analyse(df, folder, spec)
    seconds = time.perf_counter() - t0
    figure = None
    if data:
        try:
            figure = rep.figure(data, results, folder / "figure.png", label).name
        except ImportError:  # matplotlib is the optional [plot] extra
            figure = None
    report = {"name": fields["name"], "scale": fields["scale"], "variant": fields.get("variant"),
              "source": rep.source, "description": fields["description"], "seconds": round(seconds, 3),
              **{k: v for k, v in fields.items() if k not in ("name", "scale", "variant", "description")},
              "figure": figure, "results": [r.to_json() for r in results]}
    if "table" in data:
        report["table"] = data["table"]
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", _markdown(report))
    return report


def _markdown(rep: dict) -> str:
    lines = [f"# {rep['name']}: {rep['source']} ({rep['scale']} scale)", "", rep["description"] + ".", "",
             f"{rep['seconds']:.1f} s, executor: {rep['executor']}, device: {rep['device']}.", "",
             "| result | verdict | estimate | interval | alpha | paper |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rep["results"]:
        ci = "-" if r["ci"][0] is None else f"[{r['ci'][0]:.3g}, {r['ci'][1]:.3g}]"
        est = "-" if r["estimate"] is None else f"{r['estimate']:.3g}"
        lines.append(f"| `{r['id']}` | {r['verdict']} | {est} | {ci} | {r['alpha']} | {r['paper']} |")
    lines.append("")
    if rep.get("table"):
        lines += ["| activation | init | train (median, IQR) | test (median, IQR) | smooth | paper train / test, "
                  "smooth |", "| --- | --- | --- | --- | --- | --- |"]
        for t in rep["table"]:
            lines.append(f"| {t['activation']} | {t['init']} | {t['train_median']:.1f} [{t['train_iqr'][0]:.1f}, "
                         f"{t['train_iqr'][1]:.1f}] | {t['test_median']:.1f} [{t['test_iqr'][0]:.1f}, "
                         f"{t['test_iqr'][1]:.1f}] | {t['smooth']} | {t['paper_train']} / {t['paper_test']}, "
                         f"{t['paper_smooth']} |")
        lines.append("")
    lines += [f"- `{r['id']}`: {r['note']}" for r in rep["results"] if r["note"]]
    if rep["figure"]:
        lines += ["", f"![{rep['name']}]({rep['figure']})"]
    return "\n".join(lines) + "\n"


__all__ = ["REPRODUCTIONS", "SCALES", "Reproduction", "Result", "c21_depths", "check_reproduction", "check_variant",
           "reproduce", "write_report"]

