"""The ``odecheck`` command. The only module that prints or writes files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from ._io import write_json

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Verify what deep residual networks become as depth grows: neural ODE, SDE, or nothing.")


@app.callback()
def _root(
    threads: int | None = typer.Option(
        None, "--threads", envvar="ODECHECK_THREADS", show_envvar=True,
        help="Torch CPU threads for this command (default: torch's, one per core). On a machine other jobs "
             "keep busy, fewer threads than cores avoid spinning threads: see docs/performance.md."),
) -> None:
    """odecheck: property-based checks of the depth limits of residual networks."""
    if threads is None:
        return
    if threads < 1:
        _fail(f"--threads {threads}: expected an integer >= 1")
    import torch

    torch.set_num_threads(threads)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _as_flags(err, flags: dict[str, str]) -> str:
    """A library error in the command line's words: the argument's name replaced by its flag."""
    msg = str(err)
    name = getattr(err, "argument", None)
    if name in flags and msg.startswith(f"{name}="):
        return f"{flags[name]} {msg[len(name) + 1:]}"
    return msg


@app.command()
def train(
    config: Path | None = typer.Argument(None, help="TOML config; omitted: the built-in [M24] default."),
    out: Path = typer.Option(Path("runs/default"), "--out", help="Run directory (resumed if it exists)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
) -> None:
    """Train an ensemble from a TOML config, with checkpoints; rerun to resume."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ._errors import InvalidArgument
    from .config import RunConfig
    from .runner import check, run, summarize

    console = Console(stderr=True)
    try:
        cfg = RunConfig.load(config) if config is not None else RunConfig()
        check(cfg, device=device)  # data and model are valid before any progress bar is drawn
        with Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console, transient=False) as prog:
            task = prog.add_task("train", total=cfg.train.steps, loss="-")

            def cb(t, total, loss):
                prog.update(task, completed=t, loss=f"{np.nanmedian(loss):.4g}")

            net, traj, resumed = run(cfg, out, device=device, progress=cb)
    except InvalidArgument as e:
        _fail(str(e))
        return
    if resumed:
        console.print(f"resumed from step {resumed}")
    sm = summarize(cfg, net, traj)
    inc = ("no increments (depth 1)" if sm.increments_of.startswith("none") else
           f"max_k,t ||Z_k+1 - Z_k|| median {np.nanmedian(sm.max_increment):.4g}" if sm.increments_of == "steps" else
           f"max_k ||Z_k+1 - Z_k|| of the final weights, median {np.median(sm.max_increment):.4g}")
    typer.echo(f"trained {net.ensemble} networks of depth {net.depth} for {traj.steps} steps; "
               f"final loss median {np.nanmedian(sm.final_loss):.4g}; {inc}; diverged {int(traj.diverged.sum())}")
    if cfg.train.loss == "cross_entropy":
        line = f"accuracy median over members: train {np.median(sm.train_accuracy):.4f}"
        if np.isfinite(sm.test_accuracy).all():
            line += f", test {np.median(sm.test_accuracy):.4f} (per member: {np.round(sm.test_accuracy, 4).tolist()})"
        typer.echo(line)
    typer.echo(f"wrote {out}/config.toml, trajectory.npz, weights.npz")


