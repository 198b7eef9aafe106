"""[S22] Fig. 2: a linear ResNet X = prod_i (I + A_i / N) trained from A = 0 keeps its weights smooth in the
layer index i (implicit regularization towards a neural ODE), as the public script runs it, and the same
model over depths in odecheck's parametrization.

The script (../SOURCES facts, written out in docs/reproductions.md): d = 2, N = 100, A_i = 0 at start, target
B = I + N(0, 1) entries (seed 6), loss mean((X - B)^2), SGD with lr 100 and no momentum, at most 10,000 steps,
stopping once the loss (checked every 100 steps) is below 1e-5; the figure shows one entry A_i[p, q] against
i at four random steps. odecheck trains the same model as the res1 block with the identity activation on
the inputs e_1..e_d (F(e_j) = X e_j), whose loss (1/d) sum_j ||X e_j - B e_j||^2 is d mean((X - B)^2), by
gradient flow with the per-layer factor N: the script's update is the flow at lr = 100 / (d N) (0.5 at N =
100), and odecheck's own parametrization keeps lr fixed (0.5) at every depth.

References
----------
[S22] Sander, Ablin, Peyre, NeurIPS 2022 (arXiv 2205.14612), Fig. 2 and sec. 4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from odecheck.analysis.estimators import classify_regime, scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, rate_decision
from odecheck.core._io import atomic_write
from odecheck.core.events import report
from odecheck.experiments.reproduce.base import Reproduction, Result, study_folder
from odecheck.presentation.plot import depth_ticks, pyplot, save

SCRIPT = {"dim": 2, "depth": 100, "lr": 100.0, "max_steps": 10_000, "check_every": 100, "tol": 1e-5, "seed": 6}
# runs: the script's runs at N = 100 (seed 6's target, then further targets of its law); the depth study:
# targets I + target_scale N(0, 1) (the theorem's small initial loss), a fixed number of steps (its bound is
# uniform in optimization time)
S22 = {"smoke": {"runs": 2, "depths": [50, 100, 200], "members": 4, "steps": 300, "target_scale": 0.3},
       "paper": {"runs": 8, "depths": [50, 100, 200, 400, 800], "members": 16, "steps": 300, "target_scale": 0.3}}
SETTINGS = ("script", "flow")  # the script's lr 100 at every depth; odecheck's flow lr 0.5 at every depth
FLOW_LR = 0.5


def _spec(scale: str) -> dict:
    return {**SCRIPT, **S22[scale]}


def small_targets(members: int, dim: int, scale: float) -> torch.Tensor:
    """The depth study's targets I + scale N(0, 1) entries (generator seeded 0)."""
    g = torch.Generator().manual_seed(0)
    return torch.eye(dim, dtype=torch.float64) + scale * torch.randn(members, dim, dim, generator=g, dtype=torch.float64)


