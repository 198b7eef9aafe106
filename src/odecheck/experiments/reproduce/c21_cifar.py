r"""[C21]'s convolutional study as its public code runs it (../shared/SOURCES.md), with the digits standing
in for CIFAR-10 (offline), and odecheck's members-t exponents and regime beside [C21]'s numbers.

The network: a stem convolution (3 x 3, no bias) and ReLU, four stages of post-activation blocks
out = ReLU(conv2(ReLU(conv1(x))) + shortcut(x)) (3 x 3 kernels, no bias, no BatchNorm, no depth factor;
A_k = conv1, C_k = conv2), global average pooling and a linear head. Depth L = the number of blocks,
split over the stages by :func:`stage_sizes`. The first block of stages 2-4 has stride 2; its shortcut is
a 1 x 1 convolution with that stride (identity elsewhere; the usual CIFAR ResNet's, which the source does
not state). PyTorch's default initialization. Training as the code: cross-entropy, SGD lr 0.1, momentum
0.9, weight decay 5e-4, cosine schedule over the epochs (200 at paper scale), batch 128, random crops
(padding 4) and horizontal flips, per-channel normalization. The 8 x 8 digits are resized to 32 x 32
(bilinear), CIFAR's size, so the four stages see 32, 16, 8 and 4 pixels as on CIFAR.

Statistics of each trained network, as [C21]'s code computes them: the largest singular value of each
conv operator by FFT (circular padding, stride ignored, on the layer's input side n), max norm
max_k sigma(A_k), root SSQ sqrt(sum_k sigma(A_k)^2), increment max_k sigma(A_{k+1} - A_k) over consecutive
kernels of the same shape (within a stage), the same for C_k; exponent = -(OLS slope on log L), one run per
depth (seed 0), and beside it odecheck's members-t slope over the seeds with its interval. The regime of
the longest stage's kernels k -> A_k (and C_k) comes from odecheck's calibrated rule.

References
----------
[C21] Cohen, Cont, Rossier, Xu, ICML 2021, sec. 4.3 (Fig. 7) and its public code.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from odecheck.analysis.estimators import classify_regime
from odecheck.analysis.estimators.decisions import ALPHA
from odecheck.analysis.estimators.spectral import conv_operator_norm
from odecheck.core._errors import invalid
from odecheck.core._io import atomic_write
from odecheck.core.events import report
from odecheck.experiments.reproduce.base import Reproduction, Result, code_verdict, ols_beta, slope
from odecheck.presentation.plot import depth_ticks, pyplot, save

PAPER_DEPTHS = [8, 11, 12, 14, 16, 20, 24, 28, 33, 42, 50, 65, 80, 100, 121]  # [C21]'s, 18 left out as there
C21_CIFAR = {
    "smoke": {"depths": [8, 10, 12], "widths": [4, 6, 8, 10], "epochs": 2, "n_train": 256, "seeds": 4},
    "paper": {"depths": PAPER_DEPTHS, "widths": [64, 128, 256, 512], "epochs": 200, "n_train": None, "seeds": 4},
}
TRAIN = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "crop_padding": 4, "flip": True,
         "side": 32}
# the published figure's legends ([C21] Fig. 7, ../shared/SOURCES.md): reported value = -slope
PAPER = {("A", "maximum"): 0.0, ("C", "maximum"): 0.1, ("A", "root-ssq"): 0.0, ("C", "root-ssq"): 0.0,
         ("A", "increment"): 0.0, ("C", "increment"): 0.0}
STATS = ("maximum", "root-ssq", "increment")
UNTRAINED_ACCURACY = 0.2  # twice chance on 10 classes: below it a network has not learned the task
# stage 2's share of the blocks between the outer stages, from [C21]'s 121 = [4, 31, 82, 4]
_STAGE2_SHARE = 31 / 113


def stage_sizes(depth: int) -> tuple[int, int, int, int]:
    """Blocks per stage for ``depth`` blocks: the outer stages max(2, round(L / 30)) each, stage 2
    max(2, round(31/113 of the rest)), stage 3 the rest. It gives [C21]'s two stated splits, 8 = [2, 2, 2, 2]
    and 121 = [4, 31, 82, 4]; the code's other splits are not in the source (inferred rule)."""
    if not (isinstance(depth, int) and depth >= 8):
        raise invalid("depth", depth, "an integer >= 8 ([C21]'s smallest network, [2, 2, 2, 2])")
    outer = max(2, round(depth / 30))
    rest = depth - 2 * outer
    second = max(2, round(_STAGE2_SHARE * rest))
    return outer, second, rest - second, outer


