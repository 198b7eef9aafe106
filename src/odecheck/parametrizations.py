r"""Depth parametrizations: how the residual multiplier and the learning rate scale with depth L.

A parametrization fixes the residual multiplier L^-alpha (the model's ``beta = alpha``) and the step of
the per-layer (hidden) weights as a power of m_L = L / L_base, for SGD and for Adam (whose epsilon for the
hidden weights may scale too). The rules, from the authors' code where it could be read
(../shared/SCIENCE.md, claim 10; docs/theory.md):

- ``standard``: alpha = 0 (no residual scaling), one learning rate for every weight.
- ``depth-mup`` [Y23, B23]: alpha = 1/2; SGD: the same learning rate at every depth; Adam: hidden lr
  eta m_L^-1/2.
- ``completep`` [CP25]: alpha = 1; Adam: hidden lr eta m_L^(alpha - 1) (= eta, flat at alpha = 1) and
  hidden epsilon eps m_L^-alpha; SGD: hidden lr eta m_L^(2 alpha - 1) (second-hand scale counting, not read
  from code).

[CP25]'s argument for alpha = 1: after one step the nonlinear part of a block's change is
Theta(L^(alpha - 2)) against a linear part Theta(L^-1), so the ratio (:func:`laziness`) scales like
L^(alpha - 1): for alpha < 1 the blocks become lazy (linear) as L grows.

References
----------
[Y23] Yang et al., Tensor Programs VI (2023).  [B23] Bordelon et al., arXiv 2309.16620.
[CP25] CompleteP, arXiv 2505.01618 (public code: EleutherAI nanoGPT-mup, branch ``completep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ._errors import invalid
from .events import report
from .optim import Adam, Optimizer, optimizer
from .validation import check_choice, check_int

Name = Literal["standard", "depth-mup", "completep"]


@dataclass(frozen=True)
class Parametrization:
    """alpha: the residual multiplier L^-alpha; ``sgd`` and ``adam``: the exponents of m_L = L / L_base for the
    hidden lr (and, for Adam, the hidden epsilon)."""

    name: Name
    alpha: float
    sgd_lr: float  # hidden lr ~ m_L^sgd_lr under SGD
    adam_lr: float  # hidden lr ~ m_L^adam_lr under Adam
    adam_eps: float  # hidden epsilon ~ m_L^adam_eps under Adam
    source: str

    def optimizer(self, method: str, *, lr: float, depth: int, base_depth: int, **options) -> Optimizer:
        """The optimizer ``method`` ("sgd" or "adam") with base learning rate ``lr`` and this parametrization's
        depth rule at ``depth`` (m_L = depth / base_depth); ``options``: the optimizer's other fields."""
        check_choice("method", method, ("sgd", "adam"))
        check_int("depth", depth, 1)
        check_int("base_depth", base_depth, 1)
        mL = depth / base_depth
        if method == "sgd":
            return optimizer("sgd", lr=lr, hidden_lr=mL ** self.sgd_lr, **options)
        return Adam(lr=lr, hidden_lr=mL ** self.adam_lr, hidden_eps=mL ** self.adam_eps, **options)

    def model_options(self) -> dict:
        """What the model takes from the parametrization: ``beta`` = alpha."""
        return {"beta": self.alpha}


PARAMETRIZATIONS: dict[str, Parametrization] = {p.name: p for p in (
    Parametrization("standard", 0.0, 0.0, 0.0, 0.0, "no residual scaling, one learning rate"),
    Parametrization("depth-mup", 0.5, 0.0, -0.5, 0.0, "[Y23, B23]: L^-1/2; SGD lr flat, Adam lr / sqrt(L)"),
    Parametrization("completep", 1.0, 1.0, 0.0, -1.0, "[CP25]: L^-1; Adam lr flat, hidden eps / L; SGD lr ~ L "
                                                       "(second-hand)"),
)}


def parametrization(name: str) -> Parametrization:
    """The parametrization ``name`` of :data:`PARAMETRIZATIONS`."""
    if name not in PARAMETRIZATIONS:
        raise invalid("parametrization", name, f"one of {', '.join(PARAMETRIZATIONS)}")
    return PARAMETRIZATIONS[name]


