"""[CCM26]'s fixed-depth reproduction: the nested coupling, one GD step against the paper's update written
out (its loss, its gradient scaling), the error-curve fit at planted exponents, and the smoke run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from odecheck.reproduce.ccm26 import SETTINGS, _draw, fit_error_curve, nested_network, output_decay
from odecheck.training import train

import odecheck as oc

pytest.importorskip("pandas")


def _settings(**kw):
    return {**SETTINGS, "depth": 4, "Ms": [2, 3, 6], "Ds": [3, 5, 7], "reps": 2, **kw}


def test_every_size_is_cut_from_the_largest_draw():
    s = _settings()
    U, V, WE, WU = _draw(s, 0)
    net = nested_network((U, V, WE, WU), 3, 5)
    w = net.weights
    torch.testing.assert_close(w["V"][0], np.sqrt(5) * V[:, :5, :3].double())
    torch.testing.assert_close(w["W"][0], np.sqrt(5) * U[:, :5, :3].double().transpose(1, 2))
    torch.testing.assert_close(w["A"][0], WE[:5].double())
    torch.testing.assert_close(w["B"][0], WU[:5].T.double() / 5)
    assert not torch.equal(_draw(s, 1)[0], U)  # each repetition its own draw


def test_one_step_is_the_papers_update():
    # forward h <- h + (1/(L M)) V tanh(U^T h / D), output (1/D) W_U^T h_L; loss sum (F - Y)^2 / (n d_out);
    # update U -= eta (L M D / 2) dloss/dU (the paper's gradient times D, without the square's 2), same for V
    s = _settings()
    L, M, D, eta = s["depth"], 6, 7, 1.0
    draw = _draw(s, 0)
    data = oc.gaussian_task(10, 5, 5, seed=s["seed"], dtype=torch.float64)
    U = (np.sqrt(D) * draw[0][:, :D, :M].double()).requires_grad_(True)
    V = (np.sqrt(D) * draw[1][:, :D, :M].double()).requires_grad_(True)
    WE, WU = draw[2][:D].double(), draw[3][:D].double()
    h = data.x @ WE.T  # (n, D)
    for k in range(L):
        h = h + (1.0 / (L * M)) * torch.tanh(h @ U[k] / D) @ V[k].T
    out = h @ WU / D
    loss = ((out - data.y) ** 2).sum() / (10 * 5)
    gU, gV = torch.autograd.grad(loss, (U, V))
    U1, V1 = U.detach() - eta * L * M * D / 2 * gU, V.detach() - eta * L * M * D / 2 * gV
    net = nested_network(draw, M, D)
    train(net, data, oc.GradientFlow(lr=eta * M * D / (2 * 5)), steps=1)
    torch.testing.assert_close(net.weights["V"][0], V1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net.weights["W"][0], U1.transpose(1, 2), rtol=1e-10, atol=1e-12)


def test_the_fit_recovers_planted_exponents():
    M, D = np.meshgrid([2.0, 4, 8, 16, 32, 64, 128], [2.0, 4, 8, 16, 32, 64, 128])
    M, D = M.ravel(), D.ravel()
    err = np.sqrt(0.8**2 * D ** (2 * 0.5) * M ** (-2 * 0.5) / 50 + 2.5**2 * D ** (-2 * 0.5))
    a, b, p, q, r = fit_error_curve(M, D, err, 50)
    np.testing.assert_allclose([a, b, p, q, r], [0.8, 2.5, 0.5, 0.5, 0.5], rtol=1e-4, atol=1e-4)
    assert output_decay(M, D, 3.0 * D**-0.4) == pytest.approx(0.4)


def test_smoke_runs_resumes_and_reports(tmp_path):
    from odecheck.reproduce import reproduce

    torch.set_num_threads(1)
    rep = reproduce("ccm26", scale="smoke", out=tmp_path)
    assert {r["id"] for r in rep["results"]} == {"h-error-p", "h-error-q", "h-error-r", "output-error-decay-in-D"}
    runs = sorted((tmp_path / "ccm26-smoke" / "runs").glob("r*-M*.json"))
    assert len(runs) == 3 * 25
    again = reproduce("ccm26", scale="smoke", out=tmp_path)
    assert [r["estimate"] for r in again["results"]] == [r["estimate"] for r in rep["results"]]
    from odecheck.reproduce.ccm26 import run_ccm26

    with pytest.raises(oc.InvalidArgument, match="out"):  # a folder of other settings is refused by name
        run_ccm26({**SETTINGS, "depth": 8, "Ms": [2, 4], "Ds": [2, 4], "reps": 2}, tmp_path / "ccm26-smoke")


def test_an_interrupted_study_resumes_by_key_and_recomputes_only_what_is_missing(tmp_path, monkeypatch):
    # interrupted after 5 of 2 x 9 runs; one finished record is then marked (err_y = 12345): the resumed
    # study must reuse it by its key (the marked value in the table), train only the 13 missing runs and
    # repetition 1's reference (the largest network; repetition 0's was saved before the interruption),
    # and give every other run the numbers of an uninterrupted study
    import json

    from odecheck.reproduce import ccm26

    torch.set_num_threads(1)
    settings = _settings()
    whole = ccm26.run_ccm26(settings, tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_five(e):
        if e.done >= 5:
            raise Stop

    with pytest.raises(Stop):
        ccm26.run_ccm26(settings, tmp_path / "cut", progress=stop_after_five)
    runs = sorted((tmp_path / "cut" / "runs").glob("r*-M*.json"))
    assert len(runs) == 5
    runs[2].write_text(json.dumps({"err_y": 12345.0, "err_h": 0.5}))
    trained = []
    real = ccm26.train_nested
    monkeypatch.setattr(ccm26, "train_nested", lambda draw, M, D, *a: trained.append((M, D)) or real(draw, M, D, *a))
    resumed = ccm26.run_ccm26(settings, tmp_path / "cut")
    assert sorted(trained) == sorted([(M, D) for M in (2, 3, 6) for D in (3, 5, 7)][5:]
                                     + [(M, D) for M in (2, 3, 6) for D in (3, 5, 7)] + [(6, 7)])
    marked = resumed["err_y"] == 12345.0
    assert marked.sum() == 1
    np.testing.assert_array_equal(resumed.loc[~marked, "err_y"].to_numpy(), whole.loc[~marked, "err_y"].to_numpy())
    np.testing.assert_array_equal(resumed.loc[~marked, "err_h"].to_numpy(), whole.loc[~marked, "err_h"].to_numpy())