class C21Block(nn.Module):
    """out = ReLU(conv2(ReLU(conv1(x))) + shortcut(x)): [C21]'s convolutional block (no BatchNorm, no
    bias, no depth factor)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class C21ConvNet(nn.Module):
    """Stem, four stages of :class:`C21Block` (``stage_sizes(depth)``, widths ``widths``), average pool,
    linear head."""

    def __init__(self, depth: int, widths=(64, 128, 256, 512), channels: int = 3, classes: int = 10):
        super().__init__()
        if len(widths) != 4 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise invalid("widths", widths, "four positive channel counts, one per stage")
        self.sizes = stage_sizes(depth)
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1, bias=False)
        blocks, c = [], widths[0]
        self.strides: list[int] = []
        self.stage_of: list[int] = []
        for s, (n, w) in enumerate(zip(self.sizes, widths, strict=True)):
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                blocks.append(C21Block(c, w, stride))
                self.strides.append(stride)
                self.stage_of.append(s)
                c = w
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        for b in self.blocks:
            h = b(h)
        return self.head(h.mean((2, 3)))


def digits_images(side: int = 32, n_train: int | None = None) -> dict[str, torch.Tensor]:
    """The digits (same split as :func:`odecheck.data.digits`) as 1 x side x side images (bilinear from
    8 x 8), normalized per channel with the training set's mean and standard deviation; integer labels."""
    from odecheck.engine.data import digits

    d = digits(n_train=n_train, dtype=torch.float32)

    def images(x):
        return F.interpolate(x.reshape(-1, 1, 8, 8), size=(side, side), mode="bilinear", align_corners=False)

    x, xt = images(d.x), images(d.x_test)
    mu, sd = x.mean(), x.std()
    return {"x": (x - mu) / sd, "y": d.y.argmax(1), "x_test": (xt - mu) / sd, "y_test": d.y_test.argmax(1)}


def augment(x: torch.Tensor, g: torch.Generator, padding: int, flip: bool) -> torch.Tensor:
    """[C21]'s CIFAR augmentation: a random crop of the zero-padded image and a horizontal flip with
    probability 1/2, drawn per image from ``g``."""
    n, _, s, _ = x.shape
    padded = F.pad(x, (padding,) * 4)
    ij = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    out = torch.stack([padded[t, :, i:i + s, j:j + s] for t, (i, j) in enumerate(ij.tolist())])
    if flip:
        f = torch.rand(n, generator=g) < 0.5
        out[f] = out[f].flip(-1)
    return out


def layer_sides(net: C21ConvNet, side: int) -> list[int]:
    """The input side of each block's conv1 (conv2 sees the block's output side)."""
    out, s = [], side
    for stride in net.strides:
        out.append(s)
        s = (s - 1) // stride + 1
    return out


def kernel_statistics(net: C21ConvNet, side: int) -> dict:
    """Per block: sigma_max of A_k (conv1) and C_k (conv2) on its input side, and of A_k - A_{k-1},
    C_k - C_{k-1} within a stage where both have the same shape (None elsewhere)."""
    sides = layer_sides(net, side)
    rec: dict = {"A": [], "C": [], "dA": [], "dC": []}
    prev = None
    for k, b in enumerate(net.blocks):
        out_side = (sides[k] - 1) // net.strides[k] + 1
        A, C = b.conv1.weight.detach(), b.conv2.weight.detach()
        rec["A"].append(conv_operator_norm(A, sides[k]))
        rec["C"].append(conv_operator_norm(C, out_side))
        stage = prev is not None and net.stage_of[k - 1] == net.stage_of[k]
        rec["dA"].append(conv_operator_norm(A - prev[0], sides[k]) if stage and prev[0].shape == A.shape else None)
        rec["dC"].append(conv_operator_norm(C - prev[1], out_side) if stage and prev[1].shape == C.shape else None)
        prev = (A, C)
    return rec