def _check_writable_file(option: str, path: Path) -> None:
    """Fail (exit 2) unless ``path`` can be written: its folder is created if missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"{option} {path}: cannot create its folder ({e.strerror})")
    if not os.access(path.parent, os.W_OK) or path.is_dir():
        _fail(f"{option} {path}: not a writable file path")


@app.command()
def verify(
    budget: str = typer.Option("standard", help="quick | standard | thorough"),
    claims: str | None = typer.Option(None, help="Comma-separated claim ids (default: all nine)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, help="Seed of every statistical sample (derived per claim)."),
    out: Path = typer.Option(Path("odecheck-report"), help="Directory for report.md, report.json and figures."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    resume: bool = typer.Option(True, help="Reuse verdicts already in OUT/report.json with the same budget, "
                                           "seed and device."),
) -> None:
    """Run the claims of the theory and decide each one with its evidence and error control."""

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ._errors import InvalidArgument
    from .claims import REGISTRY
    from .render import verify_table
    from .verification import verify as run_verify

    ids = list(REGISTRY) if not claims else [c.strip() for c in claims.split(",") if c.strip()]
    flags = {"budget": "--budget", "claims": "--claims", "device": "--device", "out": "--out"}
    if json_file is not None:  # checked before any claim runs, not after
        _check_writable_file("--json", json_file)
    console = Console(stderr=True)
    # progress bars on a terminal; elsewhere (CI logs, nohup) one plain line per finished claim
    live = console.is_terminal
    report_name = "report.json"
    with Progress(TextColumn("{task.description:<26}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, disable=not live) as prog:
        tasks: dict[str, Any] = {}

        def start(cid, i, total):
            if not tasks:
                tasks.update({c: prog.add_task(c, total=1.0, status="queued") for c in ids})
            prog.update(tasks[cid], status="running")

        def done(v, reused):
            status = f"{v['verdict']} (from {report_name})" if reused else v["verdict"]
            prog.update(tasks[v["id"]], completed=1.0, status=status)
            if not live:
                est = "n/a" if v["estimate"] is None else f"{v['estimate']:.4g}"
                n_done = sum(1 for t in prog.tasks if t.completed >= 1.0)
                typer.echo(f"[{n_done}/{len(ids)}] {v['id']}: {status}, estimate {est}, {v['seconds']:.1f} s",
                           err=True)

        try:
            rep = run_verify(ids, budget=budget, seed=seed, device=device, out=out, resume=resume,
                             on_claim_start=start, on_progress=lambda cid, f: prog.update(tasks[cid], completed=f),
                             on_claim_done=done)
        except InvalidArgument as e:
            _fail(_as_flags(e, flags))
            return
    verdicts, dev = rep["claims"], rep["device"]
    figures = [v for v in verdicts if v.get("figure")]
    report_path = out / report_name
    if json_file is not None:
        write_json(json_file, rep)
    table = verify_table(verdicts, title=f"odecheck verify (budget {budget}, device {dev}, seed {seed})")
    Console(width=max(Console().width, 120)).print(table)
    typer.echo(f"wrote {out / 'report.md'}, {report_path} and {len(figures)} figures")
    mismatched = [v["id"] for v in verdicts if v["verdict"] != v["expected"]]
    if mismatched:
        typer.echo(f"verdicts differing from the expected outcome: {', '.join(mismatched)}")


def _analysis_figures(res: dict, folder: Path, *, per_path: bool = False) -> list[Path]:
    """analyze's figures: one per family across depths, one overview per file, and with ``per_path`` one
    per path (ImportError without matplotlib)."""
    from .plot import family_figures, file_overviews, path_figures

    written = family_figures(res["paths"], res["scaling"], folder) + file_overviews(res["paths"], folder)
    return written + (path_figures(res["paths"], folder) if per_path else [])


@app.command()
def analyze(
    files: list[Path] = typer.Argument(..., help=".npz (arrays (L, ...)), .safetensors (single or a sharded "
                                                 "folder / index.json), .pt/.pth/.bin state_dicts, or a folder."),
    key: str | None = typer.Option(None, help="Only paths whose name contains KEY."),
    stacked: bool = typer.Option(False, help="npz arrays are (R, L, ...) ensembles."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    figures: Path | None = typer.Option(None, "--figures", help="Folder for a figure per family across depths "
                                                                "and an overview per file."),
    path_figures: bool = typer.Option(False, "--path-figures", help="With --figures: also one figure per path "
                                                                    "(each statistic against the layer index)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap intervals (paths with fewer than 8 entries)."),
    features: bool = typer.Option(False, "--features", help="For `odecheck train` folders: the hidden states "
                                                            "k -> h_k of the saved networks instead of weights."),
    inputs: Path | None = typer.Option(None, "--inputs", help="With --features: an (n, d) .npy input batch "
                                                              "(default: the run's training inputs)."),
    include_buffers: bool = typer.Option(False, "--include-buffers", help="Also analyze BatchNorm running "
                                                                          "statistics (left out by default)."),
    out_dir: Path | None = typer.Option(None, "--out", help="Write report.md, report.json, a figure per family "
                                                            "across depths and an overview figure per file here."),
) -> None:
    """Regularity and scaling of weights that anyone trained: ODE, SDE or neither? Families first, then the
    least regular paths."""
    from rich.console import Console

    from ._errors import InvalidArgument
    from .analyze import analyze_files
    from .render import print_analysis

    if json_file is not None:
        _check_writable_file("--json", json_file)
    console = Console(stderr=True)
    try:
        with console.status("reading") as status:
            res = analyze_files(files, key=key, stacked=stacked, features=features, inputs=inputs,
                                include_buffers=include_buffers, seed=seed,
                                on_path=lambda f, name, i, n: status.update(f"{f}: path {i}/{n} {name}"))
    except InvalidArgument as e:
        _fail(_as_flags(e, {"key": "--key", "inputs": "--inputs"}))
        return
    print_analysis(res, Console(width=max(Console().width, 120)))
    if figures is not None:
        try:
            written = _analysis_figures(res, figures, per_path=path_figures)
        except ImportError:
            _fail("--figures needs matplotlib: pip install 'odecheck[plot]'")
            return
        typer.echo(f"wrote {len(written)} figures to {figures}")
    if json_file is not None:
        write_json(json_file, res)
    if out_dir is not None:
        from ._io import atomic_write
        from .analyze import markdown

        write_json(out_dir / "report.json", res)
        text = markdown(res)
        atomic_write(out_dir / "report.md", lambda f: f.write(text.encode()))
        try:
            n = len(_analysis_figures(res, out_dir))
        except ImportError:
            n = 0
            console.print("figures need matplotlib: pip install 'odecheck[plot]'")
        typer.echo(f"wrote {out_dir}/report.md, report.json and {n} figures")


@app.command()
def bench(
    device: str = typer.Option("cpu", help="cpu | cuda"),
    depths: list[int] = typer.Option([64, 256, 1024], "--depths", help="Depths L (repeat the option)."),
    ensemble: list[int] = typer.Option([16], "--ensemble", help="Ensemble sizes R (repeat the option)."),
    repeat: int = typer.Option(5, help="Timed repetitions per measurement (median reported)."),
    baseline_max_depth: int = typer.Option(1024, help="Skip the (slow) baseline above this depth."),
    recompute: int | None = typer.Option(None, help="Engine keeps one state per RECOMPUTE layers "
                                                       "(bounded memory)."),
    isa: list[str] = typer.Option([], "--isa", help="Fused-kernel builds to time (repeat): native, avx512, avx2, "
                                                    "sse2, scalar. Default: native, plus avx2 on an AVX-512 CPU."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
) -> None:
    """Time the engine against a per-layer nn.ModuleList baseline on the [M24] workload."""
    from rich.console import Console

    from ._errors import InvalidArgument
    from .bench import check_bench, run_bench
    from .render import bench_tables

    try:
        dev = check_bench(depths, ensemble, device, recompute=recompute, variants=list(isa))
    except InvalidArgument as e:
        _fail(_as_flags(e, {"depths": "--depths", "ensembles": "--ensemble", "recompute": "--recompute",
                            "variants": "--isa", "device": "--device"}))
        return
    if json_file is not None:
        _check_writable_file("--json", json_file)
    console = Console(stderr=True)
    with console.status("benchmarking") as status:
        # the JSON is written after each row (the last write is the whole report): an interrupted
        # run keeps the rows it finished
        res = run_bench(depths, ensemble, dev, repeat=repeat, baseline_max_depth=baseline_max_depth,
                        recompute=recompute, variants=list(isa) or None, progress=lambda msg: status.update(msg),
                        on_result=None if json_file is None else lambda partial: write_json(json_file, partial))
    for table in bench_tables(res, cpu=dev.type == "cpu"):
        Console(width=max(Console().width, 100)).print(table)


@app.command()
def falsify(
    claim: str = typer.Argument(..., help="Claim id (tied-init-lipschitz, iid-init-rough, pl-overparameterized, "
                                          "init-scaling-regimes)."),
    widen: list[str] = typer.Option([], "--widen", help="Field to widen beyond the claim's scope (repeatable)."),
    max_examples: int = typer.Option(25, help="Configurations to try before shrinking."),
    json_file: Path | None = typer.Option(None, "--json", help="Write configuration and evidence here."),
    replay_config: str | None = typer.Option(None, "--replay", help="JSON configuration to re-check."),
) -> None:
    """Search outside a claim's proven scope for a minimal configuration where it fails."""
    import json

    from rich.console import Console

    from ._errors import InvalidArgument

    try:
        from .falsify import falsify as search
        from .falsify import replay
    except ImportError:
        _fail("odecheck falsify needs hypothesis: pip install 'odecheck[test]'")
        return
    console = Console(stderr=True)
    if json_file is not None:
        _check_writable_file("--json", json_file)
    try:
        if replay_config is not None:
            try:
                cfg = json.loads(replay_config)
            except ValueError:
                _fail("--replay: not valid JSON")
                return
            ev = replay(claim, cfg)
            typer.echo(f"{claim} on {json.dumps(cfg, sort_keys=True)}: {ev.verdict}")
            typer.echo(json.dumps(ev.to_json(), indent=2))
            if json_file is not None:
                write_json(json_file, {"claim": claim, "config": cfg, "verdict": ev.verdict, "evidence": ev.to_json()})
            return
        with console.status(f"searching {claim} with {', '.join(widen) or 'nothing'} widened") as status:
            n = [0]

            def seen(cfg, verdict):
                n[0] += 1
                status.update(f"example {n[0]}: {verdict} on {json.dumps(cfg, sort_keys=True)}")

            res = search(claim, tuple(widen), max_examples=max_examples, on_example=seen)
    except InvalidArgument as e:
        _fail(_as_flags(e, {"widen": "--widen", "max_examples": "--max-examples", "config": "--replay",
                            "claim": "CLAIM"}))
        return
    out = {"claim": claim, "widened": list(res.widened), "examples": res.examples, "found": res.config is not None,
           "config": res.config, "verdict": res.verdict, "evidence": res.evidence,
           "replay": res.replay_command()}
    if res.config is None:
        typer.echo(f"no counterexample to {claim} in {res.examples} configurations with {list(widen)} widened")
    else:
        typer.echo(f"counterexample to {claim} (verdict {res.verdict}) after {res.examples} configurations:")
        typer.echo("  config:   " + json.dumps(res.config, sort_keys=True))
        typer.echo("  evidence: " + json.dumps(res.evidence, default=float))
        typer.echo("  replay:   " + res.replay_command())
    if json_file is not None:
        write_json(json_file, out)


