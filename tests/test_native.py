"""The fused CPU kernels (``_native``) against the batched torch path in float64."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess

import pytest
import torch
from helpers import F32_UNIT_ROUNDOFF, rounding_bound
from odecheck._errors import InvalidArgument, OdecheckError
from odecheck.blocks import mlp as mlp_block
from odecheck.models import ACTIVATIONS, ResNet, activate, activate_backward

from odecheck import _kernels as K
from odecheck import _native

needs_native = pytest.mark.skipif(os.environ.get("ODECHECK_NATIVE") == "0" or _native.library() is None,
                                  reason="fused CPU kernels disabled or not buildable here")
# every kernel build this CPU can run: the reference tests hold for each instruction set, not only
# for the one the machine happens to have
VARIANTS = _native.runnable_variants()


@pytest.fixture(autouse=True)
def _fused_wherever_they_apply():
    """These tests are about the kernels: run them wherever they apply, whatever the engine's timing
    of the two paths would choose on this machine."""
    with _native.forcing():
        yield


@needs_native
@pytest.mark.parametrize("isa", VARIANTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_and_derivative_as_accurate_as_atens_float32(act, isa, monkeypatch):
    monkeypatch.setenv("ODECHECK_ISA", isa)
    # one layer with W = 4 I and s = 1/4 puts u on the grid exactly; V = 0
    u = torch.linspace(-30.0, 30.0, 16 * 2001, dtype=torch.float64).float()
    n = u.numel() // 16
    W = 4.0 * torch.eye(16).reshape(1, 1, 16, 16)
    V = torch.zeros(1, 1, 16, 16)
    h = torch.zeros(2, 1, n, 16)
    h[0, 0] = u.reshape(n, 16)
    a, d = torch.empty(1, 1, n, 16), torch.empty(1, 1, n, 16)
    _native.mlp_forward(act, V, W, h, a, d, 0.25, 1.0)
    u64, u32 = u.double().reshape(n, 16), u.reshape(n, 16)
    ref = activate(act, u64)
    dref = activate_backward(act, torch.ones_like(u64), u64, ref)
    a32 = activate(act, u32)  # ATen's float32 activation and derivative: the accuracy to match
    d32 = activate_backward(act, torch.ones_like(u32), u32, a32)
    err = lambda got, want: ((got.double() - want).abs() / want.abs().clamp(min=1.0)).max().item()
    assert err(a[0, 0], ref) <= err(a32, ref) + 2 * F32_UNIT_ROUNDOFF
    assert err(d[0, 0], dref) <= err(d32, dref) + 2 * F32_UNIT_ROUNDOFF
    assert torch.equal(h[1], h[0])  # V = 0 leaves the state unchanged


def _grads(net, x, y, **kw):
    loss, grads = K.loss_and_grads(net, x, y, **kw)
    return loss, {k: v.clone() for k, v in grads.items()}


@needs_native
@pytest.mark.parametrize("q,m,isa", [(16, 32, "native"), (32, 16, "native"), (16, 64, "native"), (16, 16, "native"),
                                     *[(q, m, v) for v in VARIANTS if v != "native" for q, m in ((16, 32), (32, 64))]])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fused_step_matches_float64_reference(q, m, act, isa, monkeypatch):
    monkeypatch.setenv("ODECHECK_ISA", isa)
    # n = 11 is not a multiple of the 4-row blocks; R = 3 splits unevenly over the threads
    net = ResNet(block="mlp", depth=6, dim=q, width=m, activation=act, init="iid", ensemble=3, seed=1,
                 dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(11, q, generator=g, dtype=torch.float64)
    y = torch.randn(11, q, generator=g, dtype=torch.float64)
    with _native.disabled():
        out64, cache64 = K.forward(net, x)
        loss64, g64 = _grads(net, x, y)
    net32 = net.to(dtype=torch.float32)
    out32, cache32 = K.forward(net32, x.float())
    assert _native.kind(net32._p["V"], net32._p["W"], act) == "vector"  # the vector kernel ran
    loss32, g32 = _grads(net32, x.float(), y.float())
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()
    tol = rounding_bound(6, q, m, 11)  # n = 11 samples
    assert rel(out32, out64) < tol
    assert rel(cache32.h, cache64.h) < tol
    assert rel(loss32, loss64) < tol
    assert set(g32) == set(g64)
    for k in g64:
        assert rel(g32[k], g64[k]) < tol, k
    out_nokeep, _ = K.forward(net32, x.float(), keep=False)
    assert torch.equal(out_nokeep, out32)  # same arithmetic with or without storing the layers


@needs_native
def test_fused_recompute_is_bitwise_the_plain_fused_step():
    net = ResNet(block="mlp", depth=37, dim=16, width=32, activation="gelu", init="iid", ensemble=4, seed=2)
    x, y = torch.randn(20, 16), torch.randn(20, 16)
    loss, grads = _grads(net, x, y)
    for segment in (1, 5, 37, 100):
        loss_s, grads_s = _grads(net, x, y, segment=segment)
        assert torch.equal(loss_s, loss)
        for k in grads:
            assert torch.equal(grads_s[k], grads[k]), (segment, k)


@needs_native
def test_fused_members_are_independent_of_thread_split():
    net = ResNet(block="mlp", depth=9, dim=16, width=32, activation="tanh", init="iid", ensemble=5, seed=3)
    x, y = torch.randn(13, 16), torch.randn(13, 16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = _grads(net, x, y)
        torch.set_num_threads(3)
        _, three = _grads(net, x, y)
    finally:
        torch.set_num_threads(threads)
    for k in one:
        assert torch.equal(one[k], three[k]), k
    alone = net.select([3])
    _, g3 = _grads(alone, x, y)
    assert torch.equal(g3["V"][:, 0], one["V"][:, 3])


@needs_native
def test_kernel_kinds():
    def kind(q, m, dtype=torch.float32, act="gelu", R=3, n=10):
        V = torch.zeros(2, R, q, m, dtype=dtype)
        return _native.kind(V, V.transpose(2, 3).contiguous(), act, n)

    assert kind(16, 32) == kind(32, 16) == kind(16, 64) == kind(16, 32, n=10**6) == "vector"
    assert kind(5, 7) == kind(5, 7, torch.float64) == kind(1, 1) == kind(8, 8, torch.float64) == "generic"
    assert kind(2, 4, n=64, R=8) == "generic"  # R n m = 2048: the largest generic layer
    assert kind(2, 4, n=100, R=8) is None and kind(16, 32, torch.float64, n=100) is None  # larger: batched
    assert kind(5, 7, n=None) is None  # the generic kernels need the sample count
    assert kind(4, 4, torch.float16) is None and kind(4, 4, act="swish") is None
    V = torch.zeros(2, 3, 4, 5)
    assert _native.kind(V.transpose(0, 1), V.transpose(0, 1).transpose(2, 3), "gelu", 4) is None  # not contiguous


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("q,m,R,n", [(1, 1, 1, 1), (4, 3, 3, 7), (5, 7, 2, 13), (2, 16, 4, 3)])
def test_generic_kernel_matches_the_batched_path(dtype, act, q, m, R, n):
    net = ResNet(block="mlp", depth=7, dim=q, width=m, activation=act, init="iid", ensemble=R, seed=5, dtype=dtype,
                 io_init="gaussian", input_dim=q, output_dim=q)
    assert _native.kind(net._p["V"], net._p["W"], act, n) == "generic"
    g = torch.Generator().manual_seed(6)
    x = 2.0 * torch.randn(n, q, generator=g, dtype=dtype)
    y = torch.randn(n, q, generator=g, dtype=dtype)
    out, cache = K.forward(net, x)
    assert cache.d is not None
    loss, grads = _grads(net, x, y)
    with _native.disabled():
        out_b = K.forward(net, x)[0]
        loss_b, grads_b = _grads(net, x, y)
    # two implementations of the same pass: twice the rounding bound of one
    tol = 2 * rounding_bound(7, q, m, n, unit_roundoff=torch.finfo(dtype).eps / 2)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max().clamp(min=1e-300)).item()
    assert rel(out, out_b) < tol and rel(loss, loss_b) < tol
    for k in grads_b:
        assert rel(grads[k], grads_b[k]) < tol, k
    assert torch.equal(K.forward(net, x, keep=False)[0], out)
    _, grads_r = _grads(net, x, y, segment=3)
    for k in grads:
        assert torch.equal(grads_r[k], grads[k]), k


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("ODECHECK_NATIVE", "0")
    assert _native.library() is None
    net = ResNet(block="mlp", depth=3, dim=16, width=32, activation="gelu", init="iid", ensemble=2, seed=0)
    assert K.forward(net, torch.randn(7, 16))[1].d is None


def test_failed_build_warns_and_falls_back(monkeypatch, tmp_path):
    fake = tmp_path / "broken-c++"
    fake.write_text("#!/bin/sh\necho 'broken compiler' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("ODECHECK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ODECHECK_NATIVE", "auto")
    with pytest.warns(RuntimeWarning, match="broken compiler"):
        assert _native.library() is None
    net = ResNet(block="mlp", depth=3, dim=16, width=32, activation="gelu", init="iid", ensemble=2, seed=0)
    x, y = torch.randn(7, 16), torch.randn(7, 16)
    loss, _ = K.loss_and_grads(net, x, y)  # the torch path still trains
    assert torch.isfinite(loss).all()
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("ODECHECK_NATIVE", "1")
    with pytest.raises(OdecheckError, match="broken compiler"):
        _native.library()
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-built library left behind


@needs_native
def test_fused_forward_matches_a_naive_layer_loop():
    # the scaling constants the kernels receive: s = 1/sqrt(q), c = alpha/sqrt(m), alpha = L^-beta
    net = ResNet(block="mlp", depth=4, dim=16, width=32, activation="identity", init="iid", ensemble=1, seed=0,
                 beta=1.0)
    assert math.isclose(net.alpha, 0.25)
    x = torch.randn(5, 16)
    h = x @ net.weights["A"][0].T
    for k in range(4):
        V, W = net.weights["V"][0, k], net.weights["W"][0, k]
        h = h + 0.25 / math.sqrt(32) * (h @ W.T / 4.0) @ V.T
    out, _ = K.forward(net, x)
    tol = rounding_bound(4, 16, 32)
    assert torch.allclose(out[0], h @ net.weights["B"][0].T, rtol=tol, atol=tol * h.abs().max().item())


@needs_native
def test_builds_from_scratch_into_an_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("ODECHECK_CACHE", str(tmp_path))
    monkeypatch.setenv("ODECHECK_NATIVE", "1")
    lib = _native.library()
    built = list(tmp_path.glob("native-*.so"))
    assert len(built) == 1 and lib._name == str(built[0])
    assert lib.odecheck_native_supports(16, 32) == 1 and lib.odecheck_native_supports(16, 48) == 0
    version = subprocess.run([_native._compiler(), "--version"], capture_output=True, text=True).stdout
    if "Free Software Foundation" in version:  # gcc always has OpenMP
        assert lib.odecheck_native_openmp() == 1
    assert not [p for p in tmp_path.iterdir() if p not in built]  # no temporary file left


def test_status_names_why_the_kernels_do_not_run(monkeypatch):
    expected = "available" if _native.library() is not None else "unavailable"
    assert _native.status()["state"] == expected
    with _native.disabled():
        assert _native.status()["state"] == "disabled"
    monkeypatch.setenv("ODECHECK_NATIVE", "0")
    assert _native.status()["state"] == "disabled"


# what each x86-64 build must target, from the compiler's flags alone: (isa, float32 lanes, registers)
EXPECTED_BUILD = {"avx512": ("avx512", 16, 32), "avx2": ("avx2", 8, 16), "sse2": ("sse2", 4, 16),
                  "scalar": ("scalar", 1, 16)}


@needs_native
@pytest.mark.parametrize("isa", VARIANTS)
def test_status_records_the_instruction_set_each_build_targets(isa):
    with _native.using(isa):
        st = _native.status()
    assert st["state"] == "available" and st["variant"] == isa
    if isa in EXPECTED_BUILD:
        assert (st["isa"], st["lanes"], st["registers"]) == EXPECTED_BUILD[isa]
    else:  # native: the widest this CPU has
        flags = _native.cpu_flags()
        widest = "avx512" if "avx512f" in flags else "avx2" if {"avx2", "fma"} <= flags else None
        if widest is not None:
            assert st["isa"] == widest
    assert st["cpu"] == _native.cpu_model()


def test_a_variant_the_cpu_cannot_run_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("ODECHECK_ISA", "avx1024")
    with pytest.raises(InvalidArgument, match="ODECHECK_ISA"):
        _native.library()
    missing = [v for v in _native.ISAS if v not in _native.runnable_variants()]
    if missing:
        monkeypatch.setattr(_native, "_state", {})
        monkeypatch.setenv("ODECHECK_ISA", missing[0])
        with pytest.raises(InvalidArgument, match="ODECHECK_ISA"):
            _native.library()


def test_runnable_variants_follow_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(_native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_native, "cpu_flags", lambda: frozenset({"sse2", "avx", "avx2", "fma"}))
    assert _native.runnable_variants() == ("native", "avx2", "sse2", "scalar")
    monkeypatch.setattr(_native, "cpu_flags", lambda: frozenset({"sse2"}))
    assert _native.runnable_variants() == ("native", "sse2", "scalar")
    monkeypatch.setattr(_native.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(_native, "cpu_flags", lambda: frozenset({"asimd", "fp"}))
    assert _native.runnable_variants() == ("native", "scalar")


# ----------------------------------------------------------------------------- the safety net
def _fake_timing(monkeypatch, fused_s: float, batched_s: float) -> list:
    calls = []

    def fake(kind, dtype, act, R, n, q, m):
        calls.append((kind, R, n, q, m))
        return {"path": "fused" if fused_s <= batched_s else "batched", "fused_s": fused_s, "batched_s": batched_s,
                "kind": kind, "isa": "fake"}

    monkeypatch.setattr(mlp_block, "time_paths", fake)
    return calls


@needs_native
@pytest.mark.parametrize("fused_s,batched_s,path", [(2.0, 1.0, "batched"), (1.0, 2.0, "fused")])
def test_engine_keeps_the_path_measured_faster_and_remembers_it(fused_s, batched_s, path, monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_state", {})
    monkeypatch.setenv("ODECHECK_CACHE", str(tmp_path))
    monkeypatch.setenv("ODECHECK_NATIVE", "auto")
    calls = _fake_timing(monkeypatch, fused_s, batched_s)
    net = ResNet(block="mlp", depth=5, dim=16, width=32, activation="gelu", init="iid", ensemble=3, seed=0)
    x, y = torch.randn(9, 16), torch.randn(9, 16)
    with _native.disabled():
        _, ref = _grads(net, x, y)
    out, cache = K.forward(net, x)
    assert (cache.d is not None) == (path == "fused")  # the fused forward keeps sigma'(u) in d
    _, grads = _grads(net, x, y)
    tol = 2 * rounding_bound(5, 16, 32, 9)
    for k in ref:
        assert ((grads[k] - ref[k]).abs().max() / ref[k].abs().max()).item() < tol
    assert len(calls) == 1  # timed once, then remembered in memory ...
    stored = json.loads((tmp_path / "path-choices.json").read_text())
    assert [c["path"] for c in stored.values()] == [path]
    monkeypatch.setattr(_native, "_state", {})  # ... and on disk, for the next process
    K.forward(net, x)
    assert len(calls) == 1
    # another shape class (R = 40 rounds up to 64, not 4) is timed anew
    K.forward(ResNet(block="mlp", depth=2, dim=16, width=32, activation="gelu", init="iid", ensemble=40, seed=0), x)
    assert len(calls) == 2 and calls[1][1] == 40


@needs_native
def test_time_paths_measures_both_paths():
    rec = mlp_block.time_paths("vector", torch.float32, "tanh", 2, 8, 16, 32)
    assert rec["fused_s"] > 0 and rec["batched_s"] > 0
    assert rec["path"] == ("fused" if rec["fused_s"] <= rec["batched_s"] else "batched")
    assert rec["isa"] == _native.status()["isa"]


@needs_native
def test_forcing_skips_the_timing(monkeypatch, tmp_path):
    monkeypatch.setenv("ODECHECK_CACHE", str(tmp_path))
    calls = _fake_timing(monkeypatch, 2.0, 1.0)
    V = torch.zeros(2, 3, 16, 32)
    assert K.path_choice(V, V.transpose(2, 3).contiguous(), "gelu", 10)["path"] == "fused"
    assert calls == [] and not (tmp_path / "path-choices.json").exists()
