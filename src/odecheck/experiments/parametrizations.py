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

from odecheck.core._errors import invalid
from odecheck.core.events import report
from odecheck.core.validation import check_choice, check_int
from odecheck.engine.optim import Adam, Optimizer, optimizer

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
    branch_init: float = 0.0  # std of the branch's last layer (V) at init ~ L^branch_init (residual-aware: -1/2)

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

    def initialize(self, net):
        """Apply the parametrization's initialization to ``net`` (in place; returned): the branch's last layer
        V scaled by L^branch_init (the residual-aware He fan-in init of [AM25]: Var V = 1 / (L fan-in); for res1,
        whose V has no 1/sqrt(fan-in) factor in the block, also by q^-1/2)."""
        if self.branch_init != 0.0:
            if "V" not in net.weights:
                raise invalid("block", net.block, "a block whose branch ends in V (mlp, res1) for the "
                                                  f"{self.name} initialization")
            # V's fan-in factor: mlp and conv apply 1/sqrt(fan-in) themselves; res1 (h + V sigma(h), entries N(0, 1))
            # does not
            from odecheck.engine.blocks import get as get_block

            fan_in = get_block(net.block).v_fan_in(net)
            net.load_weights_({"V": net.weights["V"] * fan_in * float(net.depth) ** self.branch_init})
        return net


PARAMETRIZATIONS: dict[str, Parametrization] = {p.name: p for p in (
    Parametrization("standard", 0.0, 0.0, 0.0, 0.0, "no residual scaling, one learning rate"),
    Parametrization("depth-mup", 0.5, 0.0, -0.5, 0.0, "[Y23, B23]: L^-1/2; SGD lr flat, Adam lr / sqrt(L)"),
    Parametrization("completep", 1.0, 1.0, 0.0, -1.0, "[CP25]: L^-1; Adam lr flat, hidden eps / L; SGD lr ~ L "
                                                       "(second-hand)"),
    Parametrization("residual-aware", 0.0, 0.0, 0.0, 0.0, "[AM25, W26]: no residual multiplier, the branch's last "
                                                          "layer at Var = 1 / (L fan-in), one base lr (its optimum "
                                                          "is predicted to fall like L_eff^-3/2)", branch_init=-0.5),
)}
# the parametrizations a TOML run (odecheck train, sweep) can name: those without an initialization of their own
RUN_PARAMETRIZATIONS: tuple[str, ...] = tuple(n for n, p in PARAMETRIZATIONS.items() if p.branch_init == 0.0)


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
    from odecheck.engine.blocks import REGISTRY
    from odecheck.engine.blocks import get as get_block

    if not REGISTRY[net.block].laziness or net.delta_mode != "fixed":
        raise invalid("net", f"block={net.block!r}, delta={net.delta_mode!r}",
                      "an mlp, res1 or single block with a fixed delta")
    block = REGISTRY[net.block]
    after = {k: v.detach().to(torch.float64) for k, v in net.weights.items()}
    before = {k: torch.as_tensor(v).detach().to(torch.float64) for k, v in before.items()}
    shell = net.clone().to(dtype=torch.float64)
    shell.load_weights_({k: before[k] for k in shell.weights})
    H = shell.hidden_states(torch.as_tensor(x, dtype=torch.float64))  # (R, L+1, n, q), before the step
    extra = get_block(net.block).naive_options(net)
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


def grid_network(cfg, depth: int):
    """The networks of one depth of claim 10's grid (``cfg``: a :class:`odecheck.claims.TransferConfig`) in one
    ensemble of G * R members: member g * R + r is seed member r (the same initialization for every learning
    rate) to be trained at learning rate 2^log2_lrs[g]."""
    from odecheck.engine.models import ResNet

    p = parametrization(cfg.parametrization)
    G, R = len(cfg.log2_lrs), cfg.ensemble
    kw = dict(block=cfg.block, depth=depth, dim=cfg.dim, width=cfg.width, activation=cfg.activation, init=cfg.init,
              seed=cfg.seed, dtype=cfg.torch_dtype, **p.model_options())
    seeds = p.initialize(ResNet(ensemble=R, **kw))
    net = ResNet(ensemble=G * R, **kw)
    return net.load_weights_({k: torch.cat([v] * G, dim=0) for k, v in seeds.weights.items()})


