"""``odecheck.verify``: run the claims, decide each with its evidence, write the report as it goes.

The orchestration of ``odecheck verify`` (resume, report files, figures) as a library function;
the command line only draws progress and translates argument names into flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from odecheck.core._errors import invalid
from odecheck.core.events import Meter, report
from odecheck.core.validation import resolve_device, writable_folder


def _finished(report_path, *, budget: str, seed: int, device: str) -> dict[str, dict]:
    """The verdicts already in ``report_path`` for the same budget, seed, device and odecheck version (none
    from an unreadable report: it is recomputed, not trusted)."""
    from odecheck.core import VERSION as __version__

    if not report_path.exists():
        return {}
    try:
        old = json.loads(report_path.read_text())
        if (old.get("budget"), old.get("seed"), old.get("device"), old.get("version")) == (
                budget, seed, device, __version__):
            return {c["id"]: c for c in old.get("claims", [])}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return {}


def _claim_ids(claims: Sequence[str] | None, budget: str) -> list[str]:
    """The claims to run (default: all, in registry order), the budget and each id checked by name."""
    from odecheck.experiments.claims import BUDGETS, REGISTRY

    if budget not in BUDGETS:
        raise invalid("budget", budget, f"one of {', '.join(BUDGETS)}")
    ids = list(REGISTRY) if not claims else list(claims)
    unknown = [c for c in ids if c not in REGISTRY]
    if unknown:
        raise invalid("claims", unknown[0], f"claim ids among {', '.join(REGISTRY)}")
    return ids


def verify(claims: Sequence[str] | None = None, *, budget: str = "standard", seed: int = 0, device="auto",
           out: str | os.PathLike = "odecheck-report", resume: bool = True,
           progress: Meter | None = None) -> dict[str, Any]:
    """Run the claims (default: all, in registry order) and return the report (JSON form).

    Every claim's samples derive their seeds from ``seed``. ``out`` receives ``report.json`` after
    each claim (an interrupted run keeps what it finished), one PNG per claim when matplotlib is
    installed, and ``report.md`` at the end. With ``resume``, verdicts already in ``out/report.json``
    for the same budget, seed, device and odecheck version are reused, not recomputed.

    ``progress``: a meter of :mod:`odecheck.events` (task "verify": "start", "advance" and "done" per claim,
    the last with ``result`` = {"verdict": its JSON, "reused": bool}).
    """
    from odecheck.experiments.claims import REGISTRY, Context
    from odecheck.presentation.report import markdown, report_dict, write_json

    ids = _claim_ids(claims, budget)
    dev = str(resolve_device(device))
    out = writable_folder("out", out)
    report_path = out / "report.json"
    done = _finished(report_path, budget=budget, seed=seed, device=dev) if resume else {}
    try:
        from odecheck.presentation.plot import verdict_figure
    except ImportError:  # matplotlib is the optional [plot] extra: no figures without it
        verdict_figure = None
    verdicts: list[dict] = []
    figures: dict[str, str] = {}
    for i, cid in enumerate(ids):
        report(progress, "verify", i, len(ids), cid, "start")
        reused = cid in done
        if reused:
            v = done[cid]
        else:
            ctx = Context(budget=budget, seed=seed, device=dev,
                          advance=lambda f, cid=cid, i=i: report(progress, "verify", i + min(float(f), 1.0), len(ids), cid))
            v = REGISTRY[cid].run(ctx).to_json()
        verdicts.append(v)
        if verdict_figure is not None:
            fig = verdict_figure(v, out / f"{cid}.png")
            if fig is not None:
                figures[cid] = fig.name
                v["figure"] = fig.name
        write_json(report_path, report_dict(verdicts, budget=budget, device=dev, seed=seed))
        report(progress, "verify", i + 1, len(ids), cid, "done", {"verdict": v, "reused": reused})
    rep = report_dict(verdicts, budget=budget, device=dev, seed=seed)
    write_json(report_path, rep)
    about = {c: {"statement": REGISTRY[c].statement, "source": REGISTRY[c].source, "decision": REGISTRY[c].decision,
                 "scope": REGISTRY[c].scope} for c in ids}
    (out / "report.md").write_text(markdown(rep, figures, about))
    return rep


__all__ = ["verify"]
