r"""Optimizers as objects: one registry, each with ``init(state)`` and ``step(net, grads, state, t, alive)``.

An optimizer says how one update moves the weights and whether it uses the full batch; the one
training loop (:func:`odecheck.training.train`) owns the data, the losses, divergence, snapshots and
callbacks. Each optimizer works on :attr:`odecheck.ResNet.params` (the engine's layer-major tensors)
with gradients in the same layout, and leaves a member whose ``alive`` entry is False where it is.

- :class:`GradientFlow` [M24]: explicit Euler on dA/dt = -dl/dA, dZ_k/dt = -L dl/dZ_k, dB/dt = -dl/dB
  (gradient descent with lr on A, B and L * lr on the per-layer families), optionally clipped:
  each update direction passes through clamp(., -clip, clip).
- :class:`SGD`: minibatch SGD, heavy-ball momentum and L2 weight decay as ``torch.optim.SGD``.
- :class:`Adam`: minibatch Adam (Kingma & Ba) with L2 weight decay as ``torch.optim.Adam``, as in the
  [C21] experiments.

SGD and Adam take a ``schedule`` ("constant", or "cosine" from lr to 0 over ``total_steps``) and
``depth_factor`` (the per-layer families move by L times the step, the factor of the gradient flow).
The state dict (buffers, the batch RNG, divergence) is plain data with string keys, saved in checkpoints,
so a run split into chunks equals one uninterrupted run.

References
----------
[M24] Marion et al., ICLR 2024, sec. 3-4.   [C21] Cohen et al., ICML 2021 (SGD, Adam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
import torch

from odecheck.core._errors import invalid
from odecheck.core.layout import member_axis
from odecheck.core.validation import check_choice, check_float

Method = Literal["gradient_flow", "sgd", "adam"]
Schedule = Literal["constant", "cosine"]
Sampling = Literal["random", "epochs", "c21-shuffle"]
METHODS: tuple[Method, ...] = ("gradient_flow", "sgd", "adam")
SCHEDULES: tuple[Schedule, ...] = ("constant", "cosine")
# how minibatches are drawn: "random" (each step batch_size distinct rows, drawn anew), "epochs" (each
# epoch a fresh permutation cut into consecutive batches, the last one shorter) or "c21-shuffle" (as
# "epochs", but each epoch shuffled as [C21]'s code does: np.random.shuffle on a torch tensor, whose
# swaps x[i], x[j] = x[j], x[i] of row views copy row j over row i, so rows are duplicated and lost,
# cumulatively over the epochs)
SAMPLINGS: tuple[Sampling, ...] = ("random", "epochs", "c21-shuffle")


def check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise invalid("lr", lr, "a finite float > 0")
    return lr


def flow_factor(net, name: str) -> float:
    """L for a per-layer family, 1 for A, B and a shared delta: the factor of the gradient flow."""
    return float(net.depth) if name in net.layered else 1.0


def masked(net, name: str, step: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``step`` with the members that are not ``alive`` zeroed (``step`` itself when all are)."""
    if bool(alive.all()):
        return step
    p = net.params[name]
    axis = member_axis(name, net.layered)
    shape = [1] * p.ndim
    shape[axis] = net.ensemble
    return torch.where(alive.view(shape), step, torch.zeros((), dtype=p.dtype, device=p.device))


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    """What every optimizer has: a learning rate, a name in :data:`OPTIMIZERS`, whether it steps on the
    full batch, and the state it keeps (:meth:`init`)."""

    name: ClassVar[Method]
    full_batch: ClassVar[bool]
    lr: float

    def __post_init__(self) -> None:
        check_lr(self.lr)

    def init(self, net, state: dict | None = None) -> dict:
        """The state this optimizer keeps for ``net``: ``state`` (a dict kept between the chunks of one run,
        from a checkpoint say) brought up to date, or a new one."""
        return {} if state is None else state

    def bind(self, *, steps: int, start_step: int) -> Optimizer:
        """This optimizer for a call of ``steps`` steps from ``start_step`` (a schedule's length)."""
        return self

    def halved(self) -> Optimizer:
        """The same optimizer with half the step: the step-halving check runs it for twice the steps."""
        return replace(self, lr=self.lr / 2)

    def step(self, net, grads: dict[str, torch.Tensor], state: dict, t: int, alive: torch.Tensor) -> None:
        """Update ``net.params`` in place with ``grads`` at update ``t`` (1-based, counted over the run)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class GradientFlow(Optimizer):
    """Explicit Euler on [M24]'s gradient flow with step ``lr``; ``clip``: clamp each update direction."""

    name: ClassVar[Method] = "gradient_flow"
    full_batch: ClassVar[bool] = True
    clip: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clip is not None and not (isinstance(self.clip, (int, float)) and self.clip > 0):
            raise invalid("clip", self.clip, "None or a positive float")

    def step(self, net, grads, state, t, alive) -> None:
        all_alive = bool(alive.all())
        for name in net.trainable:
            p, g = net.params[name], grads[name]
            if self.clip is None and all_alive:  # the common case: no weight-sized temporary
                p.sub_(g, alpha=self.lr * flow_factor(net, name))
                continue
            step = g * flow_factor(net, name)
            if self.clip is not None:
                step = step.clamp(-self.clip, self.clip)
            if not all_alive:
                step = masked(net, name, step, alive)
            p.sub_(step, alpha=self.lr)


