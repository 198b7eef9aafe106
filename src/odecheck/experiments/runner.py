"""Checkpointed, resumable training runs (used by ``odecheck train``).

A run directory holds config.toml, checkpoint.pt (weights and the trajectory so far, written
atomically every ``checkpoint_every`` steps), trajectory.npz and weights.npz (final and
snapshot weights, layer axis kept). Rerunning on the same directory resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from odecheck.core._errors import InvalidArgument
from odecheck.core._io import atomic_write
from odecheck.core.events import Meter, report
from odecheck.core.validation import check_dtype
from odecheck.engine.data import Dataset, c21_code_task, c21_task, digits, digits_conv25, gaussian_task, teacher_task
from odecheck.engine.init import as_init
from odecheck.engine.models import ResNet
from odecheck.engine.optim import GradientFlow, Optimizer, optimizer
from odecheck.engine.training import Trajectory, train
from odecheck.experiments.config import RunConfig


def build_data(cfg: RunConfig, dtype) -> Dataset:
    m, dcfg = cfg.model, cfg.data
    if dcfg.task == "gaussian":
        return gaussian_task(dcfg.n, m.dim, m.dim, seed=dcfg.seed, dtype=dtype)
    if dcfg.task == "teacher":
        return teacher_task(dcfg.n, m.dim, seed=dcfg.seed, dtype=dtype)
    if dcfg.task == "c21":
        return c21_task(dcfg.n, seed=dcfg.seed, dtype=dtype)
    if dcfg.task == "c21-code":
        return c21_code_task(dcfg.n, dim=m.dim, seed=dcfg.seed, dtype=dtype)
    if dcfg.task == "digits-conv25":
        return digits_conv25(n_train=min(dcfg.n, 1347), seed=dcfg.seed, dtype=dtype)
    return digits(n_train=min(dcfg.n, 1347), dtype=dtype)


def build_model(cfg: RunConfig, data: Dataset, device="cpu") -> ResNet:
    m = cfg.model
    init = m.init if m.init_scale == 1.0 else replace(as_init(m.init), scale=m.init_scale)
    return ResNet(block=m.block, depth=m.depth, dim=m.dim, width=m.width, input_dim=data.input_dim,
                  output_dim=data.output_dim, activation=m.activation, beta=m.beta, init=init,
                  io_init=m.io_init, train_io=m.train_io, delta=m.delta, ensemble=m.ensemble, seed=m.seed,
                  dtype=check_dtype(m.dtype), device=device,
                  width_factors=m.width_factors)


def accuracy(net: ResNet, data: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-member accuracy (R,) of argmax F(x) against argmax y on the training set and, when the
    data set has one, on its test set (else None)."""
    def acc(x, y):
        with torch.no_grad():
            pred = net(x.to(net.device)).argmax(-1).cpu()
        return (pred == y.argmax(-1)).double().mean(-1).numpy()

    return acc(data.x, data.y), (acc(data.x_test, data.y_test) if data.x_test.shape[0] else None)


def test_loss(net: ResNet, data: Dataset) -> np.ndarray:
    """Per-member (1/n) sum_i ||F(x_i) - y_i||^2 on the test split (NaN where the data set has none)."""
    if not data.x_test.shape[0]:
        return np.full(net.ensemble, np.nan)
    from odecheck.engine.losses import loss_function

    with torch.no_grad():
        out = net(data.x_test.to(net.device)).double()
        return loss_function("mse")(out, data.y_test.to(out.device).double())[0].cpu().numpy()


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports per member (R,): its final loss, its largest increment
    max ||Z_{k+1} - Z_k|| (over layers and steps where the trajectory records it, gradient flow; else of the
    final weights, SGD/Adam; NaN at depth 1), accuracies on both splits (classification, else NaN) and the
    test MSE (regression, else NaN)."""

    final_loss: np.ndarray
    max_increment: np.ndarray
    increments_of: str  # "steps", "final weights" or "none (depth 1)"
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    test_loss: np.ndarray


def summarize(cfg: RunConfig, net: ResNet, traj: Trajectory, data: Dataset | None = None) -> RunSummary:
    """The :class:`RunSummary` of a run of ``cfg`` that trained ``net`` along ``traj`` (``data``: the run's
    data set, built from ``cfg`` when not given)."""
    R = net.ensemble
    nan = lambda: np.full(R, np.nan)
    if np.isfinite(traj.max_increment).any():
        inc, of = np.nanmax(traj.max_increment, axis=0), "steps"  # max over layers k and steps t
    elif net.depth > 1:  # SGD/Adam record no increments per step: those of the final weights
        inc, of = net.increments().amax(1).double().cpu().numpy(), "final weights"
    else:
        inc, of = nan(), "none (depth 1)"
    acc_train, acc_test, test = nan(), nan(), nan()
    data = build_data(cfg, net.dtype) if data is None else data
    if cfg.train.loss == "cross_entropy":  # classification: accuracy of argmax F(x) on both splits
        acc_train, te = accuracy(net, data)
        acc_test = te if te is not None else acc_test
    elif cfg.train.loss == "mse":
        test = test_loss(net, data)
    return RunSummary(traj.loss[-1].astype(float), inc, of, acc_train, acc_test, test)


def check(cfg: RunConfig, *, device="cpu") -> None:
    """Raise InvalidArgument if the config's data or model cannot be built (before a run starts)."""
    build_model(cfg, build_data(cfg, check_dtype(cfg.model.dtype)), device)