@app.command("sweep")
def sweep_cmd(
    spec: Path = typer.Argument(..., help="TOML: [model], [data], [train] (the base config) and [sweep]."),
    out: Path = typer.Option(Path("runs/sweep"), "--out", help="Folder of the cells and results.parquet "
                                                               "(a rerun finishes what is unfinished)."),
    workers: int | None = typer.Option(None, "--workers", help="Start a Dask LocalCluster of N workers."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the table's rows here."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto: where the cells compute."),
) -> None:
    """Run a grid of train runs (in process or on Dask), resumable, into one tidy table."""
    from rich.console import Console

    from ._errors import InvalidArgument, OdecheckError
    from .progress import cell_progress
    from .sweeps import SweepSpec, check_device, check_executor, sweep, table_json

    console = Console(stderr=True)
    if json_file is not None:
        _check_writable_file("--json", json_file)
    try:
        check_executor(workers=workers, scheduler=scheduler)
        check_device(device, local=workers is None and scheduler is None)  # before the progress bar
        parsed = SweepSpec.load(spec)
        n_cells = len(parsed.cells())
        with cell_progress(console, "sweep", n_cells, out) as on_cell:
            df = sweep(parsed, out, workers=workers, scheduler=scheduler, on_cell=on_cell, device=device)
    except InvalidArgument as e:
        _fail(_as_flags(e, {"workers": "--workers", "scheduler": "--scheduler", "out": "--out", "spec": "SPEC",
                            "device": "--device"}))
        return
    except OdecheckError as e:
        _fail(str(e))
        return
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    typer.echo(f"{n_cells} cells, {len(df)} rows: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in
                                                                 ("done", "diverged", "failed")))
    typer.echo(f"wrote {out}/results.parquet")
    if json_file is not None:
        write_json(json_file, {"spec": str(spec), "out": str(out), "rows": table_json(df)})


