"""Claims, verdicts and the run context shared by every claim module."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Outcome = Literal["confirmed", "refuted", "inconclusive", "diverged"]
Budget = Literal["quick", "standard", "thorough"]
BUDGETS: tuple[str, ...] = ("quick", "standard", "thorough")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The decision on one claim with its evidence. ``details`` holds the tidy data behind the figure."""

    id: str
    verdict: Outcome
    expected: Outcome
    estimate: float
    ci: tuple[float, float]
    alpha: float
    n: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "verdict": self.verdict, "expected": self.expected, "estimate": _num(self.estimate),
                "ci": [_num(self.ci[0]), _num(self.ci[1])], "alpha": self.alpha, "n": self.n,
                "seconds": round(self.seconds, 3), "details": jsonable(self.details)}


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return _num(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


@dataclass
class Context:
    """What a claim's experiment may use: budget, seed, device and a progress hook."""

    budget: str = "standard"
    seed: int = 0
    device: str = "cpu"
    advance: Callable[[float], None] = lambda frac: None

    def pick(self, quick, standard, thorough):
        return {"quick": quick, "standard": standard, "thorough": thorough}[self.budget]


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A claim of SCIENCE.md: statement, source, scope, expected outcome and its experiment."""

    id: str
    statement: str
    source: str
    scope: dict[str, Any]
    expected: Outcome
    alpha: float
    decision: str
    experiment: Callable[[Context], dict[str, Any]]

    def run(self, ctx: Context) -> Verdict:
        t0 = time.perf_counter()
        res = self.experiment(ctx)
        return Verdict(id=self.id, verdict=res["verdict"], expected=self.expected, estimate=res["estimate"],
                       ci=tuple(res["ci"]), alpha=self.alpha, n=int(res["n"]),
                       seconds=time.perf_counter() - t0, details=res.get("details", {}))


def rate_decision(fit, *, target: float = -0.85) -> Outcome:
    """Rate claims (error <= C/L): confirmed if the whole interval lies below ``target``,
    refuted if it lies above, else inconclusive."""
    lo, hi = fit.ci
    if hi < target:
        return "confirmed"
    if lo > target:
        return "refuted"
    return "inconclusive"


def rough_decision(fit, *, target: float = -0.85) -> Outcome:
    """The mirror image (iid-init-rough: increments do not shrink like 1/L): confirmed if the whole
    interval lies above ``target``, refuted if below, else inconclusive."""
    return {"confirmed": "refuted", "refuted": "confirmed", "inconclusive": "inconclusive"}[
        rate_decision(fit, target=target)]
