"""Claim 12, ode-discretization [S22]: a ResNet is a discretization of an ODE in the sense that matters for
memory-free training exactly when its weights are smooth in depth.

Three parts, each a log-log slope over depths with a Student-t interval over independent members:

* recovering h_0 backward from h_L by the reverse Euler step (the memory-free adjoint) errs by O(1/L) for
  Lipschitz blocks whatever the weights' regularity (smooth and iid weights), and so does the gradient
  computed with the recovered activations;
* Heun's scheme on the same weight nodes, reversed by Heun's step, errs by O(1/L^2) when the weights are
  smooth in depth, and not for iid weights;
* the linear ResNet h_{k+1} = h_k + (1/L) A_k h_k trained by gradient flow from A = 0 towards a target near
  the identity keeps max_{k,t} ||A_{k+1}(t) - A_k(t)||_F = O(1/L) (implicit regularization).

References
----------
[S22] Sander, Ablin, Peyre, NeurIPS 2022 (arXiv 2205.14612): sec. 3-5, Fig. 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from odecheck.analysis.estimators import scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, ORDER_SLACK, all_of, order_call
from odecheck.analysis.estimators.discretization import gradient_error, reconstruction_error
from odecheck.core._errors import invalid
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress

# (part, weights, scheme, order, reaches): the claim's cells; order p is the rate L^-p the cell is decided
# against, ``reaches`` whether the error reaches that rate (True) or stays slower (False)
CELLS: tuple[tuple[str, str, str, int, bool], ...] = (
    ("reconstruction", "smooth", "euler", 1, True),
    ("reconstruction", "iid", "euler", 1, True),
    ("reconstruction", "smooth", "heun", 2, True),
    ("reconstruction", "iid", "heun", 2, False),
    ("gradient", "smooth", "euler", 1, True),
    ("gradient", "smooth", "heun", 2, True),
    ("linear training", "zero", "euler", 1, True),
)


ROUNDING = 1e-12  # errors below this (about 1e4 float64 epsilons) are rounding, not discretization

@dataclass(frozen=True, kw_only=True)
class DiscretizationConfig(ExperimentConfig):
    """``ensemble`` networks per depth of ``block`` (``dim`` = q, ``width`` = m, ``activation``) at beta = 1
    with smooth weights (``smooth``: Gaussian-process paths of length scale ``length_scale``) and iid N(0, 1)
    weights (``rough``), their reconstruction and gradient errors on ``samples`` Gaussian inputs in float64;
    and ``ensemble`` linear ResNets on R^linear_dim from A = 0 trained ``steps`` gradient-flow steps of
    ``lr`` towards I + target_scale N(0, 1) targets (one per member)."""

    depths: tuple[int, ...] = (16, 32, 64, 128, 256)
    ensemble: int = 6
    block: str = "mlp"
    dim: int = 8
    width: int = 8
    activation: str = "tanh"
    samples: int = 16
    length_scale: float = 0.2
    smooth: str = "smooth"  # the init whose weights are smooth in depth (falsify may widen it)
    rough: str = "iid"
    linear_dim: int = 4
    target_scale: float = 0.3
    steps: int = 200
    lr: float = 0.5

    def __post_init__(self) -> None:
        from odecheck.core.validation import check_choice, check_float, check_int
        from odecheck.engine.init import as_init

        super().__post_init__()
        check_choice("block", self.block, ("mlp", "res1"))
        if self.ensemble < 2:
            raise invalid("ensemble", self.ensemble, "at least 2 members (the interval is over members)")
        if min(self.depths) < 2:
            raise invalid("depths", list(self.depths), "depths of at least 2 (Heun's scheme needs two nodes)")
        for name in ("smooth", "rough"):
            as_init(getattr(self, name))
        check_int("linear_dim", self.linear_dim, 1)
        if check_float("target_scale", self.target_scale) <= 0:
            raise invalid("target_scale", self.target_scale, "a positive float")


GRID = 2049  # points of the fine grid the smooth weight functions are drawn on
_FUNCTIONS: dict = {}


def _net(cfg: DiscretizationConfig, L: int, init: str):
    """``ensemble`` networks of depth L. Smooth weights: member r is one Gaussian-process weight function
    Z_r(s) on a fine grid (the same at every depth), linearly interpolated at the nodes s_k = k / (L - 1);
    other inits: the engine's initialization."""
    from odecheck.engine import blocks
    from odecheck.engine.init import as_init, gp_paths, member_generator
    from odecheck.engine.models import ResNet

    i = as_init(init)
    if i.kind != "smooth":
        return ResNet(block=cfg.block, depth=L, dim=cfg.dim, width=cfg.width, activation=cfg.activation, beta=1.0,
                      init=i, ensemble=cfg.ensemble, seed=cfg.seed, dtype=torch.float64, device="cpu")
    scale = cfg.length_scale if "(" not in str(init) else i.length_scale
    shapes = blocks.get(cfg.block).layer_shapes(cfg.dim, cfg.width)
    pos = np.arange(L) / (L - 1) * (GRID - 1)
    k0 = np.minimum(np.floor(pos).astype(int), GRID - 2)
    w = (pos - k0)[:, None]
    stacks = {f: np.empty((cfg.ensemble, L, *shp)) for f, shp in shapes.items()}
    key = (cfg.seed, cfg.ensemble, cfg.block, cfg.dim, cfg.width, scale)
    if _FUNCTIONS.get("key") != key:  # the functions of the last config: drawn once for all its depths
        _FUNCTIONS.clear()
        for r in range(cfg.ensemble):
            g = member_generator(cfg.seed + 123, r)
            for f, shp in shapes.items():
                _FUNCTIONS[(r, f)] = gp_paths(int(np.prod(shp)), GRID, scale, g).T.numpy()  # (GRID, entries)
        _FUNCTIONS["key"] = key
    for r in range(cfg.ensemble):
        for f, shp in shapes.items():
            Z = _FUNCTIONS[(r, f)]
            stacks[f][r] = ((1 - w) * Z[k0] + w * Z[k0 + 1]).reshape(L, *shp)
    return ResNet.from_weights(block=cfg.block, **stacks, activation=cfg.activation, dtype=torch.float64)


