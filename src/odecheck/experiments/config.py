"""Run configurations for ``odecheck train`` (TOML), validated eagerly."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args

from odecheck.core._errors import InvalidArgument, invalid

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path, argument: str) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; an unreadable or invalid file is an error naming ``argument``."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise invalid(argument, str(path), f"a readable TOML file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise invalid(argument, str(path), f"valid TOML ({e})") from None


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    block: str = "mlp"
    depth: int = 64
    dim: int = 16
    width: int = 32
    activation: str = "gelu"
    beta: float = 1.0
    init: str = "tied"
    init_scale: float = 1.0  # standard deviation of every entry of the init (1/sqrt(q): variance 1/width)
    io_init: str = "identity"
    train_io: bool = False
    delta: str = "fixed"
    width_factors: bool = True  # mlp: False drops the 1/sqrt(q), 1/sqrt(m) factors ([M24]'s public script)
    ensemble: int = 4
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        from odecheck.core.validation import DTYPES, check_choice, check_float, check_int
        from odecheck.engine import blocks
        from odecheck.engine.activations import ACTIVATIONS
        from odecheck.engine.init import as_init
        from odecheck.engine.models import DeltaMode, IOInit

        check_choice("model.block", self.block, tuple(blocks.REGISTRY))
        for name in ("depth", "dim", "width", "ensemble"):
            check_int(f"model.{name}", getattr(self, name), 1)
        check_int("model.seed", self.seed, 0)
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_float("model.beta", self.beta, minimum=0.0)
        if not (check_float("model.init_scale", self.init_scale, minimum=0.0) > 0):
            raise invalid("model.init_scale", self.init_scale, "a positive float")
        try:
            as_init(self.init)
        except InvalidArgument as e:
            raise invalid("model.init", self.init, "an initialization such as 'tied', 'iid', 'smooth(0.1)', "
                                                   "'fbm(0.7)', 'zero' or 'counterexample'") from e
        check_choice("model.io_init", self.io_init, get_args(IOInit))
        if not isinstance(self.train_io, bool):
            raise invalid("model.train_io", self.train_io, "true or false")
        check_choice("model.delta", self.delta, get_args(DeltaMode))
        if not isinstance(self.width_factors, bool):
            raise invalid("model.width_factors", self.width_factors, "true or false")
        if not self.width_factors and not blocks.REGISTRY[self.block].optional_width_factors:
            raise invalid("model.width_factors", False, f"true unless model.block = 'mlp' (block {self.block!r})")
        check_choice("model.dtype", self.dtype, DTYPES)


TASKS = ("gaussian", "teacher", "c21", "digits", "c21-code", "digits-conv25")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    task: str = "gaussian"
    n: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise invalid("data.task", self.task, "one of " + ", ".join(repr(t) for t in TASKS))


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    method: str = "gradient_flow"
    steps: int = 500
    lr: float = 1e-2
    clip: float | None = None
    batch_size: int = 32
    snapshots: tuple[int, ...] = (0, 100, 500)
    checkpoint_every: int = 50
    loss: str = "mse"  # or "cross_entropy" (one-hot targets: the digits task)
    momentum: float = 0.0  # sgd
    weight_decay: float = 0.0  # sgd, adam
    schedule: str = "constant"  # sgd, adam: "constant" or "cosine" over the run's steps
    depth_factor: bool = False  # sgd, adam: block weights move by L times the step, as in gradient flow
    # sgd, adam: [C21]'s stopping rule, per member, checked at the end of each epoch (ceil(n / batch_size)
    # steps): stop once the epoch's mean minibatch loss is below stop_loss, or after `patience` epochs
    # without a relative improvement of min_improvement over the best epoch; `steps` is the budget
    stop_loss: float | None = None
    patience: int | None = None
    min_improvement: float = 0.01
    # sgd, adam: how batches are drawn (odecheck.optim.SAMPLINGS): "random" each step, "epochs" of a fresh
    # permutation, or "c21-shuffle", [C21]'s duplicating epoch shuffle (to measure what that quirk does)
    sampling: str = "random"
    # sgd, adam: a depth parametrization's rule (odecheck.parametrizations: "standard", "depth-mup", "completep")
    # for the hidden lr and eps at m_L = depth / base_depth; model.beta must be the rule's alpha
    parametrization: str | None = None
    base_depth: int = 8

    def __post_init__(self) -> None:
        from odecheck.core.validation import check_choice, check_float
        from odecheck.engine.losses import LOSSES
        from odecheck.engine.optim import METHODS, SAMPLINGS, SCHEDULES

        check_choice("train.method", self.method, METHODS)
        check_choice("train.loss", self.loss, tuple(LOSSES))
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.sampling", self.sampling, SAMPLINGS)
        if not (0.0 <= check_float("train.momentum", self.momentum) < 1.0):
            raise invalid("train.momentum", self.momentum, "a float in [0, 1)")
        check_float("train.weight_decay", self.weight_decay, minimum=0.0)
        if not isinstance(self.depth_factor, bool):
            raise invalid("train.depth_factor", self.depth_factor, "true or false")
        if self.method == "gradient_flow" and (self.momentum or self.weight_decay or self.schedule != "constant"
                                               or self.depth_factor or self.sampling != "random"):
            raise invalid("train.method", self.method, "'sgd' or 'adam' with momentum, weight_decay, schedule, "
                                                       "depth_factor or sampling (gradient flow has the factor L and "
                                                       "none of them)")
        if self.stop_loss is not None and not check_float("train.stop_loss", self.stop_loss, minimum=0.0) > 0:
            raise invalid("train.stop_loss", self.stop_loss, "a positive float or absent")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise invalid("train.patience", self.patience, "an integer >= 1 or absent")
        if not (0.0 <= check_float("train.min_improvement", self.min_improvement) < 1.0):
            raise invalid("train.min_improvement", self.min_improvement, "a float in [0, 1)")
        if self.method == "gradient_flow" and (self.stop_loss is not None or self.patience is not None):
            raise invalid("train.method", self.method, "'sgd' or 'adam' with stop_loss or patience (they stop at "
                                                       "the end of an epoch of minibatches)")
        if self.parametrization is not None:
            from odecheck.experiments.parametrizations import RUN_PARAMETRIZATIONS

            check_choice("train.parametrization", self.parametrization, RUN_PARAMETRIZATIONS)
            if self.method == "gradient_flow":
                raise invalid("train.method", self.method, "'sgd' or 'adam' with a parametrization (its rules scale "
                                                           "their learning rate and epsilon)")
        if isinstance(self.base_depth, bool) or not isinstance(self.base_depth, int) or self.base_depth < 1:
            raise invalid("train.base_depth", self.base_depth, "an integer >= 1")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise invalid("train.checkpoint_every", self.checkpoint_every, "an integer >= 1")
        object.__setattr__(self, "snapshots", tuple(s for s in self.snapshots if s <= self.steps))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The [M24] finite-time setting (tied init, gelu, lr L*1e-2 on Z, 500 steps) at L = 64 by default."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.train.parametrization is not None:
            from odecheck.experiments.parametrizations import parametrization

            alpha = parametrization(self.train.parametrization).alpha
            if self.model.beta != alpha:
                raise invalid("model.beta", self.model.beta, f"{alpha:g}, the residual exponent alpha of "
                                                             f"train.parametrization = {self.train.parametrization!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"]["snapshots"] = list(self.train.snapshots)
        if d["train"]["clip"] is None:
            del d["train"]["clip"]
        for key, default in (("init_scale", 1.0), ("width_factors", True)):
            if d["model"][key] == default:  # written only when set: configs (and sweep cell ids) from before
                del d["model"][key]         # the field existed stay the same
        for key, default in (("stop_loss", None), ("patience", None), ("min_improvement", 0.01), ("sampling", "random"),
                             ("parametrization", None), ("base_depth", 8)):
            if d["train"][key] == default:
                del d["train"][key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        parts = {}
        for key, klass in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
            sub = d.get(key, {})
            if not isinstance(sub, dict):
                raise invalid(key, sub, "a table")
            known = {f.name for f in fields(klass)}
            unknown = set(sub) - known
            if unknown:
                raise InvalidArgument(f"[{key}] has unknown keys {sorted(unknown)}; known: {sorted(known)}")
            if key == "train" and "snapshots" in sub:
                sub = {**sub, "snapshots": tuple(sub["snapshots"])}
            parts[key] = klass(**sub)
        unknown = set(d) - {"model", "data", "train"}
        if unknown:
            raise InvalidArgument(f"config has unknown tables {sorted(unknown)}; known: model, data, train")
        return cls(**parts)

    @classmethod
    def load(cls, path) -> RunConfig:
        return cls.from_dict(read_toml(path, "config"))

    def dumps(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())
