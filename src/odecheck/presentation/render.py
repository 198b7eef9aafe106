"""How the command line draws results: rich tables for verify, analyze, bench and reproduce (the data
comes from the library as dicts; nothing here computes a result)."""

from __future__ import annotations

import re
from pathlib import Path

from rich.markup import escape
from rich.table import Table


def verify_table(verdicts: list[dict], *, title: str) -> Table:
    """One row per claim: verdict (coloured), expected outcome, estimate, interval, alpha, n, seconds."""
    table = Table(title=title)
    for col in ("claim", "verdict", "expected", "estimate", "interval", "alpha", "n", "s"):
        table.add_column(col, no_wrap=True)
    colors = {"confirmed": "green", "refuted": "red", "inconclusive": "yellow", "diverged": "magenta"}
    for v in verdicts:
        lo, hi = v["ci"]
        est = "n/a" if v["estimate"] is None else f"{v['estimate']:.{interval_digits(lo, hi, v['estimate'])}g}"
        table.add_row(v["id"], f"[{colors.get(v['verdict'], 'white')}]{v['verdict']}", v["expected"],
                      est, interval_text(lo, hi), str(v["alpha"]), str(v["n"]), f"{v['seconds']:.1f}")
    return table


def interval_digits(lo, hi, estimate=None, least: int = 3, most: int = 10) -> int:
    """Significant digits that tell the interval's ends (and the estimate) apart: ``least`` unless two of
    them would print alike while they differ, then more, up to ``most``."""
    vals = [x for x in (lo, hi, estimate) if x is not None]
    for d in range(least, most + 1):
        if all(f"{a:.{d}g}" != f"{b:.{d}g}" for i, a in enumerate(vals) for b in vals[i + 1:] if a != b):
            return d
    return most


def interval_text(lo, hi) -> str:
    """'[lo, hi]' with enough digits that the two ends differ when they do: [-1.002, -1.001], not [-1, -1]."""
    if lo is None or hi is None:
        return "[n/a, n/a]"
    d = interval_digits(lo, hi)
    return f"[{lo:.{d}g}, {hi:.{d}g}]"


def verify_summary(verdicts: list[dict], seconds: float, reused: int = 0) -> str:
    """One line: how many claims came out as expected, the other verdicts, and the wall time
    ('11 of 11 confirmed in 96 s')."""
    n = len(verdicts)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    text = f"{counts.pop('confirmed', 0)} of {n} confirmed"
    text += "".join(f", {k} {w}" for w, k in sorted(counts.items()))
    return text + f" in {seconds:.0f} s" + (f" ({reused} reused from an earlier run)" if reused else "")


def regime_why(row: dict) -> str:
    """The short reason shown beside a regime: small- and large-lag exponents for a crossover, the
    rule's reason for an undecided path, nothing for a decided one."""
    local = row.get("local") or []
    if row["regime"] == "mixed" and len(local) >= 2:
        a, b = local[0], local[-1]
        return (f"{a['estimate']:.2f} at lags {a['lags'][0]}-{a['lags'][1]}, "
                f"{b['estimate']:.2f} at lags {b['lags'][0]}-{b['lags'][1]}")
    if row["regime"] == "inconclusive":
        return row.get("regime_reason", "")
    return ""


def paths_table(rows: list[dict], gains: bool) -> Table:
    """The paths' table, one row a path (with a Heun gain column when ``gains``)."""
    table = Table(title="weight paths along depth, least regular first")
    for col in ("file", "name", "L", "max incr", "normalized", "max norm", "hurst [95% CI]", "regime", "why",
                *(("heun gain",) if gains else ())):
        table.add_column(col, no_wrap=col not in ("name", "why"), max_width=40 if col == "why" else None,
                         overflow="fold")
    for r in rows:
        lo, hi = r["hurst_ci"]
        name = r["name"] + (f" [{r['member']}]" if "member" in r else "")
        table.add_row(escape(Path(r["file"]).name), escape(name), str(r["depth"]), f"{r['max_increment']:.3g}",
                      f"{r.get('max_normalized_increment', float('nan')):.3g}" + (" *" if r.get("feeds_norm") else ""),
                      f"{r['max_norm']:.3g}",
                      f"{r['hurst']:.2f} [{lo:.2f}, {hi:.2f}]", r["regime"], escape(regime_why(r)),
                      *((f"{r['heun_gain']:.3g}" if "heun_gain" in r else "-",) if gains else ()))
    return table


