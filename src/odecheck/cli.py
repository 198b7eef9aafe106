"""The ``odecheck`` command. The only module that prints or writes files."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

from odecheck.core._io import write_json

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Verify what deep residual networks become as depth grows: neural ODE, SDE, or nothing.")


@app.callback()
def _root(ctx: typer.Context, threads: str | None = typer.Option(
        None, "--threads", envvar="ODECHECK_THREADS", show_envvar=True,
        help="Torch CPU threads: an integer >= 1 fixes the count; 'auto' (the default) uses the cores that other "
             "processes leave free, re-checked about once a second, so a busy machine costs at most the busy "
             "core (docs/performance.md)."),
) -> None:
    """odecheck: property-based checks of the depth limits of residual networks."""
    from odecheck.core.threads import apply_option

    with _reported():
        apply_option(threads, ctx.call_on_close)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


# the library's argument names and the command line's flags: errors name the argument, the CLI alone maps it
FLAGS = {"budget": "--budget", "claims": "--claims", "device": "--device", "out": "--out", "key": "--key",
         "inputs": "--inputs", "depths": "--depths", "ensembles": "--ensemble", "recompute": "--recompute",
         "variants": "--isa", "widen": "--widen", "max_examples": "--max-examples", "config": "--replay",
         "claim": "CLAIM", "workers": "--workers", "scheduler": "--scheduler", "spec": "SPEC", "name": "NAME",
         "scale": "--scale", "variant": "--variant", "rounds": "--repeat", "threads": "--threads"}


def _write_json_if(path: Path | None, obj) -> None:
    """Write ``obj()`` as JSON to ``path`` when the command was given one."""
    if path is not None:
        write_json(path, obj())


@contextmanager
def _reported():
    """A library error (``OdecheckError``) in the command line's words (the argument's flag), exit status 2."""
    from odecheck.core._errors import OdecheckError

    try:
        yield
    except OdecheckError as e:
        _fail(_as_flags(e))


def _as_flags(err) -> str:
    """A library error in the command line's words: the argument's name replaced by its flag."""
    msg = str(err)
    name = getattr(err, "argument", None)
    if name in FLAGS and msg.startswith(f"{name}="):
        return f"{FLAGS[name]} {msg[len(name) + 1:]}"
    return msg


@app.command()
def train(
    config: Path | None = typer.Argument(None, help="TOML config; omitted: the built-in [M24] default."),
    out: Path = typer.Option(Path("runs/default"), "--out", help="Run directory (resumed if it exists)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
) -> None:
    """Train an ensemble from a TOML config, with checkpoints; rerun to resume."""
    from rich.console import Console

    from odecheck.experiments.config import RunConfig
    from odecheck.experiments.runner import check, run, summarize
    from odecheck.presentation.render import run_summary
    from odecheck.progress import step_progress

    console = Console(stderr=True)
    with _reported():
        cfg = RunConfig.load(config) if config is not None else RunConfig()
        check(cfg, device=device)  # data and model are valid before any progress bar is drawn
        with step_progress(console, "train", cfg.train.steps) as cb:
            net, traj, resumed = run(cfg, out, device=device, progress=cb)
    if resumed:
        console.print(f"resumed from step {resumed}")
    typer.echo(run_summary(cfg, net, traj, summarize(cfg, net, traj)))
    typer.echo(f"wrote {out}/config.toml, trajectory.npz, weights.npz")


def _check_writable_file(option: str, path: Path | None) -> None:
    """Fail (exit 2) unless ``path`` (when given) can be written: its folder is created if missing."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"{option} {path}: cannot create its folder ({e.strerror})")
    if not os.access(path.parent, os.W_OK) or path.is_dir():
        _fail(f"{option} {path}: not a writable file path")