def longest_stage_regimes(net: C21ConvNet) -> dict[str, dict]:
    """odecheck's regime of k -> A_k and k -> C_k along the longest stage (its same-shaped kernels)."""
    stage = int(np.argmax(net.sizes))
    ks = [k for k, s in enumerate(net.stage_of) if s == stage and net.strides[k] == 1
          and net.blocks[k].conv1.in_channels == net.blocks[k].conv1.out_channels]
    out = {}
    for fam, get in (("A", lambda b: b.conv1.weight), ("C", lambda b: b.conv2.weight)):
        if len(ks) < 3:
            out[fam] = {"regime": "inconclusive", "hurst": None, "layers": len(ks), "stage": stage + 1,
                        "reason": f"{len(ks)} same-shaped blocks: a path needs 3 layers for a Hurst exponent and 5 "
                                  "for the regime rule"}
            continue
        path = np.stack([get(net.blocks[k]).detach().cpu().double().numpy().reshape(-1) for k in ks])
        d = classify_regime(path)
        out[fam] = {"regime": d.regime, "hurst": float(d.hurst.estimate), "layers": len(ks), "stage": stage + 1,
                    "reason": d.reason}
    return out


def train_one(depth: int, seed: int, settings: dict, data: dict, device: str) -> dict:
    """Train one network as [C21]'s code does; its statistics, losses and test accuracy."""
    torch.manual_seed(seed)
    net = C21ConvNet(depth, tuple(settings["widths"]), channels=1, classes=10).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=TRAIN["lr"], momentum=TRAIN["momentum"],
                          weight_decay=TRAIN["weight_decay"])
    epochs = settings["epochs"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    g = torch.Generator().manual_seed(10_000 + seed)
    x, y = data["x"], data["y"]
    n, bs = x.shape[0], TRAIN["batch_size"]
    status, losses = "done", []
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb = augment(x[idx], g, TRAIN["crop_padding"], TRAIN["flip"]).to(device)
            loss = F.cross_entropy(net(xb), y[idx].to(device))
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        if status != "done":
            break
        losses.append(total / count)
        sched.step()
    seconds = time.perf_counter() - t0
    rec = {"depth": depth, "seed": seed, "stages": list(net.sizes), "status": status, "train_loss": losses,
           "seconds": round(seconds, 3)}
    if status == "done":
        with torch.no_grad():
            pred = torch.cat([net(data["x_test"][i:i + 512].to(device)).argmax(1).cpu()
                              for i in range(0, len(data["x_test"]), 512)])
        rec["test_accuracy"] = float((pred == data["y_test"]).float().mean())
        rec["kernels"] = kernel_statistics(net, TRAIN["side"])
        rec["regime"] = longest_stage_regimes(net)
    return rec


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps({**settings, "train": TRAIN}, sort_keys=True).encode()).hexdigest()[:12]


def run_c21_cifar(settings: dict, folder: Path, *, device: str = "cpu", progress=None):
    """Train every (depth, seed) of ``settings`` in process, each run's record written to
    ``folder/runs/`` as it finishes; runs already there are kept (the study resumes). A table, one row a run."""
    import pandas as pd

    from odecheck.core.validation import writable_folder

    folder = writable_folder("out", folder)
    key = _settings_hash(settings)
    marker = folder / "settings.json"
    if marker.exists() and json.loads(marker.read_text()).get("hash") != key:
        raise invalid("out", str(folder), "a folder of the same c21-cifar settings (it holds another scale's or "
                                          "version's runs; choose another --out)")
    atomic_write(marker, lambda f: f.write(json.dumps({"hash": key, **settings, "train": TRAIN}, indent=1).encode()))
    jobs = [(L, s) for L in settings["depths"] for s in range(settings["seeds"])]
    data = None
    rows = []
    for i, (L, s) in enumerate(jobs):
        path = folder / "runs" / f"L{L:04d}-s{s}.json"
        if path.exists():
            rec = json.loads(path.read_text())
        else:
            if data is None:
                data = digits_images(TRAIN["side"], settings["n_train"])
            rec = train_one(L, s, settings, data, device)
            atomic_write(path, lambda f, r=rec: f.write(json.dumps(r).encode()))
        rows.append({"model.depth": L, "member": s, "status": rec["status"], "file": str(path.name),
                     "test_accuracy": rec.get("test_accuracy", float("nan")), "seconds": rec["seconds"]})
        report(progress, "reproduce", i + 1, len(jobs), path.stem, "done", [rows[-1]])
    return pd.DataFrame(rows)


