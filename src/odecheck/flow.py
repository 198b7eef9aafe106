r"""Training: gradient flow with the factor L on block weights, and minibatch SGD / Adam.

Gradient flow [M24]: dA/dt = -dl/dA, dZ_k/dt = -L dl/dZ_k, dB/dt = -dl/dB, integrated by
explicit Euler with step ``lr`` (gradient descent with learning rate lr on A, B and L*lr on
Z_k). The optional clipped flow passes every update through the bounded Lipschitz map
clamp(., -clip, clip). The PL ratio is

    r(t) = (||dl/dA||^2 + L sum_k ||dl/dZ_k||^2 + ||dl/dB||^2) / l(t)

over the trained parameters (Def. 1 of [M24]).

References
----------
[M24] Marion et al., ICLR 2024, sec. 3-4.   [C21] Cohen et al., ICML 2021 (SGD, Adam).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._errors import invalid
from ._kernels import GraphedLossAndGrads
from ._kernels import forward as _engine_forward
from ._kernels import loss_and_grads as _engine_loss_and_grads
from .blocks.base import loss_function
from .layout import member_axis
from .models import ResNet, as_tensor, layer_increments
from .validation import check_choice, check_float, check_int

StepCallback = Callable[[int, np.ndarray], None]


@dataclass(frozen=True, kw_only=True)
class Trajectory:
    """What a training run recorded. Arrays have one row per step t = 0..steps (row 0: start).

    Attributes
    ----------
    loss : (steps+1, R)
    pl_ratio : (steps+1, R)  PL ratio r(t) (NaN for SGD/Adam)
    grad_norm : (steps+1, R)  sqrt of the PL numerator
    max_increment : (steps+1, R)  max_k ||Z_{k+1}(t) - Z_k(t)||_F
    diverged_at : (R,) first step whose loss was NaN/inf, -1 if none
    snapshots : step -> weights (numpy, (R, L, ...)) at the requested steps only
    discretization_error : relative weight gap to the half-step flow, (R,), if requested
    """

    method: str
    lr: float
    depth: int
    loss: np.ndarray
    pl_ratio: np.ndarray
    grad_norm: np.ndarray
    max_increment: np.ndarray
    diverged_at: np.ndarray
    snapshots: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    discretization_error: np.ndarray | None = None
    start_step: int = 0

    @property
    def steps(self) -> int:
        return self.start_step + self.loss.shape[0] - 1

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    def then(self, later: Trajectory) -> Trajectory:
        """Join this run with its continuation (whose row 0 repeats this run's last step).

        For gradient flow the two rows are the same evaluation and the first is kept; for SGD/Adam
        this run's last row is a full-batch loss and the continuation's row 0 the minibatch loss of
        that step, which is kept so that all rows but the last are minibatch losses."""
        if self.method == "gradient_flow":
            cat = lambda a, b: np.concatenate([a, b[1:]], axis=0)
        else:
            cat = lambda a, b: np.concatenate([a[:-1], b], axis=0)
        div = np.where(self.diverged_at >= 0, self.diverged_at, later.diverged_at)
        snaps = {**self.snapshots, **later.snapshots}
        return replace(self, loss=cat(self.loss, later.loss), pl_ratio=cat(self.pl_ratio, later.pl_ratio),
                       grad_norm=cat(self.grad_norm, later.grad_norm),
                       max_increment=cat(self.max_increment, later.max_increment), diverged_at=div,
                       snapshots=snaps, discretization_error=later.discretization_error)

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for np.savez."""
        out = {"loss": self.loss, "pl_ratio": self.pl_ratio, "grad_norm": self.grad_norm,
               "max_increment": self.max_increment, "diverged_at": self.diverged_at,
               "lr": np.array(self.lr), "depth": np.array(self.depth), "start_step": np.array(self.start_step),
               "method": np.array(self.method)}
        if self.discretization_error is not None:
            out["discretization_error"] = self.discretization_error
        return out



def _flow_factor(net: ResNet, name: str) -> float:
    return float(net.depth) if name in net.layered else 1.0


def _sq_norm(net: ResNet, name: str, g: torch.Tensor) -> torch.Tensor:
    axis = member_axis(name, net.layered)
    others = tuple(i for i in range(g.ndim) if i != axis)
    if not others:
        return g.double() ** 2
    return torch.linalg.vector_norm(g, dim=others).double() ** 2  # no transposed copy of g


def _check_data(net: ResNet, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x = net._prepare_input(x)
    y = as_tensor("y", y, ndim=(2, 3), dtype=net.dtype, device=net.device)
    if y.shape[-1] != net.output_dim:
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"last dimension output_dim={net.output_dim}")
    if y.shape[-2] != x.shape[-2]:
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"{x.shape[-2]} samples like x")
    if y.ndim == 3 and y.shape[0] not in (1, net.ensemble):
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"leading ensemble axis 1 or R={net.ensemble}")
    return x, y