def _atomic_save(obj, path: Path, saver: Callable) -> None:
    atomic_write(path, lambda f: saver(obj, f))


PROGRESS_FILE = "progress.json"  # written with each checkpoint: how far a running run is, for whoever watches


def progress_record(traj: Trajectory, steps: int, started: tuple[float, int] | None = None) -> dict:
    """What ``progress.json`` holds: the step reached of ``steps``, the median loss over the members
    that have not diverged at that step (None if all have), the wall-clock time it was written and,
    with ``started`` = (time, step) at which this process took the run up, ``seconds_left`` at this
    process's pace (None before a step was made)."""
    last = traj.loss[-1]
    ok = last[np.isfinite(last)]
    now = time.time()
    left = None
    if started is not None and traj.steps > started[1] and now > started[0]:
        left = (steps - traj.steps) * (now - started[0]) / (traj.steps - started[1])
    return {"step": int(traj.steps), "steps": int(steps), "loss": float(np.median(ok)) if ok.size else None,
            "members": int(last.size), "diverged": int(last.size - ok.size), "time": now, "seconds_left": left}


STOPPING_FILE = "stopping.json"  # per member: epochs trained, the step and the reason it stopped


class EpochStopping:
    """[C21]'s stopping rule per member, over epochs of ceil(n / batch_size) minibatch steps: a member
    stops (its weights are frozen) at the end of the first epoch whose mean minibatch loss is below
    ``stop_loss``, or once ``patience`` epochs in a row have not improved on its best epoch by the
    relative ``min_improvement``. The state lives in the optimizer state (``opt_state["stopping"]``), so
    a resumed run goes on where it was; ``opt_state["frozen"]`` is the mask the optimizer steps by."""

    def __init__(self, tc, n: int, members: int, opt_state: dict):
        self.tc, self.epoch = tc, -(-n // min(tc.batch_size, n))
        self.s = opt_state.setdefault("stopping", {
            "sum": np.zeros(members), "count": 0, "best": np.full(members, np.inf), "wait": np.zeros(members, int),
            "epochs": np.zeros(members, int), "stopped_at": np.full(members, -1), "reason": [""] * members,
            "last": np.full(members, np.nan)})
        self.opt_state = opt_state
        opt_state["frozen"] = self.s["stopped_at"] >= 0

    @property
    def all_stopped(self) -> bool:
        return bool(np.all(self.s["stopped_at"] >= 0))

    def add(self, losses: np.ndarray, step: int) -> None:
        """The minibatch losses (steps, R) of the steps that ended at ``step``; decides at an epoch's end."""
        s, tc = self.s, self.tc
        s["sum"] = s["sum"] + losses.sum(0)
        s["count"] += losses.shape[0]
        if step % self.epoch:
            return
        mean = s["sum"] / s["count"]
        s["sum"], s["count"] = np.zeros_like(s["sum"]), 0
        for r in np.flatnonzero(s["stopped_at"] < 0):
            s["epochs"][r] += 1
            s["last"][r] = mean[r]
            if tc.stop_loss is not None and mean[r] < tc.stop_loss:
                s["stopped_at"][r], s["reason"][r] = step, f"epoch loss {mean[r]:.3g} < {tc.stop_loss:g}"
                continue
            if mean[r] < s["best"][r] * (1 - tc.min_improvement):
                s["best"][r], s["wait"][r] = mean[r], 0
            else:
                s["wait"][r] += 1
            if tc.patience is not None and s["wait"][r] >= tc.patience:
                s["stopped_at"][r] = step
                s["reason"][r] = f"{tc.patience} epochs without a {tc.min_improvement:.0%} improvement"
        self.opt_state["frozen"] = s["stopped_at"] >= 0

    def record(self) -> dict:
        s = self.s
        return {"epoch_steps": self.epoch, "epochs": s["epochs"].tolist(), "stopped_at": s["stopped_at"].tolist(),
                "reason": [r or "step budget" for r in s["reason"]], "last_epoch_loss": s["last"].tolist()}


def configured_optimizer(cfg: RunConfig, n: int) -> Optimizer:
    """The optimizer ``cfg.train`` names, with its options (a batch of at most ``n`` rows, the model's seed
    for the batch streams, the run's step count as the schedule's length)."""
    tc = cfg.train
    if tc.method == "gradient_flow":
        return GradientFlow(lr=tc.lr, clip=tc.clip)
    extra = {"momentum": tc.momentum} if tc.method == "sgd" else {}
    options = dict(batch_size=min(tc.batch_size, n), seed=cfg.model.seed, weight_decay=tc.weight_decay,
                   schedule=tc.schedule, total_steps=tc.steps, depth_factor=tc.depth_factor, sampling=tc.sampling,
                   **extra)
    if tc.parametrization is not None:
        from odecheck.experiments.parametrizations import parametrization

        return parametrization(tc.parametrization).optimizer(tc.method, lr=tc.lr, depth=cfg.model.depth,
                                                             base_depth=tc.base_depth, **options)
    return optimizer(tc.method, lr=tc.lr, **options)


def resume(ckpt: Path, net: ResNet) -> tuple[Trajectory | None, dict]:
    """Load ``ckpt`` (when there is one) into ``net``: the trajectory so far and the optimizer state, or
    (None, {}) for a fresh run. An unreadable checkpoint is an error, not a fresh start."""
    if not ckpt.exists():
        return None, {}
    try:
        state = torch.load(ckpt, map_location=net.device, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is reported, not ignored
        raise InvalidArgument(f"checkpoint {str(ckpt)!r} is unreadable ({type(e).__name__}); remove it to restart") from None
    if "weights" in state:
        net.load_weights_(state["weights"])
    else:  # checkpoints written before the public layout was saved hold the engine's tensors
        net.load_weights_(net.public(state["params"]))
    return state["trajectory"], state.get("opt_state", {})


def _write_results(out: Path, net: ResNet, traj: Trajectory, stopping, save_weights: bool) -> None:
    """trajectory.npz, stopping.json (with a stopping rule) and, with ``save_weights``, weights.npz."""
    _atomic_save(traj.arrays(), out / "trajectory.npz", lambda a, f: np.savez(f, **a))
    if stopping is not None:
        _atomic_save(stopping.record(), out / STOPPING_FILE, lambda rec, f: f.write(json.dumps(rec).encode()))
    if not save_weights:
        return
    weights = {f"final/{k}": v for k, v in net.numpy_weights().items()}
    # tells `odecheck analyze` which arrays are (R, L, ...) layer stacks
    weights["_layer_families"] = np.array(list(net.layer_families))
    for s, w in traj.snapshots.items():
        weights.update({f"step{s}/{k}": v for k, v in w.items()})
    _atomic_save(weights, out / "weights.npz", lambda a, f: np.savez(f, **a))


def run(cfg: RunConfig, out: Path, *, device="cpu", progress: Meter | None = None,
        at_init: Callable[[ResNet, Dataset], None] | None = None,
        save_weights: bool = True) -> tuple[ResNet, Trajectory, int]:
    """Train (or resume) the run in ``out``. Returns the network, the full trajectory and the resumed step.
    ``at_init(net, data)`` sees the freshly initialized network before any checkpoint is loaded.
    ``save_weights=False`` writes no ``weights.npz`` (a sweep that needs only its table). ``progress``: a meter of :mod:`odecheck.events` (task "train", per step, ``result`` the members' losses)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.toml"
    text = cfg.dumps()
    if cfg_path.exists():
        old = RunConfig.load(cfg_path)
        if old != cfg:
            raise InvalidArgument(f"out={str(out)!r} holds a run with a different config; use another folder")
    else:
        cfg_path.write_text(text)
    data = build_data(cfg, check_dtype(cfg.model.dtype))
    net = build_model(cfg, data, device)
    if at_init is not None:
        at_init(net, data)
    tc = cfg.train
    ckpt = out / "checkpoint.pt"
    traj, opt_state = resume(ckpt, net)
    step0 = resumed = 0 if traj is None else traj.steps
    started = (time.time(), step0)
    cb = (lambda t, loss: report(progress, "train", t, tc.steps, "", "advance", loss)) if progress else None
    stops = tc.stop_loss is not None or tc.patience is not None  # (TrainConfig allows them with SGD/Adam only)
    stopping = EpochStopping(tc, data.x.shape[0], net.ensemble, opt_state) if stops else None
    opt = configured_optimizer(cfg, data.x.shape[0])
    while step0 < tc.steps and not (stopping is not None and stopping.all_stopped):
        chunk = min(tc.checkpoint_every, tc.steps - step0)
        if stopping is not None:  # chunks end at each epoch's end, where the stopping rule is checked
            chunk = min(chunk, stopping.epoch - step0 % stopping.epoch)
        snaps = [s for s in tc.snapshots if step0 <= s <= step0 + chunk and (traj is None or s > step0)]
        part = train(net, data, opt, steps=chunk, start_step=step0, snapshots=snaps, callback=cb, loss=tc.loss,
                     # gradient flow keeps no state between chunks (a diverged member is found again)
                     state=None if opt.full_batch else opt_state)
        if stopping is not None:
            stopping.add(part.loss[:-1], step0 + chunk)
        traj = part if traj is None else traj.then(part)
        step0 += chunk
        _atomic_save({"weights": net.weights, "trajectory": traj, "opt_state": opt_state}, ckpt, torch.save)
        _atomic_save(progress_record(traj, tc.steps, started), out / PROGRESS_FILE,
                     lambda rec, f: f.write(json.dumps(rec).encode()))
    if traj is None:
        traj = train(net, data, GradientFlow(lr=tc.lr), steps=0, snapshots=[0] if 0 in tc.snapshots else [],
                     loss=tc.loss)
    assert traj is not None
    _write_results(out, net, traj, stopping, save_weights)
    return net, traj, resumed
