"""Verify reports: JSON (machine-readable) and Markdown (human-readable)."""

from __future__ import annotations

from typing import Any

from odecheck.core import VERSION as __version__
from odecheck.core._io import write_json


def environment() -> dict[str, Any]:
    """What computed the numbers: torch build, threads, and whether the fused CPU kernels could run,
    with the instruction set they were built for (they take the mlp work they cover where the engine
    measured them faster; the rest runs on the batched torch path)."""
    import torch

    from odecheck.core import threads
    from odecheck.engine import _native

    gov = threads.active()
    policy = gov.summary() if gov is not None else {"policy": "fixed", "threads": torch.get_num_threads()}
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "thread_policy": policy,
            "fused_cpu_kernels": _native.status()}


def report_dict(verdicts: list[dict[str, Any]], *, budget: str, device: str, seed: int) -> dict[str, Any]:
    return {"version": __version__, "budget": budget, "device": device, "seed": seed, "environment": environment(),
            "claims": verdicts}


def kernels_text(status: dict[str, Any] | str) -> str:
    """One phrase for ``_native.status()``: 'available (avx2, 8 lanes; AMD EPYC)', 'disabled', ..."""
    if isinstance(status, str):  # reports written before the instruction set was recorded
        return status
    text = status.get("state", "unknown")
    if status.get("isa"):
        text += f" ({status['isa']}, {status['lanes']} lanes; {status.get('cpu', '?')})"
    return text


def _env_line(env: dict[str, Any] | None) -> str:
    if not env:
        return ""
    return (f" torch {env['torch']}, {env['threads']} threads, fused CPU kernels "
            f"{kernels_text(env['fused_cpu_kernels'])}.")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def markdown(report: dict[str, Any], figures: dict[str, str], about: dict[str, dict] | None = None) -> str:
    """report.md of a verify run; ``about``: per claim id its statement, source, decision rule and scope (the
    caller's registry: this layer draws data and imports no claims)."""
    about = about or {}

    lines = ["# odecheck verify report", "",
             f"odecheck {report['version']}, budget `{report['budget']}`, device `{report['device']}`, "
             f"seed {report['seed']}." + _env_line(report.get("environment")), "",
             "| claim | verdict | expected | estimate | interval | alpha | n | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in report["claims"]:
        lo, hi = c["ci"]
        lines.append(f"| `{c['id']}` | **{c['verdict']}** | {c['expected']} | {_fmt(c['estimate'])} | "
                     f"[{_fmt(lo)}, {_fmt(hi)}] | {c['alpha']} | {c['n']} | {c['seconds']:.1f} |")
    lines.append("")
    for c in report["claims"]:
        claim = about.get(c["id"])
        lines += [f"## {c['id']}", ""]
        if claim is not None:
            lines += [f"*{claim['statement']}* ({claim['source']})", "", f"Decision rule: {claim['decision']}.", "",
                      f"Scope: `{claim['scope']}`", ""]
        stat = (c.get("details") or {}).get("statistic")
        if stat:
            lines += [f"Statistic: {stat}", ""]
        if c["id"] in figures:
            lines += [f"![{c['id']}]({figures[c['id']]})", ""]
    return "\n".join(lines) + "\n"


__all__ = ["environment", "kernels_text", "markdown", "report_dict", "write_json"]