SHOWN_PATHS = 20  # the compact terminal's paths: the least regular ones


def _regime_counts(words) -> str:
    """'ode 3, sde 1': how often each regime (or limit) word occurs, the commonest first."""
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


SHOWN_LEFT = 10  # lines of left-out name patterns in the compact terminal


def print_analysis(res: dict, out, *, all_paths: bool = False) -> None:
    """analyze's families table, its paths (least regular first) and what was left out, on the rich console
    ``out``. Compact unless ``all_paths``: one row per family, the SHOWN_PATHS least regular paths, the rest and
    the normalization layers' own vectors and families (BatchNorm, LayerNorm) counted by regime in one line
    each; ``all_paths`` adds every path and one line per family and statistic."""
    from odecheck.analysis.checkpoints.paths import normalization_vector

    rows, skipped = res["paths"], res["skipped"]
    folded = [] if all_paths else [r for r in rows if normalization_vector(r["name"])]
    rows = [r for r in rows if all_paths or not normalization_vector(r["name"])]
    rest, rows = ([], rows) if all_paths else (rows[SHOWN_PATHS:], rows[:SHOWN_PATHS])
    fams, folded_fams = [], []
    for f in res["families"]:
        (folded_fams if not all_paths and normalization_vector(f["name"]) else fams).append(f)
    if fams:
        out.print(families_table(fams))
    if folded_fams:
        out.print(f"{len(folded_fams)} families of normalization vectors folded "
                  f"({_regime_counts(f['limit'] for f in folded_fams)}); --all-paths prints them")
    gains = any("heun_gain" in r for r in rows)  # --features: each network's Heun gain (claim 12)
    out.print(paths_table(rows, gains))
    if rest:
        out.print(f"{len(rest)} more paths ({_regime_counts(r['regime'] for r in rest)}): every one in --json and "
                  "--out; --all-paths prints them")
    if folded:
        out.print(f"{len(folded)} normalization vectors (BatchNorm/LayerNorm weights and biases) folded "
                  f"({_regime_counts(r['regime'] for r in folded)}); --all-paths prints them")
    if gains:
        out.print("heun gain: Euler's error recovering h_0 backward over Heun's on the network's weights; about L^2 "
                  "for weights smooth in depth, O(1) for rough ones ([S22], claim 12)")
    if any(r.get("feeds_norm") for r in rows):
        out.print("* the weight feeds a normalization layer (read from its neighbours' names): its scale is not "
                  "seen downstream, the normalized increment is the one that counts")
    if all_paths:
        _scaling_lines(res, out)
    left: dict[tuple[str, str], int] = {}  # one line per name pattern and reason: a layer index becomes *
    for s in skipped:
        pattern = re.sub(r"(?<=\.)\d+(?=\.)", "*", s["name"])
        left[(pattern, s["reason"])] = left.get((pattern, s["reason"]), 0) + 1
    shown = list(left.items()) if all_paths else list(left.items())[:SHOWN_LEFT]
    for (pattern, reason), n in shown:
        out.print(escape(f"left out: {pattern}" + (f" ({n} tensors)" if n > 1 else "") + f": {reason}"))
    if len(shown) < len(left):
        out.print(f"left out: {sum(list(left.values())[SHOWN_LEFT:])} more tensors under {len(left) - SHOWN_LEFT} more "
                  "names: every one in --json and --out; --all-paths prints them")
    for x in res.get("failed", []):
        out.print(f"[red]failed:[/red] {escape(x['error'])}", soft_wrap=True)


