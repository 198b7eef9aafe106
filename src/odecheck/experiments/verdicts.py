"""The one verdict record: a claim's decision in ``verify`` and a reproduction's result in ``reproduce``.

Every verdict states its estimate, its interval and the error rate alpha it controls. A claim's verdict
also carries the expected outcome, the number of replicates, the seconds it took, its configuration and
the tidy data behind its figure; a reproduction's carries the paper's published value and a note.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from odecheck.analysis.estimators.decisions import ALPHA
from odecheck.core._io import jsonable, number

# claims decide confirmed / refuted / inconclusive (or diverged); a reproduction may only measure
Decision = Literal["confirmed", "refuted", "inconclusive", "diverged", "measured"]
FigureKind = Literal["loglog", "pl", "cells", "transfer"]


@dataclass(frozen=True)
class Verdict:
    id: str
    verdict: Decision
    estimate: float
    ci: tuple[float, float]
    paper: str | None = None  # a reproduction: the published value it is compared with
    _: KW_ONLY
    alpha: float = ALPHA
    note: str = ""  # a reproduction: how the estimate was made, the code's own numbers
    expected: Decision | None = None  # a claim: the outcome the theory predicts in this scope
    n: int | None = None  # a claim: the replicates behind the interval
    seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # a claim: the tidy data behind its figure
    figure: FigureKind | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "verdict": self.verdict}
        if self.expected is not None:
            out["expected"] = self.expected
        out.update({"estimate": number(self.estimate), "ci": [number(self.ci[0]), number(self.ci[1])],
                    "alpha": self.alpha})
        if self.expected is not None:  # a claim's verdict
            details = jsonable(self.details)
            if self.figure is not None:
                details["plot"] = self.figure  # the report's figure kind, read by odecheck.plot
            out.update({"n": self.n, "seconds": round(self.seconds, 3), "config": jsonable(self.config),
                        "details": details})
        if self.paper is not None:  # a reproduction's result
            out.update({"paper": self.paper, "note": self.note})
        return out
