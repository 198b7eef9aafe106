r"""[CCM26]'s fixed-depth experiment: how far a trained mean-field ResNet of hidden width M and embedding
width D is from its large-scale limit, h + (1/(L M)) V tanh(U^T h / D) with h_0 = W_E x and output
(1/D) W_U^T h_L, after K full-batch GD steps.

Settings as the authors' public notebook states them (read for its settings only): L = 50, M and D on 20
log-spaced values from 1 to 2000, K = 15 steps with eta = 1 on the per-layer weights (their step: eta times
the gradient of the loss sum (F - Y)^2 / (n d_out) scaled by L M D / 2, which is gradient flow's
per-layer step L * lr with lr = eta M D / (2 d_out) on odecheck's loss sum (F - Y)^2 / n), W_E and W_U
frozen, n = 10 Gaussian pairs in R^5 (the same data for every repetition), 5 repetitions, the largest network
as the reference, RMS errors of the output and of h_L at step K. Entries of U and V have variance D (the
claim's statement, ../shared/SCIENCE.md), those of W_E and W_U variance 1.

The notebook couples its networks ("one experiment with coupling") without the analysis here being able to
read how; odecheck couples by nesting: in each repetition one draw at the largest size, and the network of
size (M, D) uses its leading D embedding coordinates and M hidden units (U and V scaled to variance D). The
embedding error compares those D coordinates of h_L with the reference's.

Fitted curve (the notebook's, for the h error): sqrt((0.8 sqrt(D/(M L)))^2 + (2.5/sqrt(D))^2), i.e. the
exponents 1/2 of D/(M L) and -1/2 of D. odecheck fits err^2 = a^2 D^(2p) M^(-2q) / L + b^2 D^(-2r) per
repetition (log-space least squares, points coupled to the reference left out: M or D above half the
largest) and decides each exponent with a members-t interval over repetitions against 1/2 +- 1/4. [CCM26]
calls its rate tight in embedding space; for the output it is a bound, so the output error is decided only
on its decay in D (at least D^-1/4, the band's lower edge), not against a fitted curve.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from odecheck.analysis.estimators.decisions import ALPHA, brownian_decision
from odecheck.analysis.estimators.scaling import mean_interval
from odecheck.core._errors import invalid
from odecheck.core._io import atomic_write
from odecheck.core.events import report
from odecheck.core.validation import check_dtype
from odecheck.experiments.reproduce.base import Reproduction, Result, study_folder
from odecheck.presentation.plot import pyplot, save


def _grid(lo: float, hi: float, n: int) -> list[int]:
    # the notebook's floor(10^range(log10 lo, log10 hi, n)); the 1e-9 keeps the last value at hi, not hi - 1
    return sorted({int(np.floor(v + 1e-9)) for v in np.exp(np.linspace(np.log(lo), np.log(hi), n))})


CCM26 = {"smoke": {"depth": 8, "Ms": [2, 4, 8, 16, 32], "Ds": [2, 4, 8, 16, 32], "reps": 3},
         "cpu": {"depth": 50, "Ms": _grid(1.5, 512, 12), "Ds": _grid(1.5, 512, 12), "reps": 5},
         # float32 at paper scale: twice as fast, outputs within 1e-7 of float64 at M = D = 1000 (errors >= 1e-3)
         "paper": {"depth": 50, "Ms": _grid(1.5, 2000, 20), "Ds": _grid(1.5, 2000, 20), "reps": 5,
                   "dtype": "float32"}}
SETTINGS = {"steps": 15, "eta": 1.0, "n": 10, "d_in": 5, "d_out": 5, "seed": 1, "activation": "tanh",
            "dtype": "float64"}
PUBLISHED = {"a": 0.8, "b": 2.5, "p": 0.5, "q": 0.5, "r": 0.5}
EXPONENT_BAND = 0.25  # halfway to the neighbouring exponents 0 and 1


def _draw(settings: dict, rep: int):
    """One repetition's draw at the largest size (float32: at M = D = 2000, L = 50 each of U, V is 0.8 GB):
    standard normals for U, V (L, D, M) and W_E, W_U (D, d)."""
    import torch

    g = torch.Generator().manual_seed(1_000_003 * (settings["seed"] + 1) + rep)
    L, M, D = settings["depth"], max(settings["Ms"]), max(settings["Ds"])
    U = torch.randn(L, D, M, generator=g)
    V = torch.randn(L, D, M, generator=g)
    WE = torch.randn(D, settings["d_in"], generator=g)
    WU = torch.randn(D, settings["d_out"], generator=g)
    return U, V, WE, WU


def nested_network(draw, M: int, D: int, *, activation: str = "tanh", dtype=None):
    """The network of size (M, D) cut from one repetition's largest draw: V = sqrt(D) V_big[:, :D, :M],
    W = U^T with U = sqrt(D) U_big[:, :D, :M], A = W_E[:D], B = W_U[:D]^T / D (one member)."""
    import torch

    from odecheck.engine.models import ResNet

    U, V, WE, WU = (t.double() for t in draw)  # slices of the float32 draw, scaled in float64
    s = float(np.sqrt(D))
    return ResNet.from_weights(block="meanfield", V=(s * V[:, :D, :M])[None], W=(s * U[:, :D, :M].transpose(1, 2))[None],
                               A=WE[:D][None], B=(WU[:D].T / D)[None], activation=activation, beta=1.0,
                               dtype=dtype or torch.float64)


def train_nested(draw, M: int, D: int, settings: dict, data):
    """Train the (M, D) network K steps; returns (outputs (n, d_out), h_L (n, D))."""
    from odecheck.engine.optim import GradientFlow
    from odecheck.engine.training import train

    net = nested_network(draw, M, D, activation=settings["activation"], dtype=check_dtype(settings["dtype"]))
    lr = settings["eta"] * M * D / (2 * settings["d_out"])
    train(net, data, GradientFlow(lr=lr), steps=settings["steps"])
    return net(data.x).detach()[0].double().numpy(), net.hidden_states(data.x)[0, -1].double().numpy()


def _reference(draw, settings: dict, data, path: Path):
    """The largest network's (outputs, h_L) of one repetition, kept in ``path`` (a rerun reads it)."""
    if path.exists():
        with np.load(path) as z:
            return z["out"], z["h"]
    out, h = train_nested(draw, max(settings["Ms"]), max(settings["Ds"]), settings, data)
    atomic_write(path, lambda f: np.savez(f, out=out, h=h))
    return out, h


