import json

import numpy as np
import pytest
import torch
from odecheck.claims import REGISTRY, Context
from typer.testing import CliRunner

from odecheck.cli import app

runner = CliRunner()

IDS = ["ode-rate-fixed-weights", "tied-init-lipschitz", "trained-ode-limit", "iid-init-rough",
       "pl-overparameterized", "relu-counterexample", "init-scaling-regimes", "trained-scaling-regimes",
       "feature-regularity", "depth-transfer", "mean-ode-rate", "ode-discretization", "lr-depth-law"]


def test_registry_has_exactly_the_claims():
    assert list(REGISTRY) == IDS
    for c in REGISTRY.values():
        assert c.statement and c.source and c.scope and c.decision and 0 < c.alpha < 1


@pytest.mark.parametrize("cid", ["ode-rate-fixed-weights", "relu-counterexample", "init-scaling-regimes",
                                 "pl-overparameterized", "feature-regularity", "depth-transfer", "mean-ode-rate",
                                 "ode-discretization"])
def test_fast_claims_reach_expected_verdict_on_quick_budget(cid):
    torch.set_num_threads(1)
    v = REGISTRY[cid].run(Context(budget="quick", seed=0))
    assert v.verdict == v.expected, v
    assert np.isfinite(v.estimate) and v.ci[0] <= v.estimate <= v.ci[1]


def test_verify_cli_writes_report_and_resumes(tmp_path):
    out = tmp_path / "rep"
    args = ["verify", "--budget", "quick", "--claims", "relu-counterexample,init-scaling-regimes",
            "--device", "cpu", "--out", str(out), "--json", str(tmp_path / "r.json")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    # not a terminal: one plain line per finished claim instead of live progress bars
    assert "[1/2] relu-counterexample: confirmed, estimate" in res.output
    assert "[2/2] init-scaling-regimes: confirmed, estimate" in res.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep) >= {"version", "budget", "device", "seed", "environment", "claims"}
    assert set(rep["environment"]) == {"torch", "threads", "thread_policy", "fused_cpu_kernels"}
    assert rep["environment"]["thread_policy"]["policy"] in ("free cores", "fixed")
    kernels = rep["environment"]["fused_cpu_kernels"]
    assert kernels["state"] in ("available", "disabled", "unavailable")
    if kernels["state"] == "available":  # the instruction set the kernels were built for is on record
        assert kernels["isa"] in ("avx512", "avx2", "avx", "sse2", "neon", "scalar") and kernels["lanes"] >= 1
        assert f"({kernels['isa']}, {kernels['lanes']} lanes" in (out / "report.md").read_text()
    assert "fused CPU kernels" in (out / "report.md").read_text()
    for c in rep["claims"]:
        assert set(c) >= {"id", "verdict", "expected", "estimate", "ci", "alpha", "n", "seconds", "details"}
    assert (out / "report.md").exists() and (out / "relu-counterexample.png").exists()
    assert rep["claims"][0]["figure"] == "relu-counterexample.png"
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    rep2 = json.loads((out / "report.json").read_text())
    assert [c["seconds"] for c in rep2["claims"]] == [c["seconds"] for c in rep["claims"]]  # reused


def test_same_seed_same_report(tmp_path):
    outs = []
    for i in range(2):
        res = runner.invoke(app, ["verify", "--budget", "quick", "--claims", "relu-counterexample",
                                  "--device", "cpu", "--out", str(tmp_path / f"r{i}")])
        assert res.exit_code == 0
        rep = json.loads((tmp_path / f"r{i}" / "report.json").read_text())
        for c in rep["claims"]:
            c.pop("seconds")
        rep["environment"].pop("thread_policy")  # the other processes' load it measured: a timing, like seconds
        outs.append(rep)
    assert outs[0] == outs[1]


@pytest.mark.parametrize("args,needle", [(["--claims", "nope"], "nope"), (["--budget", "huge"], "budget")])
def test_verify_bad_arguments_exit_2(tmp_path, args, needle):
    res = runner.invoke(app, ["verify", "--out", str(tmp_path / "o")] + args)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_verify_refuses_an_unwritable_json_before_running_any_claim(tmp_path):
    res = runner.invoke(app, ["verify", "--budget", "quick", "--claims", "relu-counterexample", "--device", "cpu",
                              "--out", str(tmp_path / "rep"), "--json", "/proc/odecheck/r.json"])
    assert res.exit_code == 2 and "--json" in res.output
    assert not (tmp_path / "rep" / "report.json").exists()  # nothing ran


