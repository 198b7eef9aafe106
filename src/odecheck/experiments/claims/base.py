"""Claims, verdicts and the run context shared by every claim module."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from odecheck.analysis.estimators.decisions import ALPHA, Outcome
from odecheck.core._errors import invalid
from odecheck.core._io import jsonable, number
from odecheck.experiments.verdicts import FigureKind, Verdict

Budget = Literal["quick", "standard", "thorough"]
BUDGETS: tuple[str, ...] = ("quick", "standard", "thorough")


Advance = Callable[[float], None]  # a claim's progress hook: the share of its work done (events.Progress is the event type)


def no_progress(frac: float) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """What one run of a claim's experiment found: the decision, its estimate and interval, the
    number of replicates behind them, the figure that shows them (``figure``, None: no figure) and the
    tidy data behind that figure (``details``)."""

    verdict: Outcome
    estimate: float
    ci: tuple[float, float]
    n: int
    figure: FigureKind | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def diverged(cls, **details: Any) -> Evidence:
        """A run whose training left the finite numbers: no estimate, nothing decided."""
        return cls(verdict="diverged", estimate=float("nan"), ci=(float("nan"), float("nan")), n=0, figure=None,
                   details=details)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "estimate": number(self.estimate),
                "ci": [number(self.ci[0]), number(self.ci[1])], "n": self.n, "figure": self.figure,
                "details": jsonable(self.details)}


# config fields validated as positive integers wherever they appear (see ExperimentConfig.__post_init__)
_POSITIVE_INTS = ("ensemble", "steps", "dim", "width", "samples", "input_dim", "depth", "grid",
                  "reference_factor")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """The frozen configuration of one claim's experiment. Each claim subclasses it with its scope's
    defaults; the budgets (quick, standard, thorough) are presets of it, and ``odecheck falsify``
    widens its fields. Fields are validated on construction (the error names the field)."""

    seed: int = 0
    device: str = "cpu"
    alpha: float = ALPHA  # the error rate the decision controls (intervals at level 1 - alpha, or Bonferroni)

    def __post_init__(self) -> None:
        from odecheck.core.validation import DTYPES, check_choice, check_float, check_int
        from odecheck.engine.activations import ACTIVATIONS
        from odecheck.engine.init import as_init

        check_int("seed", self.seed, 0)
        if not (0 < check_float("alpha", self.alpha) < 1):
            raise invalid("alpha", self.alpha, "a float in (0, 1)")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "depths":
                if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
                    raise invalid("depths", v, "a sequence of at least two positive integers")
                v = tuple(check_int("depths", d, 1) for d in v)
                if len(v) < 2 or len(set(v)) != len(v):
                    raise invalid("depths", list(v), "at least two distinct positive integers")
                object.__setattr__(self, "depths", v)
            elif f.name in _POSITIVE_INTS and v is not None:
                check_int(f.name, v, 1)
            elif f.name in ("lr", "beta", "length_scale", "C"):
                if check_float(f.name, v) <= 0:
                    raise invalid(f.name, v, "a positive float")
            elif f.name == "activation":
                check_choice("activation", v, ACTIVATIONS)
            elif f.name == "init":
                as_init(v)
            elif f.name == "dtype":
                check_choice("dtype", v, DTYPES)

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (validated); an unknown field is an error naming it."""
        known = {f.name for f in fields(self)}
        for k in changes:
            if k not in known:
                raise invalid("config", k, f"a field of {type(self).__name__}: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)  # __post_init__ validates, and makes depths a tuple

    def to_json(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}

    @property
    def torch_dtype(self):
        import torch

        return {"float32": torch.float32, "float64": torch.float64}[getattr(self, "dtype", "float32")]


@dataclass
class Context:
    """What verify passes a claim: budget (the preset), seed, device and a progress hook."""

    budget: str = "standard"
    seed: int = 0
    device: str = "cpu"
    advance: Advance = no_progress


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A claim of the theory (docs/theory.md): statement, source, scope, expected outcome, its
    experiment and the experiment's presets, one frozen config per budget."""

    id: str
    statement: str
    source: str
    scope: dict[str, Any]
    expected: Outcome
    alpha: float
    decision: str
    presets: Mapping[str, ExperimentConfig]
    experiment: Callable[..., Evidence]

    def config(self, budget: str = "standard", **changes: Any) -> ExperimentConfig:
        """The preset of ``budget`` with ``changes`` applied."""
        if budget not in self.presets:
            raise invalid("budget", budget, f"one of {', '.join(self.presets)}")
        return self.presets[budget].replace(**changes) if changes else self.presets[budget]

    def evidence(self, config: ExperimentConfig, progress: Advance = no_progress) -> Evidence:
        """Run the experiment on ``config`` (a preset, or one widened by ``falsify``)."""
        if not isinstance(config, type(self.presets["standard"])):
            raise invalid("config", type(config).__name__, f"a {type(self.presets['standard']).__name__}")
        return self.experiment(config, progress=progress)

    def run(self, ctx: Context) -> Verdict:
        t0 = time.perf_counter()
        cfg = self.config(ctx.budget, seed=ctx.seed, device=ctx.device)
        ev = self.evidence(cfg, ctx.advance)
        return Verdict(id=self.id, verdict=ev.verdict, expected=self.expected, estimate=ev.estimate,
                       ci=tuple(ev.ci), alpha=self.alpha, n=int(ev.n), seconds=time.perf_counter() - t0,
                       details=ev.details, figure=ev.figure, config=cfg.to_json())


