"""odecheck reproduce at smoke scale: runs on sweep, writes figure, report and JSON of the stated
shape; the statistics are recomputed here from the sweep's own files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from odecheck.estimators import l2_distance, scaling_exponent
from odecheck.reproduce import REPRODUCTIONS, reproduce
from typer.testing import CliRunner

from odecheck.cli import app

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

KEYS = {"name", "scale", "seconds", "figure", "results"}


def test_m24_fig1_smoke_reproduces_the_slopes(tmp_path):
    rep = reproduce("m24-fig1", scale="smoke", out=tmp_path)
    assert KEYS <= set(rep) and rep["scale"] == "smoke" and rep["figure"] == "figure.png"
    folder = tmp_path / "m24-fig1-smoke"
    assert (folder / "figure.png").stat().st_size > 10_000 and (folder / "report.md").exists()
    assert json.loads((folder / "report.json").read_text()) == json.loads(json.dumps(rep))
    res = {r["id"]: r for r in rep["results"]}
    assert set(res) == {"max-increment-slope", "l2-to-reference-slope", "rss-aggregate-slope"}
    for r in res.values():
        assert set(r) >= {"id", "verdict", "estimate", "ci", "paper", "alpha"}
    # recompute the headline slope from the sweep's table, independently of the analysis
    df = pd.read_parquet(folder / "results.parquet")
    main = df[df["model.depth"] != 128]
    depths = sorted(main["model.depth"].unique())
    D = np.array([main[main["model.depth"] == L].sort_values("member")["max_increment"] for L in depths])
    x = np.log(depths)
    slopes = [np.polyfit(x, np.log(D[:, r]), 1)[0] for r in range(D.shape[1])]
    assert res["max-increment-slope"]["estimate"] == pytest.approx(np.mean(slopes), abs=1e-9)
    assert res["max-increment-slope"]["verdict"] == "confirmed"
    # L2 to the reference from the cells' saved weights
    ref = df[df["model.depth"] == 128]["cell"].iloc[0]
    wr = np.load(folder / "cells" / ref / "weights.npz")
    l2 = []
    for L in depths:
        w = np.load(folder / "cells" / main[main["model.depth"] == L]["cell"].iloc[0] / "weights.npz")
        l2.append([np.hypot(l2_distance(w["final/V"][r], wr["final/V"][r]), l2_distance(w["final/W"][r], wr["final/W"][r]))
                   for r in range(2)])
    assert res["l2-to-reference-slope"]["estimate"] == pytest.approx(scaling_exponent(depths, np.array(l2)).estimate,
                                                                     abs=1e-9)
    assert res["l2-to-reference-slope"]["verdict"] == "confirmed"
    # the public script's aggregate does not show the 1/L rate
    assert res["rss-aggregate-slope"]["estimate"] > -0.85 and res["rss-aggregate-slope"]["verdict"] == "confirmed"


@pytest.mark.parametrize("name", ["m24-fig2", "m25-init", "m25-phase", "m24-table1"])
def test_init_reproductions_run_and_report(tmp_path, name):
    rep = reproduce(name, scale="smoke", out=tmp_path)
    assert KEYS <= set(rep) and rep["figure"] == "figure.png"
    assert all(r["verdict"] in ("confirmed", "refuted", "inconclusive", "diverged", "measured")
               for r in rep["results"])
    if name == "m25-init":
        res = {r["id"]: r for r in rep["results"]}
        assert len(res) == 6
        # with [M25]'s weight scale (variance 1/width) every regime shows: explosion at beta = 1/4,
        # stability at 1/2, identity at 1, for the output and the gradient
        assert {r["verdict"] for r in res.values()} == {"confirmed"}
        df = pd.read_parquet(tmp_path / "m25-init-smoke" / "results.parquet")
        sub = df[df["model.beta"] == 0.5]
        depths = sorted(sub["model.depth"].unique())
        V = np.array([sub[sub["model.depth"] == L].sort_values("member")["init_ratio"] for L in depths])
        slopes = [np.polyfit(np.log(depths), np.log(V[:, r]), 1)[0] for r in range(V.shape[1])]
        assert res["output-beta-0.5"]["estimate"] == pytest.approx(np.mean(slopes), abs=1e-9)
    if name == "m24-table1":
        # our table next to the paper's CIFAR-10 numbers; accuracies recomputed from the sweep's table
        assert [(t["activation"], t["init"]) for t in rep["table"]] == [
            ("identity", "tied"), ("identity", "iid"), ("gelu", "tied"), ("gelu", "iid"), ("relu", "tied"),
            ("relu", "iid")]
        df = pd.read_parquet(tmp_path / "m24-table1-smoke" / "results.parquet")
        for t in rep["table"]:
            cell = df[(df["model.activation"] == t["activation"]) & (df["model.init"] == t["init"])]
            assert len(cell) == 5 and t["test_median"] == pytest.approx(100 * np.median(cell["test_accuracy"]))
            # above chance: the (1 - 1e-3) binomial quantile of 450 guesses among ten classes
            from scipy.stats import binom

            assert t["test_median"] / 100 > binom.ppf(1 - 1e-3, 450, 0.1) / 450
        assert {r["id"] for r in rep["results"]} == {f"{t['activation']}-{t['init']}-smooth" for t in rep["table"]}
    if name == "m24-fig2":
        res = {r["id"]: r for r in rep["results"]}
        assert res["loss-decay-rate"]["estimate"] > 0 and res["weights-regime"]["verdict"] == "confirmed"
        df = pd.read_parquet(tmp_path / "m24-fig2-smoke" / "results.parquet")
        assert res["final-loss"]["estimate"] == pytest.approx(np.median(df["final_loss"]), rel=1e-12)
        assert res["final-loss"]["verdict"] == "measured"
        folder = tmp_path / "m24-fig2-smoke"
        with np.load(folder / "cells" / df["cell"].iloc[0] / "trajectory.npz") as z:
            lip = 64 * z["max_increment"][-1]  # L max_k ||Z_k+1 - Z_k|| at the last step, per member
        assert res["lipschitz"]["estimate"] == pytest.approx(np.median(lip), rel=1e-12)
        assert res["lipschitz"]["ci"][0] <= res["lipschitz"]["estimate"] <= res["lipschitz"]["ci"][1]


def test_cli_reproduce_json_and_bad_arguments(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "m24-fig1", "--out", str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "max-increment-slope" in res.output
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["name"] == "m24-fig1" and out["executor"] == "in process"
    for args, needle in ((["nope"], "NAME 'nope'"), (["m24-fig1", "--scale", "huge"], "--scale 'huge'"),
                         (["m24-fig1", "--workers", "0"], "--workers 0")):
        res = CliRunner().invoke(app, ["reproduce", *args, "--out", str(tmp_path)])
        assert res.exit_code == 2 and needle in res.output, res.output
    assert set(REPRODUCTIONS) == {"m24-fig1", "m24-fig2", "m24-table1", "m25-init", "m25-phase", "c21-beta", "c21-fc",
                                 "c21-cifar", "depth-transfer", "ccm26", "s22-linear", "lr-depth-law"}


def test_c21_depths_are_the_distinct_floors_of_powers_of_1_2():
    from odecheck.reproduce import c21_depths

    expected = sorted({int(1.2 ** n) for n in range(60)} & set(range(3, 1001)))
    assert c21_depths() == expected and expected[0] == 3 and expected[-1] == 850 and len(expected) == 31


def test_c21_beta_smoke_recomputes_from_the_cells(tmp_path):
    rep = reproduce("c21-beta", scale="smoke", out=tmp_path)
    assert KEYS <= set(rep) and rep["figure"] == "figure.png"
    res = {r["id"]: r for r in rep["results"]}
    stats = ("beta-max-norm", "beta-update", "increment-slope", "hurst", "update-hurst")
    assert set(res) == {f"{t}-{a}-{s}" for t in ("c21", "digits") for a in ("tanh", "relu") for s in stats}
    folder = tmp_path / "c21-beta-smoke"
    df = pd.read_parquet(folder / "results.parquet")
    assert set(df["status"]) == {"done"} and len(df) == 2 * 2 * 4 * 4
    for task in ("c21", "digits"):
        for act in ("tanh", "relu"):
            sub = df[(df["data.task"] == task) & (df["model.activation"] == act)]
            depths = sorted(sub["model.depth"].unique())
            norms, updates = [], []
            for L in depths:
                w = np.load(folder / "cells" / sub[sub["model.depth"] == L]["cell"].iloc[0] / "weights.npz")
                W, W0 = w["final/W"].astype(np.float64), w["step0/W"].astype(np.float64)
                assert W.shape[:2] == (4, L) and W.shape[2] == (10 if task == "c21" else 64)
                norms.append([max(np.linalg.norm(W[r, k]) for k in range(L)) for r in range(4)])
                updates.append([max(np.linalg.norm(W[r, k] - W0[r, k]) for k in range(L)) for r in range(4)])
            x = np.log(depths)
            for name, v in (("beta-max-norm", norms), ("beta-update", updates)):
                slopes = [np.polyfit(x, np.log(np.array(v)[:, r]), 1)[0] for r in range(4)]
                r = res[f"{task}-{act}-{name}"]
                assert r["estimate"] == pytest.approx(-np.mean(slopes), abs=1e-9)
                assert r["ci"][0] < r["estimate"] < r["ci"][1] and r["verdict"] == "measured"
            inc = res[f"{task}-{act}-increment-slope"]
            D = np.array([sub[sub["model.depth"] == L].sort_values("member")["max_increment"] for L in depths])
            assert inc["estimate"] == pytest.approx(np.mean([np.polyfit(x, np.log(D[:, r]), 1)[0] for r in range(4)]),
                                                    abs=1e-9)
            from odecheck.estimators import hurst

            L = depths[-1]
            w = np.load(folder / "cells" / sub[sub["model.depth"] == L]["cell"].iloc[0] / "weights.npz")
            dW, db = w["final/W"].astype(np.float64) - w["step0/W"], w["final/b"].astype(np.float64) - w["step0/b"]
            uh = [hurst(np.hstack([dW[r].reshape(L, -1), db[r].reshape(L, -1)])).estimate for r in range(4)]
            assert res[f"{task}-{act}-update-hurst"]["estimate"] == pytest.approx(np.median(uh), abs=1e-12)
            # iid N(0, 1) init: the trained weights keep O(1) increments, far from the 1/L of an ODE limit
            assert inc["verdict"] == "confirmed" and res[f"{task}-{act}-hurst"]["verdict"] == "confirmed"


def test_depth_axes_label_every_depth_of_a_short_grid_and_ten_of_a_long_one():
    from odecheck.plot import MAX_DEPTH_TICKS, depth_ticks, pyplot
    from odecheck.reproduce import c21_depths

    plt = pyplot()
    fig, ax = plt.subplots()
    depth_ticks(ax, [2, 4, 8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "8"]
    grid = c21_depths()
    depth_ticks(ax, grid)
    labels = [int(t.get_text()) for t in ax.get_xticklabels()]
    assert len(labels) == MAX_DEPTH_TICKS and labels[0] == grid[0] and labels[-1] == grid[-1]
    assert labels == sorted(set(labels)) and set(labels) <= set(grid)
    plt.close(fig)


@pytest.mark.parametrize("regimes,expected,verdict", [
    (["ode"] * 4, True, "confirmed"), (["sde", "none", "sde", "sde"], True, "refuted"),
    (["ode", "ode", "ode", "none"], True, "inconclusive"), (["ode", "inconclusive"], True, "inconclusive"),
    (["none"] * 4, False, "confirmed"), (["ode"] * 4, False, "refuted"), (["sde", "ode"], False, "inconclusive")])
def test_one_smoothness_rule_for_every_reproduction(regimes, expected, verdict):
    from odecheck.reproduce.base import smoothness_verdict

    assert smoothness_verdict(regimes, expected) == verdict


def test_boundary_crossing_is_the_first_sign_change_interpolated():
    from odecheck.reproduce.m25 import boundary_crossing

    betas = [0.0, 0.1, 0.2, 0.3]
    assert boundary_crossing(betas, [1.0, 0.5, -0.5, -1.0]) == pytest.approx(0.15, abs=1e-15)
    assert boundary_crossing(betas, [2.0, 0.0, -1.0, -2.0]) == 0.1  # a row at exactly 0 is on the boundary
    assert boundary_crossing(betas, [1.0, -1.0, 1.0, -3.0]) == pytest.approx(0.05, abs=1e-15)  # the first one
    assert np.isnan(boundary_crossing(betas, [-0.1, -0.5, -1.0, -2.0]))  # stable everywhere
    assert np.isnan(boundary_crossing(betas, [3.0, 2.0, 1.0, 0.5]))  # explodes everywhere


def test_m24_fig2_script_variant_runs_the_scripts_parametrization(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "m24-fig2", "--variant", "script", "--out", str(tmp_path),
                                   "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    folder = tmp_path / "m24-fig2-script-smoke"
    spec = json.loads((folder / "spec.json").read_text())["base"]
    # the script: 1/N only, tied W_0 ~ N(0, 1), V = 0, n = 50, d = 16, lr 0.32 on the mean over n x d
    assert spec["model"]["width_factors"] is False and spec["model"]["init"] == "tied"
    assert spec["data"]["n"] == 50 and spec["model"]["dim"] == 16
    assert spec["train"]["lr"] * 64 * 16 == pytest.approx(0.32)
    assert rep["variant"] == "script" and "public script" in rep["description"]
    final = {r["id"]: r for r in rep["results"]}["final-loss"]
    assert f"{final['estimate'] / 16:.3g}" in final["note"]  # the script's units are stated beside ours
    for args, needle in ((["m24-fig2", "--variant", "nope"], "--variant 'nope': expected one of script"),
                         (["m24-fig1", "--variant", "script"], "--variant 'script': expected none: m24-fig1 has")):
        res = CliRunner().invoke(app, ["reproduce", *args, "--out", str(tmp_path)])
        assert res.exit_code == 2 and needle in res.output, res.output


def test_the_commands_help_names_every_reproduction():
    import inspect

    from odecheck.cli import reproduce_cmd

    text = inspect.signature(reproduce_cmd).parameters["name"].default.help
    assert set(text.split(" (")[0].split(" | ")) == set(REPRODUCTIONS), text


def test_depth_transfer_smoke_runs_on_sweep_and_refits_from_the_table(tmp_path):
    # each cell of the sweep is one (parametrization, depth, learning rate) with the seeds as its ensemble; the
    # report's drift per parametrization is the transfer estimator on the table's final losses, and a cell's
    # final loss is a direct run of the parametrization's optimizer
    import torch
    from odecheck.estimators.transfer import transfer_slope
    from odecheck.parametrizations import parametrization
    from odecheck.training import train

    import odecheck as oc

    torch.set_num_threads(1)
    rep = reproduce("depth-transfer", scale="smoke", out=tmp_path)
    folder = tmp_path / "depth-transfer-smoke"
    df = pd.read_parquet(folder / "results.parquet")
    assert {r["id"] for r in rep["results"]} == {"standard-drift", "depth-mup-drift", "completep-drift"}
    sub = df[df["train.parametrization"] == "completep"]
    depths, lrs = sorted(sub["model.depth"].unique()), sorted(sub["train.lr"].unique())
    V = np.array([[sub[(sub["model.depth"] == L) & (sub["train.lr"] == lr)].sort_values("member")["final_loss"]
                   .to_numpy(dtype=float) for lr in lrs] for L in depths])
    fit = transfer_slope(depths, np.log2(lrs), V)
    got = next(r for r in rep["results"] if r["id"] == "completep-drift")
    assert [got["estimate"], *got["ci"]] == pytest.approx([fit.slope, *fit.ci])
    # one cell by hand: CompleteP at depth 16, lr 2^-2 (base depth 4: hidden eps / 4)
    data = oc.teacher_task(16, 4, seed=0)
    net = oc.ResNet(block="mlp", depth=16, dim=4, width=8, activation="gelu", init="iid", ensemble=4, seed=0, beta=1.0)
    opt = parametrization("completep").optimizer("adam", lr=0.25, depth=16, base_depth=4, batch_size=16,
                                                 total_steps=20)
    ref = train(net, data, opt, steps=20).loss[-1]
    cell = sub[(sub["model.depth"] == 16) & (sub["train.lr"] == 0.25)].sort_values("member")["final_loss"]
    np.testing.assert_allclose(cell.to_numpy(dtype=float), ref, rtol=1e-6)
    assert (folder / "figure.png").exists() or rep["figure"] is None


def test_a_parametrization_needs_its_beta_and_a_minibatch_method():
    from odecheck.config import RunConfig

    import odecheck as oc

    with pytest.raises(oc.InvalidArgument, match="model.beta"):
        RunConfig.from_dict({"model": {"beta": 0.5}, "train": {"method": "adam", "parametrization": "completep"}})
    with pytest.raises(oc.InvalidArgument, match="train.method"):
        RunConfig.from_dict({"model": {"beta": 1.0}, "train": {"parametrization": "completep"}})
    with pytest.raises(oc.InvalidArgument, match="train.parametrization"):
        RunConfig.from_dict({"model": {"beta": 1.0}, "train": {"method": "adam", "parametrization": "mup"}})


def test_every_sweep_reproduction_and_variant_has_valid_specs_at_both_scales():
    # a spec that does not validate would fail only when someone runs that scale: check them all here
    from odecheck.sweeps import SweepSpec

    for name, rep in REPRODUCTIONS.items():
        specs = [rep.spec] + [fn for fn, _ in rep.variants.values()]
        for make in specs:
            for scale in ("smoke", "paper"):
                spec = make(scale)
                if rep.run is None:
                    assert SweepSpec.from_dict(spec).cells(), (name, scale)
                else:
                    assert isinstance(spec, dict) and spec, (name, scale)