def families_table(fams: list[dict]) -> Table:
    """One row per family across depths: each statistic's exponent in L with its interval, and the family's
    limit with the statistic it comes from (the normalized increment where there is one: scale-free)."""
    ft = Table(title="families across depths (exponent in L, 95% interval)")
    for col in ("family", "depths", "max incr", "normalized", "max norm", "limit"):
        ft.add_column(col, no_wrap=True, overflow="fold" if col == "family" else "ellipsis")
    for fam in fams:
        st = fam["statistics"]

        def cell(k, st=st):
            if k not in st:
                return "-"
            lo, hi = st[k]["ci"]
            return f"{st[k]['exponent']:.2f}" + ("" if lo != lo else f" [{lo:.2f}, {hi:.2f}]")

        source = "normalized" if fam.get("limit_from") == "max_normalized_increment" else "max incr"
        ft.add_row(escape(fam["name"]), ",".join(map(str, fam["depths"])), cell("max_increment"),
                   cell("max_normalized_increment"), cell("max_norm"), f"{fam['limit']} (from {source})")
    return ft


def _scaling_lines(res: dict, out) -> None:
    limit_from = {f["name"]: f.get("limit_from") for f in res.get("families", [])}
    for s in res["scaling"]:
        lo, hi = s["ci"]
        ci = "no interval: one network per depth and two depths" if lo != lo else f"[{lo:.3f}, {hi:.3f}]"
        limit = f": family limit {s['limit']}" if "limit" in s and limit_from.get(s["name"]) == s["statistic"] else ""
        out.print(f"{escape(s['name'])}: {s['statistic']} ~ L^{s['exponent']:.3f} {ci} over depths {s['depths']}{limit}")


def bench_tables(res: dict, *, cpu: bool) -> list[Table]:
    """bench's table of timings, and one of the fused kernels by build when they were timed."""
    native = res.get("native") or {}
    where = f"{res['device']}" + (f" ({res['cpu']}; kernels: {native.get('isa', native.get('state'))})"
                                   if cpu else "")
    peak = res.get("fma_peak")
    peak_text = f", FMA peak {peak['gflops']:.0f} GFLOP/s (measured)" if peak else ""
    table = Table(title=f"odecheck bench: {where}, {res['threads']} threads, bare bmm {res['bmm_gflops']:.1f} GFLOP/s"
                        + peak_text)
    for col in ("L", "R", "baseline s/step", "batched s/step", "engine s/step", "path", "max rel diff", "speedup",
                "engine vs batched", "nn.Module / engine", "GFLOP/s", "roofline", "of FMA peak"):
        table.add_column(col, justify="right")
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in res["results"]:
        table.add_row(str(r["depth"]), str(r["ensemble"]), fmt(r["baseline_s"], ".4f"), fmt(r["batched_s"], ".4f"),
                      f"{r['engine_s']:.4f}", r["engine_path"], fmt(r["path_max_rel_diff"], ".1e"),
                      "-" if r["speedup"] is None else f"{r['speedup']:.1f}x",
                      "-" if r["engine_vs_batched"] is None else f"{r['engine_vs_batched']:.2f}x",
                      "-" if r["module_vs_engine"] is None else f"{r['module_vs_engine']:.2f}", f"{r['gflops']:.1f}",
                      f"{r['roofline_fraction']:.2f}",
                      "-" if r.get("fma_peak_share") is None else f"{100 * r['fma_peak_share']:.0f} %")
    tables = [table]
    if any(r["variants"] for r in res["results"]):
        vt = Table(title="fused kernels by build (forced on)")
        for col in ("L", "R", "build", "isa", "fused s/step", "speedup", "vs batched", "roofline", "max rel diff"):
            vt.add_column(col, justify="right")
        for r in res["results"]:
            for name, v in r["variants"].items():
                vt.add_row(str(r["depth"]), str(r["ensemble"]), name, f"{v['isa']} ({v['lanes']} lanes)",
                           f"{v['fused_s']:.4f}", "-" if v["speedup"] is None else f"{v['speedup']:.1f}x",
                           f"{v['vs_batched']:.2f}x", f"{v['roofline_fraction']:.2f}", fmt(v["path_max_rel_diff"], ".1e"))
        tables.append(vt)
    return tables


