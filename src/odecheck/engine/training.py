r"""The one training loop: any optimizer of :mod:`odecheck.optim` on a network and its data.

:func:`train` owns what every run shares: the data and its batches, the per-member losses, divergence
(a member whose loss, or for full-batch methods its gradient, turns NaN/inf is frozen and the others go
on), snapshots of the weights, the callback, the PL ratio and the increments of full-batch methods,
and the resumable state. :func:`halving_check` wraps any optimizer: the same run with half the step for
twice the steps, and the relative weight gap between the two. The PL ratio is

    r(t) = (||dl/dA||^2 + L sum_k ||dl/dZ_k||^2 + ||dl/dB||^2) / l(t)

over the trained parameters (Def. 1 of [M24]).

References
----------
[M24] Marion et al., ICLR 2024, sec. 3-4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from odecheck.core._errors import invalid
from odecheck.core.layout import member_axis
from odecheck.core.threads import check as check_threads
from odecheck.core.validation import check_int
from odecheck.engine import optim
from odecheck.engine._kernels import GraphedLossAndGrads
from odecheck.engine._kernels import forward as engine_forward
from odecheck.engine._kernels import loss_and_grads as engine_loss_and_grads
from odecheck.engine.losses import loss_function
from odecheck.engine.models import as_tensor, layer_increments

if TYPE_CHECKING:
    from odecheck.engine.models import ResNet

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


def _sq_norm(net: ResNet, name: str, g: torch.Tensor) -> torch.Tensor:
    axis = member_axis(name, net.layered)
    others = tuple(i for i in range(g.ndim) if i != axis)
    if not others:
        return g.double() ** 2
    return torch.linalg.vector_norm(g, dim=others).double() ** 2  # no transposed copy of g


def check_data(net: ResNet, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x = net.prepare_input(x)
    y = as_tensor("y", y, ndim=(2, 3), dtype=net.dtype, device=net.device)
    if y.shape[-1] != net.output_dim:
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"last dimension output_dim={net.output_dim}")
    if y.shape[-2] != x.shape[-2]:
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"{x.shape[-2]} samples like x")
    if y.ndim == 3 and y.shape[0] not in (1, net.ensemble):
        raise invalid("y", f"<shape {tuple(y.shape)}>", f"leading ensemble axis 1 or R={net.ensemble}")
    return x, y


def check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise invalid("steps", steps, "an integer >= 0")
    return int(steps)


def _snapshot_steps(snapshots: Iterable[int], start_step: int, steps: int) -> set[int]:
    snap = set()
    for s in snapshots:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not (start_step <= s <= start_step + steps):
            raise invalid("snapshots", s, f"steps in [{start_step}, {start_step + steps}]")
        snap.add(int(s))
    return snap


class _Batches:
    """Each member's minibatches from its own stream: ``batch_size`` distinct rows per step, the stream's
    state kept in ``state["rng"]`` between calls."""

    def __init__(self, net, x, y, opt, state: dict):
        n, R = x.shape[-2], net.ensemble
        if isinstance(opt.batch_size, bool) or not isinstance(opt.batch_size, int) or not (1 <= opt.batch_size <= n):
            raise invalid("batch_size", opt.batch_size, f"an integer in [1, {n}]")
        self.n, self.size, self.state = n, opt.batch_size, state
        self.x = x.expand(R, *x.shape[-2:]) if x.ndim == 3 else x.expand(R, *x.shape)
        self.y = y.expand(R, *y.shape[-2:]) if y.ndim == 3 else y.expand(R, *y.shape)
        self.ar = torch.arange(R, device=x.device)[:, None]
        self.start(opt)

    def start(self, opt) -> None:
        self.g = torch.Generator(device="cpu")
        if "rng" in self.state:
            self.g.set_state(self.state["rng"])
        else:
            self.g.manual_seed(int(opt.seed))

    def rows(self) -> torch.Tensor:
        R = self.x.shape[0]
        return torch.argsort(torch.rand(R, self.n, generator=self.g), dim=1)[:, :self.size]

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rows().to(self.x.device)
        return self.x[self.ar, idx], self.y[self.ar, idx]

    def close(self) -> None:
        self.state["rng"] = self.g.get_state()


def c21_shuffle(order: np.ndarray, rng: np.random.Generator) -> None:
    """[C21]'s epoch shuffle, in place: numpy's Fisher-Yates swaps x[i], x[j] = x[j], x[i] (j <= i) done on a
    torch tensor, where x[j] on the right is a view, so row j is copied over row i and row j keeps its own
    rows: order[i] = order[j]. Rows are duplicated and others lost, and it compounds epoch after epoch."""
    for i in range(len(order) - 1, 0, -1):
        order[i] = order[int(rng.integers(0, i + 1))]


class _EpochBatches(_Batches):
    """Epochs of consecutive batches over each member's row order (``sampling`` "epochs": a fresh
    permutation per epoch; "c21-shuffle": the order shuffled in place by :func:`c21_shuffle`). The order,
    the position in the epoch and the stream are kept in ``state["epochs"]``."""

    def start(self, opt) -> None:
        R = self.x.shape[0]
        st = self.state.get("epochs")
        if st is None:
            seq = np.random.SeedSequence(int(opt.seed), spawn_key=(17,))
            st = {"order": np.tile(np.arange(self.n), (R, 1)), "pos": self.n,
                  "rng": [np.random.Generator(np.random.PCG64(s)).bit_generator.state for s in seq.spawn(R)]}
            self.state["epochs"] = st
        self.st, self.quirk = st, opt.sampling == "c21-shuffle"

    def rows(self) -> torch.Tensor:
        st = self.st
        if st["pos"] >= self.n:  # a new epoch
            for r in range(len(st["rng"])):
                g = np.random.Generator(np.random.PCG64())
                g.bit_generator.state = st["rng"][r]
                if self.quirk:
                    c21_shuffle(st["order"][r], g)
                else:
                    st["order"][r] = g.permutation(self.n)
                st["rng"][r] = g.bit_generator.state
            st["pos"] = 0
        idx = torch.as_tensor(st["order"][:, st["pos"]:st["pos"] + self.size])
        st["pos"] += self.size
        return idx

    def close(self) -> None:
        pass


@dataclass
class _Record:
    """The rows of a run being trained: one per step t = 0..steps."""

    loss: np.ndarray
    pl: np.ndarray
    gn: np.ndarray
    inc: np.ndarray

    def trajectory(self, opt, depth: int, diverged_at: np.ndarray, kept: dict, start_step: int) -> Trajectory:
        """The rows as the run's Trajectory."""
        return Trajectory(method=opt.name, lr=float(opt.lr), depth=depth, loss=self.loss, pl_ratio=self.pl,
                          grad_norm=self.gn, max_increment=self.inc, diverged_at=diverged_at, snapshots=kept,
                          start_step=start_step)

    @classmethod
    def empty(cls, rows: int, R: int, *, full_batch: bool, increments: bool) -> _Record:
        nan = lambda: np.full((rows, R), np.nan)
        return cls(nan(), nan(), nan(), np.zeros((rows, R)) if (full_batch and increments) else nan())

    def gradient_row(self, t: int, net, grads, names, loss_np: np.ndarray, increments: bool) -> np.ndarray:
        """The PL numerator, ratio and increments of row t (full-batch methods); whether it is finite."""
        num = torch.zeros(net.ensemble, dtype=torch.float64, device=net.device)
        for name in names:
            num += optim.flow_factor(net, name) * _sq_norm(net, name, grads[name])
        num_np = num.cpu().numpy()  # one transfer; float64 sqrt is correctly rounded on either side
        self.gn[t] = np.sqrt(num_np)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.pl[t] = num_np / loss_np
        if net.depth > 1 and increments:
            self.inc[t] = layer_increments(net.params, net.layer_families).amax(dim=1).cpu().numpy()
        return np.isfinite(num_np)