@dataclass(frozen=True, kw_only=True)
class _Minibatch(Optimizer):
    """Minibatch optimizers: each member draws ``batch_size`` rows per step from its own stream (``seed``)."""

    full_batch: ClassVar[bool] = False
    batch_size: int
    seed: int = 0
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    total_steps: int | None = None
    depth_factor: bool = False
    sampling: Sampling = "random"
    # a parametrization's depth rule (odecheck.parametrizations): the per-layer (hidden) families' step and,
    # for Adam, their epsilon are multiplied by these; A, B and a shared delta keep lr and eps
    hidden_lr: float = 1.0
    hidden_eps: float = 1.0
    # per-member factors on the step (None: 1 for every member): an ensemble that holds a learning-rate grid,
    # member r moving by lr * member_lr[r] (odecheck.parametrizations trains claim 10's grid in one ensemble)
    member_lr: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("sampling", self.sampling, SAMPLINGS)
        for name in ("hidden_lr", "hidden_eps"):
            if not (check_float(name, getattr(self, name)) > 0):
                raise invalid(name, getattr(self, name), "a positive float")
        if not isinstance(self.depth_factor, bool):
            raise invalid("depth_factor", self.depth_factor, "a bool")
        if self.member_lr is not None:
            if isinstance(self.member_lr, (str, bytes)) or not hasattr(self.member_lr, "__iter__"):
                raise invalid("member_lr", self.member_lr, "None or one positive float per member")
            factors = tuple(self.member_lr)
            if not factors or not all(check_float("member_lr", f) > 0 for f in factors):
                raise invalid("member_lr", self.member_lr, "None or one positive float per member")
            object.__setattr__(self, "member_lr", factors)
        # batch_size: checked by the training loop against the number of rows

    def bind(self, *, steps: int, start_step: int) -> _Minibatch:
        total = start_step + steps if self.total_steps is None else self.total_steps
        if isinstance(total, bool) or not isinstance(total, int) or total < start_step + steps:
            raise invalid("total_steps", self.total_steps, f"an integer >= start_step + steps = {start_step + steps}")
        return replace(self, total_steps=total)

    def rate(self, t: int) -> float:
        """The step size at update t (1-based) of ``total_steps``: constant, or cosine from lr down to 0."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * (t - 1) / self.total_steps))

    def init(self, net, state: dict | None = None) -> dict:
        if self.member_lr is not None and len(self.member_lr) != net.ensemble:
            raise invalid("member_lr", f"<{len(self.member_lr)} factors>", f"one factor per member ({net.ensemble})")
        return super().init(net, state)

    def per_member(self, net, name: str, step: torch.Tensor) -> torch.Tensor:
        """``step`` times each member's ``member_lr`` factor (``step`` itself without them)."""
        if self.member_lr is None:
            return step
        p = net.params[name]
        shape = [1] * p.ndim
        shape[member_axis(name, net.layered)] = net.ensemble
        return step * torch.tensor(self.member_lr, dtype=p.dtype, device=p.device).view(shape)

    def gradient(self, net, name: str, grads) -> torch.Tensor:
        g = grads[name]
        return g.add(net.params[name], alpha=self.weight_decay) if self.weight_decay else g

    def factor(self, net, name: str) -> float:
        f = flow_factor(net, name) if self.depth_factor else 1.0
        return f * self.hidden_lr if name in net.layered else f


@dataclass(frozen=True, kw_only=True)
class SGD(_Minibatch):
    """Minibatch SGD with heavy-ball ``momentum`` (as torch.optim.SGD); buffers in state["momentum/NAME"]."""

    name: ClassVar[Method] = "sgd"
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.momentum < 1.0):
            raise invalid("momentum", self.momentum, "a float in [0, 1)")
        super().__post_init__()

    def init(self, net, state: dict | None = None) -> dict:
        state = super().init(net, state)
        for k in [k for k in net.trainable if k in state]:
            state[f"momentum/{k}"] = state.pop(k)  # checkpoints written before the keys were prefixed
        return state

    def step(self, net, grads, state, t, alive) -> None:
        rate = self.rate(t)
        for name in net.trainable:
            g = self.gradient(net, name, grads)
            if self.momentum:
                buf = state.setdefault(f"momentum/{name}", torch.zeros_like(g))
                buf.mul_(self.momentum).add_(g)
                g = buf
            net.params[name].sub_(masked(net, name, self.per_member(net, name, g), alive),
                                  alpha=rate * self.factor(net, name))


@dataclass(frozen=True, kw_only=True)
class Adam(_Minibatch):
    """Minibatch Adam; moments in state["m/NAME"], state["v/NAME"]."""

    name: ClassVar[Method] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def init(self, net, state: dict | None = None) -> dict:
        state = super().init(net, state)
        for k in [k for k in state if isinstance(k, tuple)]:
            state[f"{k[0]}/{k[1]}"] = state.pop(k)  # checkpoints written before: ("m", name) keys
        return state

    def step(self, net, grads, state, t, alive) -> None:
        b1, b2 = self.betas
        rate = self.rate(t)
        for name in net.trainable:
            g = self.gradient(net, name, grads)
            m = state.setdefault(f"m/{name}", torch.zeros_like(g))
            v = state.setdefault(f"v/{name}", torch.zeros_like(g))
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            # a structured io map's entries are s times its parameters (io_scale): Adam on the parameter,
            # scale-free, moves each entry by s times the step of the copies with eps scaled alike
            s = net.io_scale(name)
            eps = self.eps * self.hidden_eps if name in net.layered else self.eps
            step = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps * s)
            net.params[name].sub_(masked(net, name, self.per_member(net, name, step), alive),
                                  alpha=rate * (self.factor(net, name) * s))


OPTIMIZERS: dict[Method, type[Optimizer]] = {"gradient_flow": GradientFlow, "sgd": SGD, "adam": Adam}


def optimizer(method: str, **options) -> Optimizer:
    """The optimizer ``method`` of :data:`OPTIMIZERS` with ``options`` (its fields)."""
    check_choice("method", method, METHODS)
    return OPTIMIZERS[method](**options)