def grid_optimizer(cfg, depth: int) -> Optimizer:
    """The optimizer of one depth of claim 10's grid: the parametrization's rule at ``depth`` with the
    learning rates of :func:`grid_network`'s members as per-member factors (full batch)."""
    factors = tuple(float(2.0 ** x) for x in cfg.log2_lrs for _ in range(cfg.ensemble))
    return parametrization(cfg.parametrization).optimizer(cfg.method, lr=1.0, depth=depth, base_depth=cfg.base_depth,
                                                          batch_size=cfg.samples, member_lr=factors)


def final_losses(cfg, *, progress=None) -> np.ndarray:
    """(depths, learning rates, members) final full-batch losses of claim 10's grid ``cfg`` (a
    :class:`odecheck.claims.TransferConfig`) on the teacher task, NaN where a run diverged; each depth's
    learning rates train as one ensemble (:func:`grid_network`). ``progress``: a meter of
    :mod:`odecheck.events` (task "transfer", "done" per depth)."""
    from odecheck.engine.data import teacher_task
    from odecheck.engine.training import train

    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed, dtype=cfg.torch_dtype)
    G, R = len(cfg.log2_lrs), cfg.ensemble
    out = np.full((len(cfg.depths), G, R), np.nan)
    for d, L in enumerate(cfg.depths):
        loss = train(grid_network(cfg, L), data, grid_optimizer(cfg, L), steps=cfg.steps).loss[-1]
        out[d] = np.asarray(loss, dtype=float).reshape(G, R)
        report(progress, "transfer", d + 1, len(cfg.depths), L, "done", out[d])
    return out


def laziness_by_depth(cfg, *, progress=None) -> np.ndarray:
    """(depths, members) [CP25]'s laziness after one full-batch step at learning rate 2^lazy_log2_lr under the
    parametrization's rule, for the first ``lazy_members`` seed members of claim 10's grid ``cfg``."""
    from odecheck.engine.data import teacher_task
    from odecheck.engine.models import ResNet
    from odecheck.engine.training import train

    p = parametrization(cfg.parametrization)
    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed, dtype=torch.float64)
    out = np.empty((len(cfg.depths), cfg.lazy_members))
    for d, L in enumerate(cfg.depths):
        net = p.initialize(ResNet(block=cfg.block, depth=L, dim=cfg.dim, width=cfg.width, activation=cfg.activation,
                                  init=cfg.init, ensemble=cfg.lazy_members, seed=cfg.seed, dtype=torch.float64,
                                  **p.model_options()))
        before = {k: v.clone() for k, v in net.weights.items()}
        opt = p.optimizer(cfg.method, lr=2.0 ** cfg.lazy_log2_lr, depth=L, base_depth=cfg.base_depth,
                          batch_size=cfg.samples)
        train(net, data, opt, steps=1)
        out[d] = laziness(net, data.x, before).numpy()
        report(progress, "laziness", d + 1, len(cfg.depths), L, "done", out[d])
    return out


def depth_transfer(cfg, *, level: float = 0.95, progress=None):
    """eta*(L) over claim 10's grid ``cfg`` and its drift across depths (``estimators.transfer.transfer_slope``)."""
    from odecheck.analysis.estimators.transfer import transfer_slope

    return transfer_slope(cfg.depths, cfg.log2_lrs, final_losses(cfg, progress=progress), level=level)


__all__ = ["PARAMETRIZATIONS", "RUN_PARAMETRIZATIONS", "Parametrization", "depth_transfer", "final_losses", "grid_network", "grid_optimizer",
           "laziness", "laziness_by_depth", "parametrization"]