def reproduce_table(rep: dict, *, title: str) -> Table:
    """One row per result of a reproduction: verdict, estimate, interval, alpha and the paper's value."""
    table = Table(title=title)
    for col in ("result", "verdict", "estimate", "interval", "alpha", "paper"):
        table.add_column(col)
    for r in rep["results"]:
        ci = "-" if r["ci"][0] is None else f"[{r['ci'][0]:.3g}, {r['ci'][1]:.3g}]"
        table.add_row(r["id"], r["verdict"], "-" if r["estimate"] is None else f"{r['estimate']:.3g}", ci,
                      str(r["alpha"]), r["paper"])
    return table


def run_summary(cfg, net, traj, sm) -> str:
    """``odecheck train``'s closing lines from a ``runner.RunSummary``: final loss, increments, divergence and,
    for classification, the accuracies."""
    import numpy as np

    inc = ("no increments (depth 1)" if sm.increments_of.startswith("none") else
           f"max_k,t ||Z_k+1 - Z_k|| median {np.nanmedian(sm.max_increment):.4g}" if sm.increments_of == "steps" else
           f"max_k ||Z_k+1 - Z_k|| of the final weights, median {np.median(sm.max_increment):.4g}")
    text = (f"trained {net.ensemble} networks of depth {net.depth} for {traj.steps} steps; "
            f"final loss median {np.nanmedian(sm.final_loss):.4g}; {inc}; diverged {int(traj.diverged.sum())}")
    if cfg.train.loss == "cross_entropy":
        text += f"\naccuracy median over members: train {np.median(sm.train_accuracy):.4f}"
        if np.isfinite(sm.test_accuracy).all():
            text += f", test {np.median(sm.test_accuracy):.4f} (per member: {np.round(sm.test_accuracy, 4).tolist()})"
    return text


def sweep_summary(df, n_cells: int) -> str:
    """Cells, rows and how many rows ended done, diverged or failed."""
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    return f"{n_cells} cells, {len(df)} rows: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "diverged", "failed"))


def verify_footer(verdicts: list[dict], out: Path, report_name: str) -> str:
    """Where verify wrote its report and figures, and the claims whose verdict differs from the expected one."""
    figures = [v for v in verdicts if v.get("figure")]
    text = f"wrote {out / 'report.md'}, {out / report_name} and {len(figures)} figures"
    mismatched = [v["id"] for v in verdicts if v["verdict"] != v["expected"]]
    return text + (f"\nverdicts differing from the expected outcome: {', '.join(mismatched)}" if mismatched else "")


def contention_table(res: dict) -> Table:
    """``odecheck bench --contention``: median seconds per workload, quiet and busy, under each thread policy,
    and the three ratios (targets: busy free-cores / one thread <= 1.2, quiet free-cores / all cores <= 1.05)."""
    t = Table(title=f"contention: {res['busy_processes']} busy process(es) on {res['allowed_cores']} cores, "
                    f"{res['rounds']} rounds ({res['cpu']}, fused kernels {_isa(res['native'])})")
    for col in ("workload", "quiet free-cores", "quiet all-cores", "quiet 1 thread", "busy free-cores",
                "busy all-cores", "busy 1 thread", "busy policy / 1 thread", "quiet policy / all cores",
                "busy all / 1 thread"):
        t.add_column(col, no_wrap=True)
    for r in res["rows"]:
        s = r["seconds"]
        t.add_row(r["workload"], *(f"{s[st][p]:.2f}" for st in ("quiet", "busy")
                                   for p in ("free-cores", "all-cores", "one-thread")),
                  f"{r['busy_policy_vs_one_thread']:.2f}", f"{r['quiet_policy_vs_all_cores']:.2f}",
                  f"{r['busy_all_cores_vs_one_thread']:.2f}")
    return t


def _isa(status) -> str:
    return status.get("isa", "n/a") if isinstance(status, dict) else str(status)
