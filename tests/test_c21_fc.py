"""reproduce c21-fc: [C21]'s code's settings (../shared/SOURCES.md written out here), its statistics and
OLS exponents against direct computations, and the smoke run's report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from odecheck.reproduce import reproduce
from odecheck.reproduce.c21_fc import C21_FC, _c21_fc_spec, code_verdict, ols_beta, statistics
from odecheck.sweeps import SweepSpec


def test_the_spec_is_the_codes_settings():
    spec = _c21_fc_spec("paper")
    m, t = spec["model"], spec["train"]
    assert m["block"] == "single" and m["io_init"] == "identity" and m["train_io"] is False
    assert t["method"] == "adam" and t["lr"] == 1e-2 and t["batch_size"] == 32 and t["loss"] == "mse"
    assert t["patience"] == 5 and t["min_improvement"] == 0.01
    tasks, modes = spec["sweep"]["zip"]
    # MSE < 1e-3 as the mean over outputs: d x 1e-3 on odecheck's sum over outputs
    assert tasks["data.task"] == ["c21-code", "digits-conv25"] and tasks["model.dim"] == [10, 25]
    assert tasks["train.stop_loss"] == pytest.approx([10e-3, 25e-3])
    assert tasks["data.n"] == [1024, 1347] and tasks["train.steps"] == [10 * 32, 10 * 43]  # 10 epochs of 32-row batches
    # delta none = 1 (beta 0, fixed); shared: |delta| from 1/L; multi: N(0, 1/L^2), signed
    assert dict(zip(modes["model.delta"], modes["model.beta"], strict=True)) == {
        "fixed": 0.0, "shared_abs": 1.0, "per_layer_gaussian": 1.0}
    assert spec["sweep"]["model.init"] == ["xavier(0.01)", "xavier_depth(0.01)"]
    depths = spec["sweep"]["model.depth"]
    # floor(1.2^n) from 3 to 9100: the 44 depths the plotting code's 9100 = floor(1.2^50) implies
    assert depths == sorted({int(np.floor(1.2**n)) for n in range(51)} - {0, 1, 2}) and len(depths) == 44
    SweepSpec.from_dict(spec)  # a valid sweep


def test_statistics_and_ols_against_direct_computation():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 3, 3))
    st = statistics(W)
    norms = [np.linalg.norm(W[k]) for k in range(7)]
    incs = [np.linalg.norm(W[k + 1] - W[k]) for k in range(6)]
    assert st["maximum"] == pytest.approx(max(norms)) and st["root-ssq"] == pytest.approx(np.sqrt(sum(n * n for n in norms)))
    assert st["increment"] == pytest.approx(max(incs))
    assert st["sqrt-sobolev"] == pytest.approx(np.sqrt(7 * sum(i * i for i in incs)))
    L = np.array([3, 5, 8, 13])
    y = 2.0 * L ** -0.3
    x = np.log(L)
    s = ((x - x.mean()) * (np.log(y) - np.log(y).mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert ols_beta(L, y) == pytest.approx(-s) == pytest.approx(0.3)


@pytest.mark.parametrize("code,ci,verdict", [(0.2, (0.15, 0.3), "confirmed"), (0.2, (0.25, 0.3), "refuted"),
                                             (0.2, (-0.5, 0.5), "inconclusive"), (0.0, (float("nan"),) * 2, "inconclusive"),
                                             (0.5, (0.31, 0.5), "confirmed"), (0.5, (0.3, 0.51), "inconclusive")])
def test_the_codes_exponent_against_our_interval(code, ci, verdict):
    assert code_verdict(code, ci) == verdict


def test_smoke_run_reports_every_statistic_with_the_codes_ols(tmp_path):
    rep = reproduce("c21-fc", scale="smoke", out=tmp_path)
    p = C21_FC["smoke"]
    res = {r["id"]: r for r in rep["results"]}
    n_groups = 2 * 3 * len(p["inits"]) * 2  # tasks x modes x inits x activations
    assert len([k for k in res if k.endswith("-increment")]) == n_groups
    assert len([k for k in res if k.endswith("-delta")]) == n_groups * 2 // 3  # shared and multi train delta
    r = res["synthetic-shared-xavier-depth-tanh-increment"]
    assert r["paper"].startswith("0.2 (plotting code") and "[C21]'s OLS on one run per depth" in r["note"]
    # recompute beta from the cells' weights
    import pandas as pd

    df = pd.read_parquet(tmp_path / "c21-fc-smoke" / "results.parquet")
    sub = df[(df["data.task"] == "c21-code") & (df["model.delta"] == "shared_abs") & (df["model.activation"] == "tanh")]
    vals, depths = [], sorted(sub["model.depth"].unique())
    for L in depths:
        cell = sub[sub["model.depth"] == L]["cell"].iloc[0]
        with np.load(tmp_path / "c21-fc-smoke" / "cells" / cell / "weights.npz") as z:
            W = z["final/W"].astype(np.float64)
        vals.append([max(np.linalg.norm(W[m, k + 1] - W[m, k]) for k in range(L - 1)) for m in range(W.shape[0])])
        rec = json.loads((tmp_path / "c21-fc-smoke" / "cells" / cell / "stopping.json").read_text())
        assert rec["epoch_steps"] == 3 and all(e <= p["epochs"] for e in rec["epochs"])
    c21 = -np.polyfit(np.log(depths), np.log(np.array(vals)[:, 0]), 1)[0]
    assert f"{c21:.3f}" in r["note"]
    slopes = [np.polyfit(np.log(depths), np.log(np.array(vals)[:, m]), 1)[0] for m in range(len(vals[0]))]
    assert r["estimate"] == pytest.approx(-np.mean(slopes), rel=1e-9)
    assert np.isfinite(df["test_loss"]).all()  # the test split is scored
