"""The ``odecheck`` command. The only module that prints or writes files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Verify what deep residual networks become as depth grows: neural ODE, SDE, or nothing.")


@app.callback()
def _root() -> None:
    """odecheck: property-based checks of the depth limits of residual networks."""


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="TOML config; omitted: the built-in [M24] default."),
    out: Path = typer.Option(Path("runs/default"), "--out", help="Run directory (resumed if it exists)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
) -> None:
    """Train an ensemble from a TOML config, with checkpoints; rerun to resume."""
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ._errors import InvalidArgument
    from .config import RunConfig
    from .runner import run

    console = Console(stderr=True)
    try:
        cfg = RunConfig.load(config) if config is not None else RunConfig()
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
    div = int(traj.diverged.sum())
    typer.echo(f"trained {net.ensemble} networks of depth {net.depth} for {traj.steps} steps; "
               f"final loss median {np.nanmedian(traj.loss[-1]):.4g}; "
               f"max_k,t ||Z_k+1 - Z_k|| median {np.median(traj.max_increment.max(0)):.4g}; diverged {div}")
    typer.echo(f"wrote {out}/config.toml, trajectory.npz, weights.npz")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