def _spec(scale: str) -> dict:
    return dict(C21_CIFAR[scale])


def _statistic(rec: dict, fam: str, stat: str) -> float:
    s = np.asarray(rec["kernels"][fam], float)
    if stat == "maximum":
        return float(s.max())
    if stat == "root-ssq":
        return float(np.sqrt((s * s).sum()))
    d = np.asarray(rec["kernels"]["d" + fam], float)
    return float(np.nanmax(d))


def _analyse(df, out: Path, spec: dict):
    runs = {(int(r["model.depth"]), int(r["member"])): json.loads((out / "runs" / r["file"]).read_text())
            for _, r in df.iterrows()}
    if any(r["status"] != "done" for r in runs.values()):
        bad = sorted(k for k, r in runs.items() if r["status"] != "done")
        return [Result("c21-cifar", "diverged", float("nan"), (float("nan"),) * 2, "-",
                       note=f"runs (L, seed) with a non-finite loss: {bad}")], {}
    depths, seeds = sorted({L for L, _ in runs}), sorted({s for _, s in runs})
    results, panels = [], {}
    acc = np.array([[runs[L, s]["test_accuracy"] for s in seeds] for L in depths])
    # [C21]'s statement is about trained kernels: networks left at chance hold their initialization, whose
    # statistics (PyTorch's default, the same at every depth) say nothing about it
    untrained = float(np.median(acc)) < UNTRAINED_ACCURACY
    why = (f"not decided: the networks stayed near chance (test accuracy median {np.median(acc):.3f} < "
           f"{UNTRAINED_ACCURACY}), so the kernels are close to their initialization; ") if untrained else ""
    chance = [(L, s) for L in depths for s in seeds if runs[L, s]["test_accuracy"] < UNTRAINED_ACCURACY]
    stayed = f"; runs (L, seed) at chance, fitted as they are: {chance}" if chance and not untrained else ""
    for fam in ("A", "C"):
        for stat in STATS:
            V = np.array([[_statistic(runs[L, s], fam, stat) for s in seeds] for L in depths])
            fit = slope(depths, V)
            beta, ci = -fit.estimate, (-fit.ci[1], -fit.ci[0])
            c21 = ols_beta(depths, V[:, 0])
            paper = PAPER[fam, stat]
            name = {"A": "conv1 (A_k)", "C": "conv2 (C_k)"}[fam]
            results.append(Result(f"{fam}-{stat}", "inconclusive" if untrained else code_verdict(paper, ci), beta, ci,
                                  f"{paper} ([C21] Fig. 7 legend)", note=why + (
                f"{name} {stat} of the top singular values (FFT, circular): beta = -slope, members-t interval over "
                f"{len(seeds)} seeds (alpha {ALPHA}); [C21]'s OLS on seed 0: {c21:.3f}; depths {depths[0]}..{depths[-1]} "
                f"({len(depths)}); median at L = {depths[0]}: {np.median(V[0]):.3g}, at L = {depths[-1]}: "
                f"{np.median(V[-1]):.3g}{stayed}")))
            panels[f"{fam}-{stat}"] = {"median": np.median(V, 1).tolist(), "values": V.tolist(), "beta": beta, "c21": c21,
                                       "paper": paper}
    # the regime of trained networks only: a network left at chance holds its iid initialization, rough by construction
    learned = [s for s in seeds if runs[depths[-1], s]["test_accuracy"] >= UNTRAINED_ACCURACY] or seeds
    reg = {fam: [runs[depths[-1], s]["regime"][fam] for s in learned] for fam in ("A", "C")}
    flat = [r["regime"] for fam in reg for r in reg[fam]]
    verdict = ("inconclusive" if untrained else "confirmed" if all(r == "none" for r in flat) else
               "refuted" if all(r in ("ode", "sde") for r in flat) else "inconclusive")
    left = [s for s in seeds if s not in learned]
    first = reg["A"][0]
    results.append(Result("neither-limit", verdict, float(np.median(np.array([r["hurst"] for r in reg["A"]], float))),
                          (float("nan"),) * 2, "neither limit ([C21] sec. 4.3)", note=why + (
        f"odecheck's regime of k -> A_k and k -> C_k along stage {first['stage']} ({first['layers']} same-shaped "
        f"blocks) at L = {depths[-1]}, per trained seed: A {[r['regime'] for r in reg['A']]}, C "
        f"{[r['regime'] for r in reg['C']]}" + (f" (seeds {left} left out: at chance)" if left else "") +
        f"; estimate: median Hurst of A; first reason: {first['reason'] or '-'}; test accuracy median "
        f"{np.median(acc):.3f} (range {acc.min():.3f}-{acc.max():.3f})")))
    return results, {"depths": depths, "panels": panels, "accuracy": np.median(acc, 1).tolist(),
                     "chance": (acc < UNTRAINED_ACCURACY).tolist()}