def loss_and_grads(net: ResNet, x, y, *, recompute: int | None = None, loss: str = "mse"
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Per-member loss and its gradients, computed by the engine (fused or batched path).

    l_r = (1/n) sum_i ||F_r(x_i) - y_i||^2 for every member r (``loss="mse"``; ``"cross_entropy"``:
    -(1/n) sum_i sum_c y_ic log softmax(F_r(x_i))_c with one-hot rows y_i), and dl_r/dtheta_r for every trained
    parameter theta (``net.trainable``) in the public layout: per-layer families (R, L, ...) like
    ``net.weights``, A (R, q, d), B (R, d', q). The tensors are new (not overwritten by later
    calls). Apply them with ``net.update_(grads, lr)``; ``net.update_(grads, lr, flow=True)`` is one
    Euler step of :func:`gradient_flow`.

    Parameters
    ----------
    net : ResNet
    x : (n, d) or (R, n, d);  y : (n, d') or (R, n, d')
    recompute : mlp block only: keep one hidden state per ``recompute`` layers (bounded memory)

    Returns
    -------
    loss : (R,) tensor;  grads : dict name -> tensor
    """
    x, y = _check_data(net, x, y)
    value, grads = _engine_loss_and_grads(net, x, y, segment=recompute, loss=loss)
    return value, {k: v for k, v in net.public(grads).items() if k in net.trainable}


def _check_steps(steps, lr) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise invalid("steps", steps, "an integer >= 0")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise invalid("lr", lr, "a finite float > 0")


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """How the engine computes each step of :func:`gradient_flow` (not what it computes).

    Attributes
    ----------
    recompute : mlp block only: keep one hidden state per ``recompute`` layers and recompute the
        others in the backward pass (memory bounded in depth, about one extra forward per step)
    track_increments : record max_k ||Z_{k+1} - Z_k|| at every step (a pass over the weights; False
        when only the loss and PL ratio matter: the column is then NaN)
    cuda_graph : CUDA only: capture the loss and gradient pass once in a CUDA graph and replay it
        each step (``odecheck._kernels.GraphedLossAndGrads``; not yet validated on GPU hardware)
    """

    recompute: int | None = None
    track_increments: bool = True
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.recompute is not None:
            check_int("engine.recompute", self.recompute, 1)
        for name in ("track_increments", "cuda_graph"):
            if not isinstance(getattr(self, name), bool):
                raise invalid(f"engine.{name}", getattr(self, name), "a bool")


def gradient_flow(
    net: ResNet,
    x,
    y,
    *,
    steps: int,
    lr: float,
    clip: float | None = None,
    snapshots: Iterable[int] = (),
    check_halving: bool = False,
    callback: StepCallback | None = None,
    start_step: int = 0,
    engine: EngineOptions = EngineOptions(),
    loss: str = "mse",
) -> Trajectory:
    """Train ``net`` in place by explicit Euler on the gradient flow of [M24].

    Parameters
    ----------
    net : ResNet, updated in place
    x : (n, d) or (R, n, d);  y : (n, d') or (R, n, d')
    steps : number of Euler steps
    lr : step size eta (block weights move by L * eta * gradient)
    clip : if given, each update direction is clamped to [-clip, clip] entrywise (clipped flow)
    snapshots : steps (0..steps, counted from ``start_step``) at which to keep the weights
    check_halving : also run the flow with step eta/2 for 2*steps steps on a copy and report the
        relative weight gap per member in ``discretization_error`` (Euler: O(eta))
    callback : called as callback(step, loss) after each step
    engine : :class:`EngineOptions` (recomputation, increment tracking, CUDA graph replay)
    loss : "mse" (default) or "cross_entropy" (y: one-hot rows), see :func:`loss_and_grads`

    Returns
    -------
    Trajectory. A member whose loss turns NaN/inf is marked diverged and frozen; others go on.
    """
    _check_steps(steps, lr)
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise invalid("clip", clip, "None or a positive float")
    if not isinstance(engine, EngineOptions):
        raise invalid("engine", type(engine).__name__, "an odecheck.EngineOptions")
    recompute, track_increments, cuda_graph = engine.recompute, engine.track_increments, engine.cuda_graph
    loss_function(loss)  # validated before any step
    x, y = _check_data(net, x, y)
    if cuda_graph and net.device.type != "cuda":
        raise invalid("engine.cuda_graph", cuda_graph, f"False on device {net.device} (CUDA graphs need a CUDA device)")
    snap = set()
    for s in snapshots:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not (start_step <= s <= start_step + steps):
            raise invalid("snapshots", s, f"steps in [{start_step}, {start_step + steps}]")
        snap.add(int(s))
    reference = net.clone() if check_halving else None
    R, L = net.ensemble, net.depth
    names = net.trainable
    rows = steps + 1
    loss_a = np.full((rows, R), np.nan)
    pl_a = np.full((rows, R), np.nan)
    gn_a = np.full((rows, R), np.nan)
    inc_a = np.zeros((rows, R)) if track_increments else np.full((rows, R), np.nan)
    diverged_at = np.full(R, -1, dtype=np.int64)
    alive = torch.ones(R, dtype=torch.bool, device=net.device)
    kept: dict[int, dict[str, np.ndarray]] = {}
    fams = net.layer_families
    graphed = GraphedLossAndGrads(net, x, y, segment=recompute, loss=loss) if cuda_graph else None
    for t in range(rows):
        value, grads = graphed() if graphed is not None else _engine_loss_and_grads(net, x, y, reuse=True,
                                                                                     segment=recompute, loss=loss)
        net.io_directions(grads)  # conv io maps train as a kernel and a head
        num = torch.zeros(R, dtype=torch.float64, device=net.device)
        for name in names:
            num += _flow_factor(net, name) * _sq_norm(net, name, grads[name])
        ok = torch.isfinite(value) & torch.isfinite(num)
        newly = alive & ~ok
        if bool(newly.any()):
            for r in torch.nonzero(newly).flatten().tolist():
                diverged_at[r] = start_step + t
            alive &= ok
        loss_np = value.double().cpu().numpy()
        loss_a[t] = loss_np
        gn_a[t] = num.sqrt().cpu().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            pl_a[t] = num.cpu().numpy() / loss_np
        if L > 1 and track_increments:
            inc_a[t] = layer_increments(net._p, fams).amax(dim=1).cpu().numpy()
        if start_step + t in snap:
            kept[start_step + t] = net.numpy_weights()
        if t == steps:
            break
        all_alive = bool(alive.all())
        for name in names:
            p, g = net._p[name], grads[name]
            if clip is None and all_alive:  # the common case: no weight-sized temporary
                p.sub_(g, alpha=lr * _flow_factor(net, name))
                continue
            step = g * _flow_factor(net, name)
            if clip is not None:
                step = step.clamp(-clip, clip)
            if not all_alive:
                step = _masked(net, name, p, step, alive)
            p.sub_(step, alpha=lr)
        if callback is not None:
            callback(start_step + t + 1, loss_np)
    traj = Trajectory(method="gradient_flow", lr=float(lr), depth=L, loss=loss_a, pl_ratio=pl_a, grad_norm=gn_a,
                      max_increment=inc_a, diverged_at=diverged_at, snapshots=kept, start_step=start_step)
    if reference is not None:
        err = _weight_gap(net, reference, x, y, steps=steps, lr=lr, clip=clip, loss=loss)
        traj = replace(traj, discretization_error=err)
    return traj


def _weight_gap(trained: ResNet, start: ResNet, x, y, *, steps: int, lr: float, clip, loss: str = "mse"
                ) -> np.ndarray:
    gradient_flow(start, x, y, steps=2 * steps, lr=lr / 2, clip=clip, loss=loss)
    num = torch.zeros(trained.ensemble, dtype=torch.float64, device=trained.device)
    den = torch.zeros_like(num)
    for name in trained.trainable:
        diff = trained._p[name] - start._p[name]
        num += _sq_norm(trained, name, diff)
        den += _sq_norm(trained, name, start._p[name])
    return (num.sqrt() / den.sqrt().clamp_min(1e-300)).cpu().numpy()


def discretization_error(net: ResNet, x, y, *, steps: int, lr: float, clip: float | None = None) -> np.ndarray:
    """Relative weight gap ||theta_eta(T) - theta_{eta/2}(T)|| / ||theta_{eta/2}(T)|| per member, T = steps*lr.

    ``net`` is not modified. For explicit Euler the gap is O(eta) and roughly halves with eta.
    """
    _check_steps(steps, lr)
    a = net.clone()
    gradient_flow(a, x, y, steps=steps, lr=lr, clip=clip)
    return _weight_gap(a, net.clone(), x, y, steps=steps, lr=lr, clip=clip)


def _minibatch(net: ResNet, x, y, *, steps, lr, batch_size, seed, update, method, callback, start_step=0,
               state=None, loss="mse") -> Trajectory:
    loss_function(loss)  # steps and lr: checked by the callers (_optimizer_options)
    x, y = _check_data(net, x, y)
    n = x.shape[-2]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not (1 <= batch_size <= n):
        raise invalid("batch_size", batch_size, f"an integer in [1, {n}]")
    R = net.ensemble
    xr = x.expand(R, *x.shape[-2:]) if x.ndim == 3 else x.expand(R, *x.shape)
    yr = y.expand(R, *y.shape[-2:]) if y.ndim == 3 else y.expand(R, *y.shape)
    state = {} if state is None else state  # optimizer buffers, batch RNG and divergence: resumable
    g = torch.Generator(device="cpu")
    if "rng" in state:
        g.set_state(state["rng"])
    else:
        g.manual_seed(int(seed))
    rows = steps + 1
    loss_a = np.full((rows, R), np.nan)
    diverged_at = state.get("diverged_at", np.full(R, -1, dtype=np.int64)).copy()
    ar = torch.arange(R, device=x.device)[:, None]
    for t in range(rows):
        if t == steps:
            with torch.no_grad():  # full-batch loss at the end: a forward pass, no gradients
                out, _ = _engine_forward(net, x, keep=False)
                value = loss_function(loss)(out, y)[0]
            loss_a[t] = value.double().cpu().numpy()
            break
        idx = torch.argsort(torch.rand(R, n, generator=g), dim=1)[:, :batch_size].to(x.device)
        value, grads = _engine_loss_and_grads(net, xr[ar, idx], yr[ar, idx], reuse=True, loss=loss)
        net.io_directions(grads)
        loss_np = value.double().cpu().numpy()
        loss_a[t] = loss_np
        bad = ~np.isfinite(loss_np) & (diverged_at < 0)
        diverged_at[bad] = start_step + t
        frozen = state.get("frozen")  # members a stopping rule has stopped (runner.EpochStopping)
        alive = torch.as_tensor((diverged_at < 0) if frozen is None else (diverged_at < 0) & ~frozen, device=net.device)
        update(net, grads, state, start_step + t + 1, alive)
        if callback is not None:
            callback(start_step + t + 1, loss_np)
    state["rng"] = g.get_state()
    state["diverged_at"] = diverged_at
    nan = np.full((rows, R), np.nan)
    return Trajectory(method=method, lr=float(lr), depth=net.depth, loss=loss_a, pl_ratio=nan, grad_norm=nan.copy(),
                      max_increment=np.full((rows, R), np.nan), diverged_at=diverged_at, start_step=start_step)


def _masked(net, name, p, step, alive):
    if bool(alive.all()):
        return step
    axis = member_axis(name, net.layered)
    shape = [1] * p.ndim
    shape[axis] = net.ensemble
    return torch.where(alive.view(shape), step, torch.zeros((), dtype=p.dtype, device=p.device))


def _schedule(name: str, lr: float, t: int, total: int) -> float:
    """The step size at update t (1-based) of ``total``: constant, or cosine from lr down to 0."""
    if name == "constant":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * (t - 1) / total))


def _optimizer_options(*, lr, weight_decay, schedule, total_steps, steps, start_step, depth_factor) -> int:
    _check_steps(steps, lr)  # first: total_steps is checked against steps
    check_float("weight_decay", weight_decay, minimum=0.0)
    check_choice("schedule", schedule, ("constant", "cosine"))
    if not isinstance(depth_factor, bool):
        raise invalid("depth_factor", depth_factor, "a bool")
    total = start_step + steps if total_steps is None else total_steps
    if isinstance(total, bool) or not isinstance(total, int) or total < start_step + steps:
        raise invalid("total_steps", total_steps, f"an integer >= start_step + steps = {start_step + steps}")
    return total


def sgd(net: ResNet, x, y, *, steps: int, lr: float, batch_size: int, momentum: float = 0.0, seed: int = 0,
        callback: StepCallback | None = None, start_step: int = 0, state: dict | None = None,
        loss: str = "mse", weight_decay: float = 0.0, schedule: str = "constant", total_steps: int | None = None,
        depth_factor: bool = False) -> Trajectory:
    """Minibatch SGD, each member drawing its own batches. Trains ``net`` in place.

    ``loss``: "mse" or "cross_entropy" (one-hot y). ``momentum`` (heavy ball, as torch.optim.SGD),
    ``weight_decay`` (added to the gradient, as torch.optim.SGD), ``schedule`` "constant" or
    "cosine" (from lr to 0 over ``total_steps``, default start_step + steps, so that a run split
    into chunks follows one schedule), ``depth_factor``: block weights move by L times the step, the
    factor of the gradient flow. ``loss`` rows 0..steps-1 are minibatch losses; the last row is the
    full-batch loss after training. ``state`` (a dict, updated in place) carries momentum buffers,
    the batch RNG and divergence between calls, so that a run split into chunks equals one
    uninterrupted run.
    """
    if not (0.0 <= momentum < 1.0):
        raise invalid("momentum", momentum, "a float in [0, 1)")
    total = _optimizer_options(lr=lr, weight_decay=weight_decay, schedule=schedule, total_steps=total_steps,
                               steps=steps, start_step=start_step, depth_factor=depth_factor)

    def update(net, grads, state, t, alive):
        rate = _schedule(schedule, lr, t, total)
        for name in net.trainable:
            g = grads[name]
            if weight_decay:
                g = g.add(net._p[name], alpha=weight_decay)
            if momentum:
                buf = state.setdefault(name, torch.zeros_like(g))
                buf.mul_(momentum).add_(g)
                g = buf
            factor = _flow_factor(net, name) if depth_factor else 1.0
            net._p[name].sub_(_masked(net, name, net._p[name], g, alive), alpha=rate * factor)

    return _minibatch(net, x, y, steps=steps, lr=lr, batch_size=batch_size, seed=seed, update=update,
                      method="sgd", callback=callback, start_step=start_step, state=state, loss=loss)


def adam(net: ResNet, x, y, *, steps: int, lr: float, batch_size: int, betas=(0.9, 0.999), eps: float = 1e-8,
         seed: int = 0, callback: StepCallback | None = None, start_step: int = 0,
         state: dict | None = None, loss: str = "mse", weight_decay: float = 0.0, schedule: str = "constant",
         total_steps: int | None = None, depth_factor: bool = False) -> Trajectory:
    """Minibatch Adam (Kingma & Ba), as in the [C21] experiments. Trains ``net`` in place.

    ``state``, ``loss``, ``weight_decay`` (L2, added to the gradient as in torch.optim.Adam),
    ``schedule``, ``total_steps`` and ``depth_factor`` as in :func:`sgd`."""
    b1, b2 = betas
    total = _optimizer_options(lr=lr, weight_decay=weight_decay, schedule=schedule, total_steps=total_steps,
                               steps=steps, start_step=start_step, depth_factor=depth_factor)

    def update(net, grads, state, t, alive):
        rate = _schedule(schedule, lr, t, total)
        for name in net.trainable:
            g = grads[name]
            if weight_decay:
                g = g.add(net._p[name], alpha=weight_decay)
            m = state.setdefault(("m", name), torch.zeros_like(g))
            v = state.setdefault(("v", name), torch.zeros_like(g))
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            # a structured io map's entries are s times its parameters (io_scale): Adam on the parameter,
            # scale-free, moves each entry by s times the step of the copies with eps scaled alike
            s = net.io_scale(name)
            step = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps * s)
            factor = (_flow_factor(net, name) if depth_factor else 1.0) * s
            net._p[name].sub_(_masked(net, name, net._p[name], step, alive), alpha=rate * factor)

    return _minibatch(net, x, y, steps=steps, lr=lr, batch_size=batch_size, seed=seed, update=update,
                      method="adam", callback=callback, start_step=start_step, state=state, loss=loss)