@pytest.mark.parametrize("cid", ["ode-rate-fixed-weights", "iid-init-rough", "trained-scaling-regimes",
                                 "feature-regularity"])
def test_figure_line_is_the_fit_of_the_data_it_is_drawn_over(cid):
    from odecheck.plot import loglog_line

    torch.set_num_threads(1)
    v = REGISTRY[cid].run(Context(budget="quick", seed=0)).to_json()
    d = v["details"]
    assert d["plot"] == "loglog"
    assert v["ci"][0] <= v["estimate"] <= v["ci"][1]  # an interval contains its own estimate
    slope, intercept, (lo, hi) = loglog_line(v)
    # the mean of per-member OLS slopes is the OLS slope of the members' mean log (linearity of OLS)
    x = np.log(np.asarray(d["depths"], dtype=float))
    logs = np.log(np.asarray(d["values"], dtype=float))
    ybar = logs.mean(1) if logs.ndim == 2 else logs
    want_slope, want_intercept = np.polyfit(x, ybar, 1)
    assert slope == pytest.approx(want_slope, rel=1e-9, abs=1e-12)
    assert intercept == pytest.approx(want_intercept, rel=1e-9, abs=1e-12)
    assert lo <= slope <= hi


def test_verify_is_a_library_function_with_resume_and_named_errors(tmp_path):
    from odecheck._errors import InvalidArgument

    import odecheck as oc

    seen, events = [], []

    def meter(e):
        events.append((e.task, e.stage, e.item))
        if e.stage == "done":
            seen.append((e.result["verdict"]["id"], e.result["reused"]))

    rep = oc.verify(["relu-counterexample"], budget="quick", device="cpu", out=tmp_path, progress=meter)
    assert [c["id"] for c in rep["claims"]] == ["relu-counterexample"] and seen == [("relu-counterexample", False)]
    assert events[0] == ("verify", "start", "relu-counterexample") and events[-1][1] == "done"
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.md").exists()
    again = oc.verify(["relu-counterexample"], budget="quick", device="cpu", out=tmp_path, progress=meter)
    assert seen[-1] == ("relu-counterexample", True) and again["claims"] == rep["claims"]
    for kwargs, name in (({"budget": "huge"}, "budget"), ({"claims": ["nope"]}, "claims"),
                         ({"out": "/proc/odecheck-report"}, "out")):
        with pytest.raises(InvalidArgument) as e:
            oc.verify(**{"budget": "quick", "device": "cpu", "out": tmp_path, **kwargs})
        assert e.value.argument == name
    res = runner.invoke(app, ["verify", "--budget", "huge"])
    assert res.exit_code == 2 and "--budget 'huge'" in res.output


@pytest.mark.parametrize("cid,spied", [
    ("depth-transfer", [("odecheck.estimators.transfer", "transfer_slope"), ("odecheck.claims.transfer", "scaling_exponent")]),
    ("mean-ode-rate", [("odecheck.estimators.ensemble", "ensemble_rates")])])
def test_claims_with_two_estimates_compute_each_at_one_minus_alpha_over_2(cid, spied, monkeypatch):
    # claims 10 and 11 decide on two estimates (Bonferroni): each interval at 1 - alpha/2 = 0.975, what the
    # estimators actually receive (spied), not what the claim reports
    import importlib

    from odecheck.claims import REGISTRY

    torch.set_num_threads(1)
    levels: dict[str, list[float]] = {}
    for module, name in spied:
        mod = importlib.import_module(module)
        real = getattr(mod, name)

        def spy(*args, _real=real, _name=name, **kw):
            levels.setdefault(_name, []).append(kw.get("level"))
            return _real(*args, **kw)

        monkeypatch.setattr(mod, name, spy)
    claim = REGISTRY[cid]
    ev = claim.evidence(claim.config("quick"))
    assert claim.alpha == 0.05
    assert set(levels) == {name for _, name in spied}
    assert all(lv == [0.975] for lv in levels.values()), levels
    assert ev.details["level"] == 0.975