@app.command()
def verify(
    budget: str = typer.Option("standard", help="quick | standard | thorough"),
    claims: str | None = typer.Option(None, help="Comma-separated claim ids (default: all of them)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, help="Seed of every statistical sample (derived per claim)."),
    out: Path = typer.Option(Path("odecheck-report"), help="Directory for report.md, report.json and figures."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    resume: bool = typer.Option(True, help="Reuse verdicts already in OUT/report.json with the same budget, "
                                           "seed and device."),
) -> None:
    """Run the claims of the theory and decide each one with its evidence and error control."""

    from rich.console import Console

    from odecheck.experiments.claims import REGISTRY
    from odecheck.experiments.verification import verify as run_verify
    from odecheck.presentation.render import verify_footer, verify_summary, verify_table
    from odecheck.progress import claim_progress

    ids = list(REGISTRY) if not claims else [c.strip() for c in claims.split(",") if c.strip()]
    _check_writable_file("--json", json_file)  # before anything runs
    with _reported():
        with claim_progress(Console(stderr=True), ids, "report.json", budget) as meter:
            rep = run_verify(ids, budget=budget, seed=seed, device=device, out=out, resume=resume, progress=meter)
    _write_json_if(json_file, lambda: rep)
    table = verify_table(rep["claims"], title=f"odecheck verify (budget {budget}, device {rep['device']}, seed {seed})")
    Console(width=max(Console().width, 120)).print(table)
    typer.echo(verify_summary(rep["claims"], meter.elapsed(), len(meter.reused)) + "\n"
               + verify_footer(rep["claims"], out, "report.json"))


@app.command()
def analyze(
    files: list[str] = typer.Argument(..., help=".npz, .safetensors (single or sharded), .pt/.pth/.bin/.th/.ckpt/"
                                                ".pth.tar state_dicts, .gguf, .onnx, a folder, or hf://org/name[@rev]."),
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
    all_paths: bool = typer.Option(False, "--all-paths", help="Print every path (default: the least regular ones; "
                                   "the rest and the BatchNorm/LayerNorm vectors counted)."),
) -> None:
    """Regularity and scaling of trained weights (ODE, SDE or none): families, then the least regular paths."""
    from rich.console import Console
    from rich.markup import escape

    from odecheck.experiments.analyze import analysis_figures, analyze_files, write_report
    from odecheck.presentation.render import print_analysis

    _check_writable_file("--json", json_file)  # before anything runs
    console = Console(stderr=True)
    with _reported(), console.status("reading") as status:
        res = analyze_files(files, key=key, stacked=stacked, features=features, inputs=inputs,
                            include_buffers=include_buffers, seed=seed,
                            progress=lambda e: status.update(escape(f"{e.item}: path {int(e.done)}/{int(e.total)}")))
    print_analysis(res, Console(width=max(Console().width, 120)), all_paths=all_paths)
    if figures is not None:
        try:
            written = analysis_figures(res, figures, per_path=path_figures)
        except ImportError:
            _fail("--figures needs matplotlib: pip install 'odecheck[plot]'")
            return
        typer.echo(f"wrote {len(written)} figures to {figures}")
    _write_json_if(json_file, lambda: res)
    if out_dir is not None:
        n = write_report(res, out_dir)
        typer.echo(f"wrote {out_dir}/report.md, report.json and {n or 0} figures" + (
            " (figures need matplotlib: pip install 'odecheck[plot]')" if n is None else ""))
    if res["failed"]:  # each printed with the results; the exit status says that some files failed
        raise typer.Exit(1)


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
    contention: bool = typer.Option(False, "--contention", help="Instead: workloads quiet and beside a busy process, "
                                    "free-cores policy against all cores and one thread (REPEAT rounds)."),
) -> None:
    """Time the engine against a per-layer nn.ModuleList baseline on the [M24] workload."""
    from rich.console import Console

    from odecheck.engine.bench import check_bench, run_bench
    from odecheck.presentation.render import bench_tables

    with _reported():
        dev = check_bench(depths, ensemble, device, recompute=recompute, variants=list(isa))
    _check_writable_file("--json", json_file)  # before anything runs
    console = Console(stderr=True)
    if contention:  # the thread policies quiet and beside a busy process (odecheck.contention)
        from odecheck.engine.contention import run_contention
        from odecheck.presentation.render import contention_table

        with _reported(), console.status("contention benchmark") as status:
            res = run_contention(rounds=repeat, progress=status.update)
        _write_json_if(json_file, lambda: res)
        return Console(width=max(Console().width, 120)).print(contention_table(res))
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
    claim: str = typer.Argument(..., help="Claim id with a probe: tied-init-lipschitz, iid-init-rough, pl-overparameterized, "
                                          "init-scaling-regimes, depth-transfer, mean-ode-rate, ode-discretization."),
    widen: list[str] = typer.Option([], "--widen", help="Field to widen beyond the claim's scope (repeatable)."),
    max_examples: int = typer.Option(25, help="Configurations to try before shrinking."),
    json_file: Path | None = typer.Option(None, "--json", help="Write configuration and evidence here."),
    replay_config: str | None = typer.Option(None, "--replay", help="JSON configuration to re-check."),
) -> None:
    """Search outside a claim's proven scope for a minimal configuration where it fails."""
    import json

    from rich.console import Console

    from odecheck.experiments.falsify import falsify as search
    from odecheck.experiments.falsify import replay

    console = Console(stderr=True)
    _check_writable_file("--json", json_file)  # before anything runs
    with _reported():
        if replay_config is not None:
            ev = replay(claim, replay_config)
            cfg = json.loads(replay_config)
            typer.echo(f"{claim} on {json.dumps(cfg, sort_keys=True)}: {ev.verdict}")
            typer.echo(json.dumps(ev.to_json(), indent=2))
            _write_json_if(json_file, lambda: {"claim": claim, "config": cfg, "verdict": ev.verdict,
                                               "evidence": ev.to_json()})
            return
        with console.status(f"searching {claim} with {', '.join(widen) or 'nothing'} widened") as status:
            n = [0]

            def seen(cfg, verdict):
                n[0] += 1
                status.update(f"example {n[0]}: {verdict} on {json.dumps(cfg, sort_keys=True)}")

            res = search(claim, tuple(widen), max_examples=max_examples, on_example=seen)
    typer.echo(res.text())
    _write_json_if(json_file, lambda: res.to_json())