def error_panels(cfg: DiscretizationConfig, progress: Advance = no_progress) -> dict[tuple[str, str, str], np.ndarray]:
    """(part, weights, scheme) -> (depths, members) errors, for the reconstruction and gradient cells."""
    from odecheck.engine.init import member_generator

    g = member_generator(cfg.seed + 121, 0)
    x = torch.randn(cfg.samples, cfg.dim, generator=g, dtype=torch.float64)
    y = torch.randn(cfg.samples, cfg.dim, generator=g, dtype=torch.float64)
    wanted = [c[:3] for c in CELLS if c[0] != "linear training"]
    out: dict[tuple[str, str, str], list] = {k: [] for k in wanted}
    for i, L in enumerate(cfg.depths):
        for kind, init in (("smooth", cfg.smooth), ("iid", cfg.rough)):
            net = _net(cfg, L, init)
            for part, weights, scheme in wanted:
                if weights != kind:
                    continue
                e = reconstruction_error(net, x, scheme) if part == "reconstruction" else gradient_error(net, x, y, scheme)
                out[(part, weights, scheme)].append(e.numpy())
        progress(0.7 * (i + 1) / len(cfg.depths))
    return {k: np.maximum(np.array(v), 1e-300) for k, v in out.items()}


def linear_increments(cfg: DiscretizationConfig, progress: Advance = no_progress) -> np.ndarray:
    """(depths, members) max over layers and steps of ||A_{k+1}(t) - A_k(t)||_F, linear ResNets from A = 0."""
    from odecheck.engine.flow import gradient_flow
    from odecheck.engine.init import member_generator
    from odecheck.engine.models import ResNet

    d, R = cfg.linear_dim, cfg.ensemble
    g = member_generator(cfg.seed + 122, 0)
    target = torch.eye(d, dtype=torch.float64) + cfg.target_scale * torch.randn(R, d, d, generator=g, dtype=torch.float64)
    x = torch.eye(d, dtype=torch.float64)  # F(e_i) = X e_i: the network is the matrix product X itself
    y = target.transpose(1, 2)  # row i: B e_i
    D = []
    for i, L in enumerate(cfg.depths):
        net = ResNet(block="res1", depth=L, dim=d, activation="identity", beta=1.0, init="zero", ensemble=R,
                     seed=cfg.seed, dtype=torch.float64, device="cpu")
        traj = gradient_flow(net, x, y, steps=cfg.steps, lr=cfg.lr)
        D.append(traj.max_increment.max(axis=0))
        progress(0.7 + 0.3 * (i + 1) / len(cfg.depths))
    return np.maximum(np.array(D), 1e-300)