def _figure(data: dict, results: list[Result], path: Path, title: str) -> Path:
    """[C21] Fig. 7's panels: each statistic of conv1 and conv2 against L (log-log): every run (crosses: left at
    chance), the median, beta in the legend, the figure's reported value as a reference slope."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    L = np.array(data["depths"], dtype=float)
    for row, fam in zip(axes, ("A", "C"), strict=True):
        for ax, stat in zip(row, STATS, strict=True):
            p = data["panels"][f"{fam}-{stat}"]
            V, chance = np.array(p["values"]), np.array(data["chance"], dtype=bool)
            for r in range(V.shape[1]):  # every run: dots, and crosses for the runs left at chance
                ax.scatter(L[~chance[:, r]], V[~chance[:, r], r], s=8, color="C0", alpha=0.4)
                ax.scatter(L[chance[:, r]], V[chance[:, r], r], s=14, marker="x", color="C3",
                           label="run at chance" if r == 0 and fam == "A" and stat == "maximum" and chance.any() else None)
            ax.loglog(L, p["median"], "o-", ms=3, label=f"odecheck: beta {p['beta']:.2f} (OLS seed 0: {p['c21']:.2f})")
            ax.loglog(L, p["median"][0] * (L / L[0]) ** -p["paper"], "--", color="gray",
                      label=f"[C21] legend: {p['paper']}")
            ax.set_title(f"{'conv1 A_k' if fam == 'A' else 'conv2 C_k'}: {stat}", fontsize=9)
            ax.set_xlabel("depth L (blocks)")
            depth_ticks(ax, data["depths"])
            ax.legend(fontsize=6)
    return save(fig, path, title)


C21_CIFAR_REPRODUCTION = Reproduction(
    "c21-cifar", "[C21] sec. 4.3, public code",
    "[C21]'s convolutional ResNet as its code trains it (post-activation blocks, no BatchNorm, no depth factor, "
    "four stages, SGD 0.1 + momentum 0.9 + weight decay 5e-4 + cosine, batch 128, crops and flips) on the digits "
    "resized to 32 x 32 in place of CIFAR-10: the top singular value of each conv operator, [C21]'s OLS exponents "
    "beside odecheck's, and the regime of the longest stage", _spec, _analyse, _figure, run=run_c21_cifar)


__all__ = ["C21Block", "C21ConvNet", "C21_CIFAR_REPRODUCTION", "kernel_statistics", "stage_sizes"]