def _spy_scaling_levels(monkeypatch, mod) -> list:
    """The levels ``mod.scaling_exponent`` is called with, in order (the list fills as the claim runs)."""
    torch.set_num_threads(1)
    levels = []
    real = mod.scaling_exponent

    def spy(*args, **kw):
        levels.append(kw.get("level"))
        return real(*args, **kw)

    monkeypatch.setattr(mod, "scaling_exponent", spy)
    return levels


def test_ode_discretization_decides_each_of_its_cells_at_one_minus_alpha_over_cells(monkeypatch):
    # claim 12 decides 7 cells at once (Bonferroni): every slope interval at 1 - 0.05/7, as the estimator receives it
    from odecheck.experiments.claims import discretization as mod

    levels = _spy_scaling_levels(monkeypatch, mod)
    claim = REGISTRY["ode-discretization"]
    ev = claim.evidence(claim.config("quick"))
    assert len(mod.CELLS) == 7 and levels == [1 - 0.05 / 7] * 7
    assert ev.details["level"] == 1 - 0.05 / 7
    assert [c["call"] for c in ev.details["cells"]] == ["confirmed"] * 7 and ev.verdict == "confirmed"


def test_ode_discretization_declines_cells_whose_errors_vanish():
    # the tied init's V = 0: every branch is 0 and every mlp error exactly 0 - no power law to fit, so those
    # cells decline (inconclusive) instead of reading slope 0 as 'does not reach order 1'
    claim = REGISTRY["ode-discretization"]
    ev = claim.evidence(claim.config("quick", smooth="tied", depths=(16, 32, 64)))
    smooth = [c for c in ev.details["cells"] if c["weights"] == "tied" or c["weights"] == "smooth"]
    assert smooth and all(c["call"] == "inconclusive" and c["declined"] for c in smooth)
    assert ev.verdict == "inconclusive"


def test_lr_depth_law_decides_two_estimates_per_block_at_one_minus_alpha_over_4_with_the_grid_band(monkeypatch):
    # claim 13 on mlp and conv: per block the largest stable lr's slope and the one-step energy's, each at
    # 1 - alpha/(2 blocks) (spied: four calls), each called against -3/2 +- 1/(2 log2(L_eff max / L_eff min)) of
    # its own grid; the verdict is all_of the four calls
    from odecheck.estimators.decisions import all_of, law_call

    from odecheck.experiments.claims import lr_law as mod

    levels = _spy_scaling_levels(monkeypatch, mod)
    claim = REGISTRY["lr-depth-law"]
    cfg = claim.config("quick")
    assert [o["block"] for o in cfg.also] == ["conv"]
    ev = claim.evidence(cfg)
    d = ev.details
    assert levels == [1 - 0.05 / 4] * 4 and d["level"] == 1 - 0.05 / 4
    assert d["depths"] == [L + 2 for L in cfg.depths]
    assert d["band"] == pytest.approx(1 / (2 * np.log2((cfg.depths[-1] + 2) / (cfg.depths[0] + 2))))
    assert d["stable_call"] == law_call(ev.ci, -1.5, d["band"]) and d["mu_call"] == law_call(d["mu_ci"], -1.5, d["band"])
    (conv,) = d["further_blocks"]
    depths = cfg.also[0]["depths"]
    assert conv["block"] == "conv" and conv["depths"] == [L + 2 for L in depths] and conv["ensemble"] == 4
    assert conv["band"] == pytest.approx(1 / (2 * np.log2((depths[-1] + 2) / (depths[0] + 2))))
    assert conv["stable_call"] == law_call(conv["ci"], -1.5, conv["band"])
    assert conv["mu_call"] == law_call(conv["mu_ci"], -1.5, conv["band"])
    assert ev.verdict == all_of([d["stable_call"], d["mu_call"], conv["stable_call"], conv["mu_call"]])
    # the figure's conv panel draws the fit of its own data: values 2^edge, the line through their mean logs
    V = np.exp2(np.asarray(conv["log2_max_stable_lr"], dtype=float))
    np.testing.assert_allclose(conv["values"], V, rtol=1e-15)
    want_slope, want_icpt = np.polyfit(np.log(conv["depths"]), np.log(V).mean(1), 1)
    assert conv["slope"] == pytest.approx(want_slope, rel=1e-9)
    assert conv["intercept"] == pytest.approx(want_icpt, rel=1e-9, abs=1e-12)