def _checked(optimizer, steps, start_step: int, engine, loss: str) -> tuple[optim.Optimizer, int]:
    """The optimizer bound to this call, and the step count, after the arguments of :func:`train` that do
    not need the data are checked."""
    if not isinstance(optimizer, optim.Optimizer):
        raise invalid("optimizer", type(optimizer).__name__, "an odecheck.optim optimizer (GradientFlow, SGD, Adam)")
    steps = check_steps(steps)
    opt = optimizer.bind(steps=steps, start_step=start_step)
    if not isinstance(engine, EngineOptions):
        raise invalid("engine", type(engine).__name__, "an odecheck.EngineOptions")
    loss_function(loss)  # validated before any step
    if engine.cuda_graph and not opt.full_batch:
        raise invalid("engine.cuda_graph", engine.cuda_graph, f"False with {opt.name} (a CUDA graph replays one "
                                                              "full batch)")
    return opt, steps


def _data(net: ResNet, data, engine: EngineOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of ``data`` checked against the network, and CUDA graphs refused off a CUDA device."""
    x, y = check_data(net, *((data.x, data.y) if hasattr(data, "x") else data))
    if engine.cuda_graph and net.device.type != "cuda":
        raise invalid("engine.cuda_graph", engine.cuda_graph, f"False on device {net.device} (CUDA graphs need a CUDA device)")
    return x, y


def _step_loss(net: ResNet, batch, graphed, engine: EngineOptions, loss: str):
    """The members' losses (numpy) and gradients on one batch (the CUDA graph's when there is one)."""
    xb, yb = batch
    value, grads = graphed() if graphed is not None else engine_loss_and_grads(
        net, xb, yb, reuse=True, segment=engine.recompute, loss=loss)
    net.io_directions(grads)  # conv io maps train as a kernel and a head
    return value.double().cpu().numpy(), grads


def train(net: ResNet, data, optimizer: optim.Optimizer, *, steps: int, start_step: int = 0,
          state: dict | None = None, snapshots: Iterable[int] = (), callback: StepCallback | None = None,
          engine: EngineOptions = EngineOptions(), loss: str = "mse") -> Trajectory:
    """Train ``net`` in place for ``steps`` updates of ``optimizer`` on ``data`` = (x, y) (or anything
    with ``.x``, ``.y``): x (n, d) or (R, n, d), y (n, d') or (R, n, d').

    Row t of the trajectory is the loss before update t + 1 (full-batch methods: with the PL ratio,
    gradient norm and max increment; minibatch methods: the minibatch's loss, and the last row the
    full-batch loss after training). ``start_step`` counts the steps already made (a resumed run);
    ``state`` (a dict, updated in place) carries the optimizer's buffers, the batch streams and divergence
    between calls (a run split into chunks equals one run); a ``state["frozen"]`` mask (R,) stops members. ``snapshots``: the steps
    (start_step..start_step + steps) whose weights are kept. ``callback(step, loss)`` after each update.
    ``engine``: :class:`EngineOptions`; ``loss``: "mse" or "cross_entropy" (one-hot y)."""
    opt, steps = _checked(optimizer, steps, start_step, engine, loss)
    x, y = _data(net, data, engine)
    snap = _snapshot_steps(snapshots, start_step, steps)
    state = opt.init(net, state)
    batches = None if opt.full_batch else (_Batches if opt.sampling == "random" else _EpochBatches)(net, x, y, opt, state)
    R, rows = net.ensemble, steps + 1
    rec = _Record.empty(rows, R, full_batch=opt.full_batch, increments=engine.track_increments)
    diverged_at = state.get("diverged_at", np.full(R, -1, dtype=np.int64)).copy()
    kept: dict[int, dict[str, np.ndarray]] = {}
    graphed = GraphedLossAndGrads(net, x, y, segment=engine.recompute, loss=loss) if engine.cuda_graph else None
    frozen = state.get("frozen")  # set between calls (runner.EpochStopping), constant within one
    alive = None  # the members stepped: made anew only when one diverges
    for t in range(rows):
        if t == steps and batches is not None:  # full-batch loss at the end: a forward pass, no gradients
            rec.loss[t] = _full_batch_loss(net, x, y, loss)
        else:
            loss_np, grads = _step_loss(net, (x, y) if batches is None else batches.draw(), graphed, engine, loss)
            rec.loss[t] = loss_np
            ok = np.isfinite(loss_np)
            if opt.full_batch:
                ok &= rec.gradient_row(t, net, grads, net.trainable, loss_np, engine.track_increments)
            newly = ~ok & (diverged_at < 0)
            diverged_at[newly] = start_step + t
        if start_step + t in snap:
            kept[start_step + t] = net.numpy_weights()
        if t == steps:
            break
        if alive is None or newly.any():
            alive = torch.as_tensor((diverged_at < 0) & (True if frozen is None else ~frozen), device=net.device)
        opt.step(net, grads, state, start_step + t + 1, alive)
        check_threads()  # the free cores, re-checked at most once a second (odecheck.threads)
        if callback is not None:
            callback(start_step + t + 1, loss_np)
    if batches is not None:
        batches.close()
    state["diverged_at"] = diverged_at
    return rec.trajectory(opt, net.depth, diverged_at, kept, start_step)


def _full_batch_loss(net: ResNet, x, y, loss: str) -> np.ndarray:
    with torch.no_grad():
        out, _ = engine_forward(net, x, keep=False)
        return loss_function(loss)(out, y)[0].double().cpu().numpy()


def weight_gap(a: ResNet, b: ResNet) -> np.ndarray:
    """||theta_a - theta_b|| / ||theta_b|| per member over the trained parameters."""
    num = torch.zeros(a.ensemble, dtype=torch.float64, device=a.device)
    den = torch.zeros_like(num)
    for name in a.trainable:
        num += _sq_norm(a, name, a.params[name] - b.params[name])
        den += _sq_norm(a, name, b.params[name])
    return (num.sqrt() / den.sqrt().clamp_min(1e-300)).cpu().numpy()


def halving_check(net: ResNet, data, optimizer: optim.Optimizer, *, steps: int, **options) -> Trajectory:
    """:func:`train` with the step-halving check around any optimizer: ``net`` is trained as by ``train``,
    a copy of its start with ``optimizer.halved()`` for 2 * steps, and the trajectory carries the relative
    weight gap per member in ``discretization_error`` (for explicit Euler O(lr): it roughly halves with
    lr). ``options``: those of :func:`train` (the copy is trained without snapshots or callback)."""
    reference = net.clone()
    traj = train(net, data, optimizer, steps=steps, **options)
    train(reference, data, optimizer.halved(), steps=2 * steps, loss=options.get("loss", "mse"))
    return replace(traj, discretization_error=weight_gap(net, reference))