@app.command("sweep")
def sweep_cmd(
    spec: Path = typer.Argument(..., help="TOML: \\[model], \\[data], \\[train] (the base config) and \\[sweep]."),
    out: Path = typer.Option(Path("runs/sweep"), "--out", help="Folder of the cells and results.parquet "
                                                               "(a rerun finishes what is unfinished)."),
    workers: int | None = typer.Option(None, "--workers", help="Start a Dask LocalCluster of N workers."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the table's rows here."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto: where the cells compute."),
) -> None:
    """Run a grid of train runs (in process or on Dask), resumable, into one tidy table."""
    from rich.console import Console

    from odecheck.experiments.sweeps import SweepSpec, check_device, check_executor, sweep, table_json
    from odecheck.presentation.render import sweep_summary
    from odecheck.progress import cell_progress

    console = Console(stderr=True)
    _check_writable_file("--json", json_file)  # before anything runs
    with _reported():
        check_executor(workers=workers, scheduler=scheduler)
        check_device(device, local=workers is None and scheduler is None)  # before the progress bar
        parsed = SweepSpec.load(spec)
        n_cells = len(parsed.cells())
        with cell_progress(console, "sweep", n_cells, out) as meter:
            df = sweep(parsed, out, workers=workers, scheduler=scheduler, progress=meter, device=device)
    typer.echo(sweep_summary(df, n_cells) + f"\nwrote {out}/results.parquet")
    _write_json_if(json_file, lambda: {"spec": str(spec), "out": str(out), "rows": table_json(df)})


@app.command("reproduce")
def reproduce_cmd(
    name: str = typer.Argument(..., help="m24-fig1 | m24-fig2 | m24-table1 | m25-init | m25-phase | c21-fc | c21-cifar "
                                         "| c21-beta | depth-transfer | ccm26 | s22-linear | lr-depth-law (docs/reproductions.md)"),
    scale: str = typer.Option("smoke", "--scale", help="smoke (seconds) | paper (the paper's settings)."),
    out: Path = typer.Option(Path("odecheck-reproduce"), "--out", help="Folder; NAME-SCALE/ holds the sweep, "
                                                                        "figure.png, report.md and report.json."),
    workers: int | None = typer.Option(None, "--workers", help="Run the sweep on a Dask LocalCluster of N workers."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running Dask scheduler."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto: where the cells compute."),
    variant: str | None = typer.Option(None, "--variant", help="Another setting of the experiment: m24-fig2 script; "
                                       "c21-fc epochs, c21-shuffle; depth-transfer res1, digits; ccm26 cpu."),
) -> None:
    """Reproduce a paper's headline figure on sweep: ours next to the published result, with verdicts."""
    from rich.console import Console

    from odecheck.experiments.reproduce import check_reproduction, reproduce, reproduction_folder
    from odecheck.presentation.render import reproduce_table
    from odecheck.progress import cell_progress

    console = Console(stderr=True)
    _check_writable_file("--json", json_file)  # before anything runs
    with _reported():
        check_reproduction(name, scale=scale, workers=workers, scheduler=scheduler, device=device, variant=variant)
        with cell_progress(console, name, folder=reproduction_folder(out, name, scale, variant)) as meter:
            rep = reproduce(name, scale=scale, out=out, workers=workers, scheduler=scheduler, progress=meter,
                            device=device, variant=variant)
    Console(width=160).print(reproduce_table(rep, title=f"{name}{f' --variant {variant}' if variant else ''} "
                                             f"({rep['source']}), {scale} scale, {rep['seconds']:.1f} s, {rep['executor']}"))
    typer.echo(f"wrote {reproduction_folder(out, name, scale, variant)}/report.md, report.json"
               + (f", {rep['figure']}" if rep["figure"] else ""))
    _write_json_if(json_file, lambda: rep)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
