"""Claim 13, lr-depth-law [W26, AM25]: with the residual-aware initialization (no residual multiplier, the
branch's last layer at Var = 1 / (L fan-in)) and one base learning rate, the optimal learning rate falls like
L_eff^-3/2, L_eff = L + 2 the shortest input-output path (the input map, L residual additions, the output map).

Per block (mlp, and conv beside it in the presets), two estimates, each at 1 - alpha/(2 B) for B blocks
(Bonferroni):

* the largest stable base learning rate of full-batch SGD ([W26]'s "maximal stable learning rate"; for full-batch
  SGD the loss-optimal rate sits at this edge at small depths, docs/theory.md), per seed member by bisection
  between the grid's ends, members-t slope of its log2 on log2 L_eff, decided against -3/2 with claim 10's band
  (half a grid step over the depths);
* the maximal-update learning rate of the sources' criterion: the one-step change of the hidden states per unit
  learning rate, its energy E(L) = sum over layers of the mean squared change; eta_MU ~ E^-1/2, so the law is
  a slope of E of +3 (members-t on log E, the same band on -slope/2).

Beside them, on the first block's grid in the thorough preset (and in ``reproduce lr-depth-law`` for every block):
CompleteP (SGD rule, predicted drift 0) and the standard parametrization (measured, whatever it is), in the
details; the quick and standard presets leave the controls out to stay within their time budget.

References
----------
[AM25] Arithmetic-Mean muP, arXiv 2510.04327.  [W26] arXiv 2602.07494 (OpenReview Q2tAR1xDFQ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from odecheck.analysis.estimators import scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, all_of, law_call
from odecheck.core._errors import invalid
from odecheck.experiments.claims.base import Advance, Claim, Evidence, no_progress
from odecheck.experiments.claims.transfer import TransferConfig

LAW_SLOPE = -1.5  # [W26, AM25]: eta*(L) ~ L_eff^-3/2
CONV = {"block": "conv", "dim": 16, "width": 4}  # the presets' conv block: 4 channels on 2 x 2 maps (64: 4 x 4)
CONTROLS = ("completep", "standard")


def effective_depth(L: int) -> int:
    """L_eff of an odecheck ResNet of L blocks: the input map, L residual additions, the output map."""
    return int(L) + 2


@dataclass(frozen=True, kw_only=True)
class LawConfig(TransferConfig):
    """Claim 10's grid (one base learning rate 2^x per cell, ``ensemble`` seeds, ``steps`` full-batch steps on the
    teacher task) under the residual-aware parametrization with SGD; ``controls``: further parametrizations run on
    the same grid for comparison (not decided)."""

    parametrization: str = "residual-aware"
    method: str = "sgd"
    depths: tuple[int, ...] = (4, 8, 16, 32, 64)
    log2_lrs: tuple[float, ...] = (-12.0, -3.0, 6.0)  # the bisection's bracket: its ends (3 values: the grid check)
    base_depth: int = 4
    ensemble: int = 6
    steps: int = 50
    controls: tuple[str, ...] = CONTROLS
    energy_members: int = 32
    also: tuple[dict, ...] = ()  # further blocks decided beside `block`: each the fields it changes (no controls)
    # conv: width = channels c, dim = c S^2 (the flattened c x S x S map; the input map is the engine's dense A)
    BLOCKS: ClassVar[tuple[str, ...]] = ("mlp", "res1", "conv")

    def __post_init__(self) -> None:
        from odecheck.core.validation import check_int
        from odecheck.experiments.parametrizations import parametrization

        super().__post_init__()
        from odecheck.engine.blocks import get as get_block

        get_block(self.block).check_shape(self.dim, self.width)
        for name in self.controls:
            parametrization(name)
        object.__setattr__(self, "controls", tuple(self.controls))
        check_int("energy_members", self.energy_members, 2)
        if isinstance(self.also, dict) or not all(isinstance(o, dict) and "also" not in o for o in self.also):
            raise invalid("also", self.also, "a sequence of field changes (dicts), one per further block")
        canon = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731 (a JSON round trip gives lists)
        object.__setattr__(self, "also", tuple({k: canon(v) for k, v in o.items()} for o in self.also))
        for o in self.also:
            self.further(o)  # validated like any config: an unknown or bad field names itself

    def further(self, changes: dict) -> LawConfig:
        """The config of a further block: these changes, the residual-aware rule alone (no controls)."""
        return self.replace(also=(), controls=(), **changes)


BISECTIONS = 7  # halvings of the 18-octave bracket: the edge to 18 / 2^7 = 0.14 octaves (uniform error, sd 0.04)


def max_stable_log2_lr(cfg: LawConfig, L: int, parametrization: str | None = None) -> np.ndarray:
    """(members,) log2 of the largest base learning rate whose run of ``steps`` full-batch steps ends finite and
    below its initial loss, per seed member, by bisection between the grid's ends (NaN for a member stable at
    the top or unstable at the bottom of the grid): one ensemble per bisection step, member r at its own lr."""
    from odecheck.engine.data import teacher_task
    from odecheck.engine.models import ResNet
    from odecheck.engine.training import train
    from odecheck.experiments.parametrizations import parametrization as get

    p = get(parametrization or cfg.parametrization)
    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed, dtype=cfg.torch_dtype)
    seeds = p.initialize(ResNet(block=cfg.block, depth=L, dim=cfg.dim, width=cfg.width, activation=cfg.activation,
                                init=cfg.init, ensemble=cfg.ensemble, seed=cfg.seed, dtype=cfg.torch_dtype,
                                **p.model_options()))

    def stable(log2_lr: np.ndarray) -> np.ndarray:
        opt = p.optimizer(cfg.method, lr=1.0, depth=L, base_depth=cfg.base_depth, batch_size=cfg.samples,
                          member_lr=tuple(float(2.0**x) for x in log2_lr))
        loss = train(seeds.clone(), data, opt, steps=cfg.steps).loss
        return np.isfinite(loss[-1]) & (loss[-1] <= loss[0])

    R = cfg.ensemble
    lo, hi = np.full(R, cfg.log2_lrs[0]), np.full(R, cfg.log2_lrs[-1])
    valid = stable(lo) & ~stable(hi)
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        ok = stable(mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(valid, (lo + hi) / 2, np.nan)


def update_energy(cfg: LawConfig, L: int, *, eps: float = 1e-7) -> np.ndarray:
    """(members,) the one-step change of the hidden states per unit learning rate of one full-batch SGD step
    under the parametrization at depth L: sum over layers k = 1..L of the mean over samples and coordinates
    of ((h_k(after) - h_k(before)) / eps)^2, in float64 at step eps (first order)."""
    from odecheck.engine.data import teacher_task
    from odecheck.engine.models import ResNet
    from odecheck.engine.training import train
    from odecheck.experiments.parametrizations import parametrization

    p = parametrization(cfg.parametrization)
    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed, dtype=torch.float64)
    net = p.initialize(ResNet(block=cfg.block, depth=L, dim=cfg.dim, width=cfg.width, activation=cfg.activation,
                              init=cfg.init, ensemble=cfg.energy_members, seed=cfg.seed, dtype=torch.float64,
                              **p.model_options()))
    before = net.hidden_states(data.x)[:, 1:]
    opt = p.optimizer("sgd", lr=eps, depth=L, base_depth=cfg.base_depth, batch_size=cfg.samples)
    train(net, data, opt, steps=1)
    dh = (net.hidden_states(data.x)[:, 1:] - before) / eps  # (R, L, n, q)
    return (dh**2).mean(dim=(2, 3)).sum(dim=1).numpy()


def lr_law_experiment(cfg: LawConfig, progress: Advance = no_progress) -> Evidence:
    cfgs = [cfg, *(cfg.further(o) for o in cfg.also)]
    level = 1 - cfg.alpha / (2 * len(cfgs))  # Bonferroni over two estimates per block
    parts = []
    for i, c in enumerate(cfgs):
        parts.append(block_law(c, level, lambda f, i=i: progress((i + f) / len(cfgs))))
    main = parts[0]
    verdict = all_of([call for p in parts for call in (p["stable_call"], p["mu_call"])])
    V = main["edges"][cfg.parametrization]
    return Evidence(verdict=verdict, estimate=main["slope"], ci=main["ci"], n=len(cfg.depths) * cfg.ensemble,
                    figure="loglog",
                    details={"depths": main["Leff"], "blocks": list(cfg.depths), "ensemble": cfg.ensemble,
                             "parametrization": cfg.parametrization, "method": cfg.method, "level": level,
                             "statistic": "d log eta_max / d log L_eff (eta_max: largest stable base lr, bisection)",
                             "law": LAW_SLOPE, "band": main["band"], "stable_call": main["stable_call"],
                             "declined": main["declined"], "values": edge_values(V),
                             "intercept": main["intercept"], "reference_slope": LAW_SLOPE, "ylabel": f"largest stable lr ({cfg.block})",
                             "energy": main["energy"], "energy_slope": main["energy_slope"], "energy_ci": main["energy_ci"],
                             "mu_slope": main["mu_slope"], "mu_ci": main["mu_ci"], "mu_call": main["mu_call"],
                             "controls": main["controls"], "block": cfg.block,
                             "further_blocks": [_summary(c, p) for c, p in zip(cfgs[1:], parts[1:], strict=True)]})


def block_law(cfg: LawConfig, level: float, progress: Advance = no_progress) -> dict:
    """One block's two estimates at ``level`` (the largest stable lr's slope and the update energy's), each
    called against -3/2 with claim 10's band, and the controls' stable-lr fits on the same grid."""
    runs = (cfg.parametrization, *cfg.controls)
    Leff = [effective_depth(L) for L in cfg.depths]
    band = 1.0 / (2.0 * np.log2(Leff[-1] / Leff[0]))  # claim 10's: half a grid step over the depths
    edges = {}
    for i, name in enumerate(runs):
        rows = []
        for j, L in enumerate(cfg.depths):
            rows.append(max_stable_log2_lr(cfg, L, name))
            progress(0.9 * (i + (j + 1) / len(cfg.depths)) / len(runs))
        edges[name] = np.array(rows)  # (depths, members), log2
    fits = {n: edge_fit(Leff, E, level, cfg.seed) for n, E in edges.items()}
    fit = fits[cfg.parametrization]
    stable_call = law_call(fit["ci"], LAW_SLOPE, band) if fit["declined"] is None else "inconclusive"
    E = np.array([update_energy(cfg, L) for L in cfg.depths])
    progress(1.0)
    efit = scaling_exponent(Leff, np.maximum(E, 1e-300), level=level, seed=cfg.seed, paired=True)
    mu_ci = (-efit.ci[1] / 2, -efit.ci[0] / 2)
    return {"Leff": Leff, "band": band, "edges": edges, **fit, "stable_call": stable_call, "energy": E,
            "energy_slope": efit.estimate, "energy_ci": efit.ci, "mu_slope": -efit.estimate / 2, "mu_ci": mu_ci,
            "mu_call": law_call(mu_ci, LAW_SLOPE, band),
            "controls": {n: {**fits[n], "log2_max_stable_lr": edges[n]} for n in cfg.controls}}


def _summary(cfg: LawConfig, part: dict) -> dict:
    """A further block's record in the claim's details."""
    return {"block": cfg.block, "dim": cfg.dim, "width": cfg.width, "depths": part["Leff"], "ensemble": cfg.ensemble,
            "steps": cfg.steps, "band": part["band"], "slope": part["slope"], "ci": part["ci"],
            "declined": part["declined"], "stable_call": part["stable_call"], "intercept": part["intercept"],
            "log2_max_stable_lr": part["edges"][cfg.parametrization], "values": edge_values(part["edges"][cfg.parametrization]),
            "mu_slope": part["mu_slope"], "mu_ci": part["mu_ci"], "mu_call": part["mu_call"]}


def edge_values(log2_edges: np.ndarray) -> np.ndarray:
    """The largest stable lrs to draw: 2^edge, a member without an edge on the grid drawn at 2^-60."""
    return np.exp2(np.nan_to_num(log2_edges, nan=-60.0))


def edge_fit(Leff, E: np.ndarray, level: float, seed: int) -> dict:
    """Members-t slope of log2 eta_max on log2 L_eff; declined (with the reason) where a depth has a member
    without a stable edge inside the grid."""
    missing = [int(L) for L, row in zip(Leff, E, strict=True) if np.isnan(row).any()]
    if missing:
        return {"slope": float("nan"), "ci": (float("nan"), float("nan")), "intercept": 0.0,
                "declined": f"no stable edge inside the grid at L_eff = {missing}"}
    f = scaling_exponent(Leff, np.exp2(E), level=level, seed=seed, paired=True)
    return {"slope": f.estimate, "ci": f.ci, "intercept": f.intercept, "declined": None}


LR_DEPTH_LAW = Claim(
    id="lr-depth-law",
    statement="With the residual-aware initialization (no residual multiplier, Var V = 1 / (L fan-in)) and one base "
              "learning rate, the optimal learning rate falls like L_eff^-3/2.",
    source="[W26]; [AM25]",
    scope={"parametrization": ["residual-aware"], "method": ["sgd"], "block": ["mlp", "res1", "conv"],
           "criterion": "the largest stable lr (bisection) and the maximal update (one-step hidden-state energy)"},
    expected="confirmed", alpha=ALPHA,
    decision="per block (mlp and conv), two slopes against -3/2, each with a members-t interval at 1 - alpha/(2 "
             "blocks) (Bonferroni): log2 of the largest stable base lr (bisection per seed) on log2 L_eff, and -1/2 "
             "times the log-log slope of the one-step update energy; each 'follows' the law inside -3/2 +- "
             "1/(2 log2(L_eff,max/L_eff,min)), 'departs' outside: confirmed if all follow it, refuted if any departs",
    presets={"quick": LawConfig(depths=(4, 8, 16, 32), ensemble=4, controls=(),
                                also=({**CONV, "depths": (4, 8, 16), "ensemble": 4, "steps": 15},)),
             "standard": LawConfig(controls=(), also=({**CONV, "depths": (4, 8, 16, 32), "ensemble": 4, "steps": 25},)),
             "thorough": LawConfig(depths=(4, 8, 16, 32, 64, 128), ensemble=12, steps=100,
                                   also=({**CONV, "dim": 64, "depths": (4, 8, 16, 32, 64), "ensemble": 8},))},
    experiment=lr_law_experiment)