def run_ccm26(settings: dict, folder: Path, *, device: str = "cpu", progress=None):
    """Every (repetition, M, D) of ``settings`` in process, each one's errors written to ``folder/runs/`` as it
    finishes (the study resumes; each repetition's reference is kept there too). A table, one row a run."""
    import pandas as pd

    from odecheck.engine.data import gaussian_task

    if device != "cpu":
        raise invalid("device", device, "'cpu': ccm26 runs in process on the CPU")
    folder = study_folder(folder, settings, "ccm26")
    data = gaussian_task(settings["n"], settings["d_in"], settings["d_out"], seed=settings["seed"],
                         dtype=check_dtype(settings["dtype"]))
    sizes = [(M, D) for M in settings["Ms"] for D in settings["Ds"]]
    total, rows = settings["reps"] * len(sizes), []
    for r in range(settings["reps"]):
        draw = ref = None
        for i, (M, D) in enumerate(sizes):
            path = folder / "runs" / f"r{r}-M{M:05d}-D{D:05d}.json"
            if path.exists():
                rec = json.loads(path.read_text())
            else:
                draw = draw or _draw(settings, r)
                ref = ref or _reference(draw, settings, data, folder / "runs" / f"reference-r{r}.npz")
                out, h = train_nested(draw, M, D, settings, data)
                rec = {"err_y": float(np.sqrt(((out - ref[0]) ** 2).mean())),
                       "err_h": float(np.sqrt(((h - ref[1][:, :D]) ** 2).mean()))}
                atomic_write(path, lambda f, x=rec: f.write(json.dumps(x).encode()))
            rows.append({"M": M, "D": D, "member": r, "status": "done", **rec})
            report(progress, "reproduce", r * len(sizes) + i + 1, total, f"rep {r}, M={M}, D={D}", "done", rows[-1:])
    return pd.DataFrame(rows)


def fit_error_curve(M, D, err, L: int) -> np.ndarray:
    """(a, b, p, q, r) of err^2 = a^2 D^(2p) M^(-2q) / L + b^2 D^(-2r), least squares on log err."""
    from scipy.optimize import least_squares

    M, D, err = (np.asarray(v, dtype=float) for v in (M, D, err))

    def resid(t):
        la, lb, p, q, r = t
        model = np.logaddexp(2 * la + 2 * p * np.log(D) - 2 * q * np.log(M) - np.log(L), 2 * lb - 2 * r * np.log(D))
        return 0.5 * model - np.log(err)

    fit = least_squares(resid, x0=np.array([0.0, 0.0, 0.5, 0.5, 0.5]), bounds=([-10, -10, -2, -2, -2],
                                                                             [10, 10, 3, 3, 3]))
    la, lb, p, q, r = fit.x
    return np.array([np.exp(la), np.exp(lb), p, q, r])


def output_decay(M, D, err) -> float:
    """The output error's exponent in D: minus the OLS slope of log err (averaged over the hidden widths M) on
    log D."""
    M, D, err = (np.asarray(v, dtype=float) for v in (M, D, err))
    Ds = np.unique(D)
    y = np.array([np.log(err[D == d]).mean() for d in Ds])
    return float(-np.polyfit(np.log(Ds), y, 1)[0])


