"""[S22]'s linear-weights reproduction: the script's update written out (its product, its loss, its lr) against
odecheck's flow at lr 100 / (d N), its target draw, and a small study that resumes by key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odecheck.experiments.reproduce import s22
from odecheck.experiments.reproduce.s22 import FLOW_LR, SCRIPT, run_s22, script_target, train_linear

pytest.importorskip("pandas")


def test_flow_at_lr_100_over_dN_is_the_scripts_sgd_step():
    # the script: X = prod_i (I + A_i / N) (layer 1 applied first), loss mean((X - B)^2), A -= 100 dloss/dA
    N, d, steps = 10, 2, 5
    B = script_target(d, 6)
    A = torch.zeros(N, d, d, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        X = torch.eye(d, dtype=torch.float64)
        for i in range(N):
            X = (torch.eye(d, dtype=torch.float64) + A[i] / N) @ X
        loss = ((X - B) ** 2).mean()
        (g,) = torch.autograd.grad(loss, A)
        with torch.no_grad():
            A -= 100.0 * g
    s = {**SCRIPT, "max_steps": steps, "check_every": steps, "tol": 0.0}
    _, loss_ours, _, V, _ = train_linear(N, B[None], 100.0 / (d * N), s)
    np.testing.assert_allclose(V[0], A.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_the_scripts_target_is_torchs_seed_6_draw_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    B = script_target(2, 6)
    assert torch.equal(torch.rand(1), before)
    torch.manual_seed(6)
    ref = torch.eye(2) + torch.randn(2, 2)
    torch.testing.assert_close(B, ref.double())
    assert torch.linalg.det(B) > 0


def test_the_script_stops_by_its_own_rule():
    s = SCRIPT  # N = 100, seed 6: the script's own run
    lr = s["lr"] / (s["dim"] * s["depth"])
    steps, loss, inc, V, _ = train_linear(100, script_target(2, 6)[None], lr, s)
    assert loss[0] < s["tol"] and steps % s["check_every"] == 0 and steps < s["max_steps"]
    assert steps == 100  # seed 6 meets the rule at its first check
    # a tighter tolerance keeps it going, chunk by chunk, until the rule or max_steps
    steps2, loss2, *_ = train_linear(100, script_target(2, 6)[None], lr, {**s, "tol": 1e-30, "max_steps": 300})
    assert steps2 == 300 and loss2[0] < loss[0]


def _small():
    return {**SCRIPT, "depth": 16, "max_steps": 400, "runs": 2, "depths": [8, 16, 32], "members": 3, "steps": 40,
            "target_scale": 0.3}


def test_a_small_study_resumes_by_key_and_decides(tmp_path, monkeypatch):
    calls = []
    real = s22.train_linear

    def counting(*a, **kw):
        calls.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(s22, "train_linear", counting)
    spec = _small()
    df = run_s22(spec, tmp_path)
    assert len(calls) == 2 + 2 * 3 and len(df) == 2 + 2 * 3 * 3
    # interrupted: one record lost; the rerun recomputes that one only
    (tmp_path / "runs" / "flow-00032.json").unlink()
    calls.clear()
    df2 = run_s22(spec, tmp_path)
    assert calls == [32]
    assert df2.sort_values(["setting", "depth", "member"]).reset_index(drop=True).equals(
        df.sort_values(["setting", "depth", "member"]).reset_index(drop=True))
    results, data = s22._analyse(df2, tmp_path, spec)
    by = {r.id: r for r in results}
    assert by["flow-max-increment"].verdict == "confirmed"  # odecheck's flow: O(1/N), the theorem
    assert data["snapshots"]["V"].shape == (4, 16, 2, 2)
    with pytest.raises(Exception) as e:  # a folder of other settings is refused
        run_s22({**spec, "steps": 41}, tmp_path)
    assert "out" in str(e.value)


def test_odecheck_flow_lr_is_the_scripts_at_n_100():
    assert FLOW_LR == pytest.approx(SCRIPT["lr"] / (SCRIPT["dim"] * SCRIPT["depth"]))