def discretization_experiment(cfg: DiscretizationConfig, progress: Advance = no_progress) -> Evidence:
    depths = list(cfg.depths)
    panels = error_panels(cfg, progress)
    panels[("linear training", "zero", "euler")] = linear_increments(cfg, progress)
    if not all(np.isfinite(v).all() for v in panels.values()):
        return Evidence.diverged(depths=depths)
    level = 1 - cfg.alpha / len(CELLS)  # Bonferroni over the cells
    cells, calls = [], []
    for j, (part, weights, scheme, order, reaches) in enumerate(CELLS):
        V = panels[(part, weights, scheme)]
        fit = scaling_exponent(depths, V, level=level, seed=cfg.seed + j, paired=True)
        # model check: an error at float64 rounding (or exactly 0: a vanishing branch, e.g. the tied init's
        # V = 0) has no power law to fit; the cell declines
        call = order_call(fit.ci, order, reaches=reaches) if V.min() > ROUNDING else "inconclusive"
        calls.append(call)
        cells.append({"part": part, "weights": weights, "scheme": scheme, "order": order, "reaches": reaches,
                      "slope": fit.estimate, "ci": fit.ci, "call": call, "values": V,
                      "declined": None if V.min() > ROUNDING else "errors at float64 rounding or exactly 0",
                      "label": f"{part}, {weights} weights, {scheme}: slope {fit.estimate:.2f} "
                               f"({'<' if reaches else '>'} {-order + ORDER_SLACK:g}: {call})"})
    head = cells[2]  # Heun on smooth weights: the cell that separates an ODE discretization from a ResNet
    return Evidence(verdict=all_of(calls), estimate=head["slope"], ci=head["ci"], n=len(depths) * cfg.ensemble,
                    figure="cells",
                    details={"depths": depths, "ensemble": cfg.ensemble, "level": level, "cells": cells,
                             "statistic": "log-log slopes of reconstruction and gradient errors (Euler, Heun) and of "
                                          "the linear ResNet's max increment",
                             "ylabel": "error (geometric mean over members)"})


DISCRETIZATION = Claim(
    id="ode-discretization",
    statement="Reversing a ResNet by reverse Euler errs by O(1/L) for Lipschitz blocks whatever the weights; Heun's "
              "scheme reversed errs by O(1/L^2) exactly when the weights are smooth in depth; a linear ResNet trained "
              "from A = 0 keeps max_k ||A_{k+1} - A_k|| = O(1/L).",
    source="[S22] sec. 3-5",
    scope={"block": ["mlp", "res1"], "activation": ["tanh", "gelu", "softplus", "identity"], "beta": [1.0],
           "weights": "smooth in depth (Heun cells) / any bounded (Euler cells)"},
    expected="confirmed", alpha=ALPHA,
    decision="7 log-log slopes, each with a (1 - 0.05/7) Student-t interval over members (Bonferroni): a cell "
             "'reaches' order p if its interval lies below -p + 0.15, 'stays slower' if above; confirmed if every "
             "cell shows its prediction, refuted if any interval shows the opposite",
    presets={"quick": DiscretizationConfig(depths=(16, 32, 64, 128), steps=100),
             "standard": DiscretizationConfig(),
             "thorough": DiscretizationConfig(depths=(16, 32, 64, 128, 256, 512), ensemble=12, steps=400)},
    experiment=discretization_experiment)