def _analyse(df, out: Path, spec: dict):
    L, Mx, Dx = spec["depth"], max(spec["Ms"]), max(spec["Ds"])
    # points coupled to the reference (M or D above half the largest) leave the fits
    keep = df[(df["M"] <= Mx / 2) & (df["D"] <= Dx / 2) & (df["err_h"] > 0) & (df["err_y"] > 0)]
    groups = [g for _, g in keep.groupby("member")]
    fits = np.array([fit_error_curve(g["M"], g["D"], g["err_h"], L) for g in groups])
    level = 1 - ALPHA / 4  # Bonferroni over the three exponents of the h error and the output's decay
    results = []
    for j, name, what in ((2, "p", "D/(M L)"), (3, "q", "1/M"), (4, "r", "1/D (second term)")):
        est, ci = mean_interval(fits[:, j], level)
        call = brownian_decision(ci, (0.5 - EXPONENT_BAND, 0.5 + EXPONENT_BAND)) if np.isfinite(ci[0]) else "unresolved"
        verdict = {"ok": "confirmed", "contradicts": "refuted", "unresolved": "inconclusive"}[call]
        results.append(Result(f"h-error-{name}", verdict, est, ci, "1/2 (the notebook's fit of the h error)",
                              alpha=ALPHA,
                              note=f"exponent of {what} in err_h^2 = a^2 D^2p M^-2q / L + b^2 D^-2r, one fit per "
                                   f"repetition ({len(groups)}), members-t at {level:.4f} (Bonferroni over four); "
                                   f"a = {fits[:, 0].mean():.3g}, b = {fits[:, 1].mean():.3g} (the notebook: 0.8, "
                                   f"2.5); the rule: confirmed inside 1/2 +- {EXPONENT_BAND}, refuted wholly outside"))
    decay = [output_decay(g["M"], g["D"], g["err_y"]) for g in groups]
    est, ci = mean_interval(decay, level)
    lo_edge = 0.5 - EXPONENT_BAND
    verdict = ("inconclusive" if not np.isfinite(ci[0]) else "confirmed" if ci[0] > lo_edge
               else "refuted" if ci[1] < lo_edge else "inconclusive")
    results.append(Result("output-error-decay-in-D", verdict, est, ci, "at least 1/2 (a bound: [CCM26] calls the "
                                                                      "rate tight in embedding space only)",
                          alpha=ALPHA, note=f"minus the OLS slope of log err_y (mean over M) on log D per repetition, "
                                            f"members-t at {level:.4f}; confirmed if it decays faster than "
                                            f"D^-{lo_edge} (the band's lower edge), refuted if slower"))
    return results, {"df": df.to_dict("list"), "fits": fits.tolist(), "depth": L, "Ms": spec["Ms"], "Ds": spec["Ds"]}


def _figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    import pandas as pd

    plt = pyplot()
    df = pd.DataFrame(data["df"])
    L = data["depth"]
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8))
    for row, what in enumerate(("err_h", "err_y")):
        theta = np.mean(data["fits"], axis=0)
        a, b, p, q, r = theta

        def curve(M, D, t=theta):
            return np.sqrt(t[0] ** 2 * D ** (2 * t[2]) * M ** (-2 * t[3]) / L + t[1] ** 2 * D ** (-2 * t[4]))
        med = df.groupby(["M", "D"])[what].median().reset_index()
        Ds = sorted(med["D"].unique())
        for i, D in enumerate(Ds[:: max(1, len(Ds) // 4)]):
            s = med[med["D"] == D]
            axes[row, 0].loglog(s["M"], s[what], "*", color=f"C{i}", label=f"D = {D}")
            if what == "err_h":
                axes[row, 0].loglog(s["M"], curve(s["M"].to_numpy(float), D), "-", color=f"C{i}")
        Ms = sorted(med["M"].unique())
        for i, M in enumerate(Ms[:: max(1, len(Ms) // 4)]):
            s = med[med["M"] == M]
            axes[row, 1].loglog(s["D"], s[what], "*", color=f"C{i}", label=f"M = {M}")
            if what == "err_h":
                axes[row, 1].loglog(s["D"], curve(M, s["D"].to_numpy(float)), "-", color=f"C{i}")
        label = "RMS error of h_L" if what == "err_h" else "RMS error of the output"
        for ax, x in zip(axes[row], ("M", "D"), strict=True):
            ax.set_xlabel(x)
            ax.set_ylabel(label)
            ax.legend(fontsize=7)
    axes[0, 0].set_title(f"h error, fit: a = {a:.2g}, b = {b:.2g}, p = {p:.2f}, q = {q:.2f}, r = {r:.2f} "
                         "(notebook: 0.8, 2.5, 1/2, 1/2, 1/2)", fontsize=8)
    axes[1, 0].set_title("output error (no published fit; the rate is a bound here)", fontsize=8)
    return save(fig, path, title)


def _spec(scale: str) -> dict:
    return {**SETTINGS, **CCM26[scale]}


CCM26_REPRODUCTION = Reproduction(
    "ccm26", "[CCM26] nonlinear experiments (notebook errH_vs_M, errH_vs_D, erry_vs_M, erry_vs_D)",
    "mean-field ResNets h + (1/(L M)) V tanh(U^T h / D) at fixed depth, M and D log-spaced, K = 15 GD steps, the "
    "largest network as the reference: the fitted error curve's exponents", _spec, _analyse, _figure,
    variants={"cpu": (lambda scale: {**SETTINGS, **CCM26["smoke" if scale == "smoke" else "cpu"]},
                      "at paper scale, M and D up to 512 (12 values each): the paper grid's lower part")},
    run=run_ccm26)