def laziness(net, x, before: dict[str, torch.Tensor]) -> torch.Tensor:
    r"""[CP25]'s laziness of one update, per member (R,): with h_k the hidden states of the weights
    ``before`` (public layout, as ``net.weights`` was before the step) and Delta Z_k = Z_k(after) - Z_k(before),
    the change of each block f(h_k; Z_k) splits into its linear part J_Z f . Delta Z_k (a Jacobian-vector
    product) and the rest; the statistic is sqrt(sum_k ||rest_k||^2 / sum_k ||linear_k||^2) over layers and
    samples. Each block is evaluated at the same h_k, the states before the step (the block's own change,
    not the propagated one). mlp, res1 and single blocks (fixed delta)."""
    from .blocks import REGISTRY

    if net.block not in ("mlp", "res1", "single") or net.delta_mode != "fixed":
        raise invalid("net", f"block={net.block!r}, delta={net.delta_mode!r}",
                      "an mlp, res1 or single block with a fixed delta")
    block = REGISTRY[net.block]
    after = {k: v.detach().to(torch.float64) for k, v in net.weights.items()}
    before = {k: torch.as_tensor(v).detach().to(torch.float64) for k, v in before.items()}
    shell = net.clone().to(dtype=torch.float64)
    shell.load_weights_({k: before[k] for k in shell.weights})
    H = shell.hidden_states(torch.as_tensor(x, dtype=torch.float64))  # (R, L+1, n, q), before the step
    extra = {"width_factors": net.width_factors} if net.block == "mlp" else {}
    R, L = net.ensemble, net.depth
    out = torch.empty(R, dtype=torch.float64)
    for r in range(R):
        lin2 = rest2 = torch.zeros((), dtype=torch.float64)
        for k in range(L):
            z0 = {f: before[f][r, k] for f in block.families}
            dz = {f: after[f][r, k] - z0[f] for f in block.families}

            def f(z, h=H[r, k]):
                return block.naive_update(h, z, depth=L, beta=net.beta, q=net.dim, m=net.width,
                                          activation=net.activation, **extra)

            y0, lin = torch.func.jvp(f, (z0,), (dz,))
            rest = f({g: z0[g] + dz[g] for g in z0}) - y0 - lin
            lin2, rest2 = lin2 + (lin * lin).sum(), rest2 + (rest * rest).sum()
        out[r] = (rest2 / lin2).sqrt()
    return out




@dataclass(frozen=True, kw_only=True)
class TransferGrid:
    """The experiment of claim 10: for one parametrization and optimizer, every learning rate 2^x of
    ``log2_lrs`` at every depth of ``depths``, ``ensemble`` members (independent seeds) trained ``steps``
    full-batch steps on the [M24] teacher task (n samples, dim d, an mlp teacher); the final losses."""

    parametrization: str
    method: str = "adam"
    depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    log2_lrs: tuple[float, ...] = tuple(float(x) for x in range(-12, 3))
    steps: int = 100
    base_depth: int = 8
    ensemble: int = 4
    seed: int = 0
    dim: int = 8
    width: int = 16
    activation: str = "gelu"
    init: str = "iid"
    n: int = 64

    def __post_init__(self) -> None:
        parametrization(self.parametrization)
        check_choice("method", self.method, ("sgd", "adam"))
        for name in ("steps", "base_depth", "ensemble", "dim", "width", "n"):
            check_int(name, getattr(self, name), 1)
        if len(self.depths) < 3 or any(not isinstance(L, int) or L < 1 for L in self.depths):
            raise invalid("depths", self.depths, "at least 3 positive integer depths")
        if len(self.log2_lrs) < 3:
            raise invalid("log2_lrs", self.log2_lrs, "at least 3 learning rates (powers of 2)")


def final_losses(grid: TransferGrid, *, progress=None) -> np.ndarray:
    """(depths, learning rates, members) final full-batch losses of ``grid`` (NaN where a run diverged);
    ``progress``: a meter of :mod:`odecheck.events` (task "transfer", "done" per (depth, learning rate))."""
    from .data import teacher_task
    from .models import ResNet
    from .training import train

    p = parametrization(grid.parametrization)
    data = teacher_task(grid.n, grid.dim, seed=grid.seed, dtype=torch.float64)
    out = np.full((len(grid.depths), len(grid.log2_lrs), grid.ensemble), np.nan)
    total = out.shape[0] * out.shape[1]
    for d, L in enumerate(grid.depths):
        for g, x in enumerate(grid.log2_lrs):
            net = ResNet(block="mlp", depth=L, dim=grid.dim, width=grid.width, activation=grid.activation,
                         init=grid.init, ensemble=grid.ensemble, seed=grid.seed, dtype=torch.float64,
                         **p.model_options())
            opt = p.optimizer(grid.method, lr=2.0 ** x, depth=L, base_depth=grid.base_depth, batch_size=grid.n)
            out[d, g] = train(net, data, opt, steps=grid.steps).loss[-1]
            report(progress, "transfer", d * out.shape[1] + g + 1, total, (L, x), "done", out[d, g])
    return out


def depth_transfer(grid: TransferGrid, *, level: float = 0.95, progress=None):
    """eta*(L) over ``grid`` and its drift across depths (``estimators.transfer.transfer_slope``)."""
    from .estimators.transfer import transfer_slope

    return transfer_slope(grid.depths, grid.log2_lrs, final_losses(grid, progress=progress), level=level)


__all__ = ["PARAMETRIZATIONS", "Parametrization", "TransferGrid", "depth_transfer", "final_losses", "laziness",
           "parametrization"]