def _reproductions():
    from .reproduce import REPRODUCTIONS

    return REPRODUCTIONS


@app.command("reproduce")
def reproduce_cmd(
    name: str = typer.Argument(..., help=" | ".join(f"{k}: {r.source}" for k, r in _reproductions().items())),
    scale: str = typer.Option("smoke", "--scale", help="smoke (seconds) | paper (the paper's settings)."),
    out: Path = typer.Option(Path("odecheck-reproduce"), "--out", help="Folder; NAME-SCALE/ holds the sweep, "
                                                                        "figure.png, report.md and report.json."),
    workers: int | None = typer.Option(None, "--workers", help="Run the sweep on a Dask LocalCluster of N workers."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto: where the cells compute."),
    variant: str | None = typer.Option(None, "--variant", help="Another parametrization of the experiment "
                                                                  "(m24-fig2: script, the public script's block)."),
) -> None:
    """Reproduce a paper's headline figure on sweep: ours next to the published result, with verdicts."""
    from rich.console import Console

    from ._errors import InvalidArgument, OdecheckError
    from .progress import cell_progress
    from .render import reproduce_table
    from .reproduce import REPRODUCTIONS, SCALES, check_variant, reproduce, reproduction_folder
    from .sweeps import check_device, check_executor

    console = Console(stderr=True)
    if json_file is not None:
        _check_writable_file("--json", json_file)
    flags = {"workers": "--workers", "scheduler": "--scheduler", "out": "--out", "name": "NAME", "scale": "--scale",
             "device": "--device", "variant": "--variant"}
    try:
        if name not in REPRODUCTIONS:
            raise InvalidArgument(f"NAME {name!r}: expected one of {', '.join(REPRODUCTIONS)}")
        if scale not in SCALES:
            raise InvalidArgument(f"--scale {scale!r}: expected 'smoke' or 'paper'")
        check_executor(workers=workers, scheduler=scheduler)
        check_device(device, local=workers is None and scheduler is None)  # before the progress bar
        check_variant(name, variant)  # before the progress bar
        with cell_progress(console, name, folder=reproduction_folder(out, name, scale, variant)) as on_cell:
            rep = reproduce(name, scale=scale, out=out, workers=workers, scheduler=scheduler, on_cell=on_cell,
                            device=device, variant=variant)
    except InvalidArgument as e:
        _fail(_as_flags(e, flags))
        return
    except OdecheckError as e:
        _fail(str(e))
        return
    label = f"{name} --variant {variant}" if variant else name
    table = reproduce_table(rep, title=f"{label} ({rep['source']}), {scale} scale, {rep['seconds']:.1f} s, {rep['executor']}")
    Console(width=160).print(table)
    folder = reproduction_folder(out, name, scale, variant)
    typer.echo(f"wrote {folder}/report.md, report.json" + (f", {rep['figure']}" if rep["figure"] else ""))
    if json_file is not None:
        write_json(json_file, rep)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
