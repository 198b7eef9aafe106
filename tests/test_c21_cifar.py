"""reproduce c21-cifar: [C21]'s convolutional block against a naive per-pixel loop and finite differences,
the FFT singular values against the dense circular operator, the stage split against the source's two
stated splits, and the smoke run's report and resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from odecheck._errors import InvalidArgument
from odecheck.estimators.spectral import conv_operator_norm
from odecheck.reproduce import reproduce
from odecheck.reproduce.c21_cifar import (
    C21_CIFAR,
    PAPER,
    TRAIN,
    C21Block,
    C21ConvNet,
    augment,
    kernel_statistics,
    layer_sides,
    stage_sizes,
)


def test_stage_split_gives_the_sources_two_splits():
    assert stage_sizes(8) == (2, 2, 2, 2) and stage_sizes(121) == (4, 31, 82, 4)
    for L in range(8, 300):
        s = stage_sizes(L)
        assert sum(s) == L and min(s) >= 2 and s[0] == s[3]
    with pytest.raises(InvalidArgument, match="depth"):
        stage_sizes(7)


def test_settings_are_the_codes():
    assert TRAIN == {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "crop_padding": 4,
                     "flip": True, "side": 32}
    p = C21_CIFAR["paper"]
    # [C21]'s 16 depths with 18 left out, as its analysis does; widths 64/128/256/512; 200 epochs
    assert p["depths"] == [8, 11, 12, 14, 16, 20, 24, 28, 33, 42, 50, 65, 80, 100, 121]
    assert p["widths"] == [64, 128, 256, 512] and p["epochs"] == 200
    assert PAPER[("A", "maximum")] == 0.0 and PAPER[("C", "maximum")] == 0.1


def _naive_conv(x, K, stride, pad):
    """out[o, i, j] = sum_{c, a, b} K[o, c, a, b] xpad[c, i s + a, j s + b], one pixel at a time."""
    c_out, c_in, k, _ = K.shape
    n, _, S, _ = x.shape
    xp = np.zeros((n, c_in, S + 2 * pad, S + 2 * pad))
    xp[:, :, pad:pad + S, pad:pad + S] = x
    So = (S + 2 * pad - k) // stride + 1
    out = np.zeros((n, c_out, So, So))
    for t in range(n):
        for o in range(c_out):
            for i in range(So):
                for j in range(So):
                    out[t, o, i, j] = (K[o] * xp[t, :, i * stride:i * stride + k, j * stride:j * stride + k]).sum()
    return out


@pytest.mark.parametrize("c_in,c_out,stride", [(3, 3, 1), (2, 4, 2), (3, 5, 1)])
def test_block_against_a_naive_per_pixel_loop(c_in, c_out, stride):
    torch.manual_seed(0)
    blk = C21Block(c_in, c_out, stride).double()
    x = torch.randn(2, c_in, 6, 6, dtype=torch.float64)
    relu = lambda a: np.maximum(a, 0.0)
    A, C = blk.conv1.weight.detach().numpy(), blk.conv2.weight.detach().numpy()
    xn = x.numpy()
    short = xn if (stride == 1 and c_in == c_out) else _naive_conv(xn, blk.shortcut.weight.detach().numpy(), stride, 0)
    ref = relu(_naive_conv(relu(_naive_conv(xn, A, stride, 1)), C, 1, 1) + short)
    np.testing.assert_allclose(blk(x).detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_block_gradients_against_finite_differences():
    torch.manual_seed(1)
    blk = C21Block(2, 3, 2).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    params = [p for p in blk.parameters()]
    fn = lambda x, *ps: torch.func.functional_call(blk, dict(zip([n for n, _ in blk.named_parameters()], ps,
                                                                 strict=True)), (x,))
    assert torch.autograd.gradcheck(fn, (x, *[p.detach().requires_grad_() for p in params]))




def test_statistics_pair_kernels_of_one_stage_and_shape_only():
    torch.manual_seed(2)
    net = C21ConvNet(10, (3, 4, 5, 6), channels=1)
    assert net.sizes == (2, 2, 4, 2)
    assert layer_sides(net, 32) == [32, 32, 32, 16, 16, 8, 8, 8, 8, 4]
    rec = kernel_statistics(net, 32)
    paired = [k for k, v in enumerate(rec["dA"]) if v is not None]
    # block 1 (stage 1), blocks 6-8 (stage 3 after its stride-2 first block), block 9 (stage 4's second)
    # stages: blocks 0-1, 2-3, 4-7, 8-9; a stage's first conv1 (stride 2, c_in of the stage before) pairs with
    # nothing, so conv1 pairs are block 1 and blocks 6, 7 (the second of stages 2 and 4 follows a stride-2 block)
    assert paired == [1, 6, 7] and [k for k, v in enumerate(rec["dC"]) if v is not None] == [1, 3, 5, 6, 7, 9]
    b = net.blocks
    assert rec["A"][4] == pytest.approx(conv_operator_norm(b[4].conv1.weight, 16))
    assert rec["C"][4] == pytest.approx(conv_operator_norm(b[4].conv2.weight, 8))
    assert rec["dA"][7] == pytest.approx(conv_operator_norm(b[7].conv1.weight - b[6].conv1.weight, 8))


def test_augment_is_a_crop_of_the_padded_image_or_its_mirror():
    x = torch.randn(40, 1, 8, 8)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), 0, False), x)
    y = augment(x, torch.Generator().manual_seed(1), 2, True)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flipped = 0
    for t in range(len(x)):
        crops = [padded[t, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        plain = any(torch.equal(y[t], c) for c in crops)
        mirror = any(torch.equal(y[t], c.flip(-1)) for c in crops)
        assert plain or mirror
        flipped += mirror and not plain
    assert 0 < flipped < len(x)  # both happen among 40 images (probability 1 - 2^-39)


def test_smoke_run_reports_every_statistic_and_resumes(tmp_path):
    calls = []
    rep = reproduce("c21-cifar", scale="smoke", out=tmp_path, progress=lambda e: calls.append((e.item, e.done, e.total)))
    ids = [r["id"] for r in rep["results"]]
    assert ids == ["A-maximum", "A-root-ssq", "A-increment", "C-maximum", "C-root-ssq", "C-increment", "neither-limit"]
    s = C21_CIFAR["smoke"]
    n = len(s["depths"]) * s["seeds"]
    assert len(calls) == n and calls[-1][1:] == (n, n)
    for r in rep["results"][:-1]:
        assert r["paper"].startswith(str(PAPER[tuple(r["id"].split("-", 1))]))
        assert r["ci"][0] <= r["estimate"] <= r["ci"][1] and "[C21]'s OLS on seed 0" in r["note"]
    folder = tmp_path / "c21-cifar-smoke"
    runs = sorted((folder / "runs").glob("*.json"))
    assert len(runs) == n and (folder / "report.md").exists()
    stamps = [p.stat().st_mtime_ns for p in runs]
    again = reproduce("c21-cifar", scale="smoke", out=tmp_path)
    assert [p.stat().st_mtime_ns for p in runs] == stamps  # nothing retrained
    assert again["results"] == rep["results"]
    rec = json.loads(runs[-1].read_text())
    assert rec["stages"] == list(stage_sizes(s["depths"][-1])) and len(rec["kernels"]["A"]) == s["depths"][-1]


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    from odecheck.reproduce.c21_cifar import run_c21_cifar

    folder = tmp_path / "c"
    (folder).mkdir()
    (folder / "settings.json").write_text(json.dumps({"hash": "000000000000"}))
    with pytest.raises(InvalidArgument, match="out"):
        run_c21_cifar(dict(C21_CIFAR["smoke"]), folder)


def test_dask_executors_are_refused_by_name(tmp_path):
    with pytest.raises(InvalidArgument, match="workers"):
        reproduce("c21-cifar", scale="smoke", out=tmp_path, workers=2)


def test_the_command_names_the_flag_it_refuses(tmp_path):
    from typer.testing import CliRunner

    from odecheck.cli import app

    res = CliRunner().invoke(app, ["reproduce", "c21-cifar", "--workers", "2", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--workers" in res.output and "in process" in res.output, res.output


@pytest.mark.parametrize("accuracy,decided", [(0.9, True), (0.11, False)])
def test_networks_left_at_chance_are_not_decided(tmp_path, accuracy, decided):
    import pandas as pd
    from odecheck.reproduce.c21_cifar import _analyse

    rng = np.random.default_rng(0)
    rows = []
    for L in (8, 12, 16):
        for s in range(4):
            sig = (1.0 + 0.01 * rng.standard_normal(L)).tolist()  # flat in L: beta 0
            rec = {"status": "done", "test_accuracy": accuracy,
                   "kernels": {"A": sig, "C": sig, "dA": [None] + sig[1:], "dC": [None] + sig[1:]},
                   "regime": {f: {"regime": "none", "hurst": 0.0, "layers": 5, "stage": 3, "reason": ""} for f in "AC"}}
            name = f"L{L:04d}-s{s}.json"
            (tmp_path / "runs").mkdir(exist_ok=True)
            (tmp_path / "runs" / name).write_text(json.dumps(rec))
            rows.append({"model.depth": L, "member": s, "file": name})
    results, _ = _analyse(pd.DataFrame(rows), tmp_path, {})
    verdicts = {r.id: r.verdict for r in results}
    if decided:
        assert verdicts["A-maximum"] == "confirmed" and verdicts["neither-limit"] == "confirmed"
    else:
        assert set(verdicts.values()) == {"inconclusive"}
        assert all(r.note.startswith("not decided: the networks stayed near chance") for r in results)