def script_target(dim: int, seed: int) -> torch.Tensor:
    """The script's target B = I + N(0, 1) entries, drawn by torch after its seed is set (seed 6: det 0.45,
    eigenvalues -0.29 +- 0.61i; numpy's draw at seed 6 has det < 0, which no product of factors I + A_i / N near
    the identity reaches, so the script's draw is read as torch's)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return torch.eye(dim, dtype=torch.float64) + torch.randn(dim, dim).double()
    finally:
        torch.random.set_rng_state(state)


def train_linear(depth: int, B: torch.Tensor, lr: float, s: dict, *, keep: bool = False):
    """Linear ResNets of ``depth`` (one per target in B) from A = 0, gradient flow at ``lr`` in chunks of
    ``check_every`` steps until every member's mean((X - B)^2) is below ``tol`` or ``max_steps`` (the script's
    rule; the same steps for every member). Returns (steps, final mean losses, max over k and t of
    ||A_{k+1} - A_k||_F, final weights, snapshots)."""
    from odecheck.engine.flow import gradient_flow
    from odecheck.engine.models import ResNet

    R, d = B.shape[0], B.shape[1]
    net = ResNet(block="res1", depth=depth, dim=d, activation="identity", beta=1.0, init="zero", ensemble=R, seed=0,
                 dtype=torch.float64)
    x, y = torch.eye(d, dtype=torch.float64), B.transpose(1, 2)
    step, inc, snaps = 0, np.zeros(R), {}
    loss = np.full(R, np.inf)
    while step < s["max_steps"] and not (loss < s["tol"]).all():
        n = s["check_every"]
        traj = gradient_flow(net, x, y, steps=n, lr=lr, start_step=step,
                             snapshots=range(step, step + n) if keep else ())
        snaps.update(traj.snapshots)
        inc = np.maximum(inc, traj.max_increment.max(axis=0))
        step += n
        loss = traj.loss[-1] / d
    return step, loss, inc, net.numpy_weights()["V"], snaps


def run_s22(settings: dict, folder: Path, *, device: str = "cpu", progress=None):
    """The script's run (N = 100) and the depth study under both settings, each run's record written to
    ``folder/runs/`` as it finishes (a rerun reuses them). A table, one row per member."""
    import pandas as pd

    from odecheck.core._errors import invalid

    if device != "cpu":
        raise invalid("device", device, "'cpu': s22-linear runs in process on the CPU")
    folder = study_folder(folder, settings, "s22-linear")
    small = small_targets(settings["members"], settings["dim"], settings["target_scale"])
    fixed = {**settings, "max_steps": settings["steps"], "check_every": settings["steps"], "tol": 0.0}
    jobs = [("seed", settings["seed"] + j) for j in range(settings["runs"])] + [
        (k, L) for k in SETTINGS for L in settings["depths"]]
    rows = []
    for i, (kind, L) in enumerate(jobs):
        path = folder / "runs" / f"{kind}-{L:05d}.json"
        if path.exists():
            recs = json.loads(path.read_text())
        else:
            script = kind == "seed"  # one run of the script, its seed L: alone, so that it stops by its own rule
            N = settings["depth"] if script else L
            lr = settings["lr"] / (settings["dim"] * N) if kind != "flow" else FLOW_LR
            B = script_target(settings["dim"], L)[None] if script else small
            steps, loss, inc, V, snaps = train_linear(N, B, lr, settings if script else fixed, keep=L == settings["seed"])
            recs = [{"setting": "script-run" if script else kind, "depth": N, "member": L if script else r,
                     "status": "done", "lr": lr, "steps": steps, "final_loss": float(loss[r]),
                     "max_increment": float(inc[r])} for r in range(len(loss))]
            if script:
                atomic_write(folder / "runs" / f"path-{L:05d}.npy", lambda f, v=V[0]: np.save(f, v))
            if snaps:  # the script's own run: the figure's four random steps (sorted)
                picks = np.sort(np.random.default_rng(settings["seed"]).choice(sorted(snaps), 4, replace=False))
                kept = np.stack([snaps[int(t)]["V"][0] for t in picks])
                atomic_write(folder / "runs" / "figure.npz", lambda f, p=picks, k=kept: np.savez(f, steps=p, V=k))
            atomic_write(path, lambda f, r=recs: f.write(json.dumps(r).encode()))
        rows += recs
        report(progress, "reproduce", i + 1, len(jobs), f"{kind}, N = {L}", "done", recs)
    return pd.DataFrame(rows)


def _analyse(df, out: Path, spec: dict):
    figs = df[df["setting"] == "script-run"].sort_values("member")
    with np.load(out / "runs" / "figure.npz") as z:
        snaps = {"steps": z["steps"].tolist(), "V": z["V"]}
    final = np.stack([np.load(out / "runs" / f"path-{int(s):05d}.npy") for s in figs["member"]])  # (runs, N, d, d)
    # the regime rule's interval is over entries (at least 8): the d^2 entries of every run, pooled
    dec = classify_regime(final.transpose(1, 0, 2, 3).reshape(final.shape[1], -1))
    reg = dec.regime
    verdict = "confirmed" if reg == "ode" else "refuted" if reg in ("sde", "none") else "inconclusive"
    unconv = int((figs["final_loss"] >= spec["tol"]).sum())
    results = [Result("script-smooth", verdict, dec.hurst.estimate, dec.hurst.ci, "smooth curves (Fig. 2)",
                      alpha=ALPHA, note=f"Hurst exponent and regime ({reg}: {dec.reason}) of the trained A_i paths at "
                                        f"N = {spec['depth']}, the script run with seeds {spec['seed']}..{spec['seed'] + len(figs) - 1}, "
                                        f"pooled; seed {spec['seed']}'s run stopped after {figs['steps'].iloc[0]} steps at "
                                        f"mean((X - B)^2) = {figs['final_loss'].iloc[0]:.2e} (the script stops below "
                                        f"{spec['tol']:g}); {unconv} of {len(figs)} not below it at "
                                        f"{spec['max_steps']} steps")]
    fits = {}
    for kind in SETTINGS:
        sub = df[df["setting"] == kind]
        depths = sorted(int(L) for L in sub["depth"].unique())
        V = np.array([sub[sub["depth"] == L].sort_values("member")["max_increment"].to_numpy(float) for L in depths])
        fit = scaling_exponent(depths, np.maximum(V, 1e-300), level=1 - ALPHA / 2, paired=True)
        fits[kind] = {"depths": depths, "values": V, "slope": fit.estimate, "ci": fit.ci, "intercept": fit.intercept}
        results.append(Result(f"{kind}-max-increment", rate_decision(fit), fit.estimate, fit.ci,
                              "O(1/N) [S22] sec. 4", alpha=ALPHA / 2,
                              note=("the script's lr 100 at every depth (flow lr 100 / (d N))" if kind == "script"
                                    else "odecheck's flow, lr 0.5 at every depth") +
                                   f"; max over layers and {spec['steps']} steps of ||A_(i+1) - A_i||_F, targets I + "
                                   f"{spec['target_scale']:g} N(0, 1), {len(sub)} runs, final mean loss up to "
                                   f"{sub['final_loss'].max():.1e}"))
    return results, {"snapshots": snaps, "fits": fits}


def _figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4))
    V = np.asarray(data["snapshots"]["V"])  # (4, N, d, d)
    i = np.arange(1, V.shape[1] + 1)
    for t, Vt in zip(data["snapshots"]["steps"], V, strict=True):
        axes[0].plot(i, Vt[:, 0, 0], label=f"step {t}")
    axes[0].set_xlabel("layer i")
    axes[0].set_ylabel("A_i[0, 0]")
    axes[0].set_title(f"the script's run, N = {V.shape[1]} ({results[0].verdict})", fontsize=9)
    axes[0].legend(fontsize=7)
    for j, (kind, f) in enumerate(data["fits"].items()):
        L, Y = np.asarray(f["depths"], float), np.asarray(f["values"], float)
        axes[1].plot(L, np.exp(np.log(Y).mean(1)), "o", color=f"C{j}",
                     label=f"{kind}: slope {f['slope']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}]")
        axes[1].plot(L, np.exp(f["intercept"]) * L ** f["slope"], "-", color=f"C{j}", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    depth_ticks(axes[1], data["fits"]["flow"]["depths"])
    axes[1].set_xlabel("depth N")
    axes[1].set_ylabel("max_i,t ||A_i+1 - A_i||_F")
    axes[1].legend(fontsize=7)
    return save(fig, path, title)


S22_REPRODUCTION = Reproduction(
    "s22-linear", "[S22] Fig. 2 (public script expe_linear_weights.py)",
    "a linear ResNet prod_i (I + A_i / N) trained from A = 0 towards I + N(0, 1) targets: one weight entry against "
    "the layer at four steps of the script's run, the regime of its trained path, and the max increment over "
    "depths under the script's lr and odecheck's flow", _spec, _analyse, _figure, run=run_s22)
