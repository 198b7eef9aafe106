"""The fused CPU kernels (``_native``) against the batched torch path in float64."""

from __future__ import annotations

import math
import os
import stat
import subprocess

import pytest
import torch
from helpers import F32_UNIT_ROUNDOFF, rounding_bound

from odecheck import _kernels as K
from odecheck import _native
from odecheck._errors import OdecheckError
from odecheck.models import ACTIVATIONS, ResNet, activate, activate_backward

needs_native = pytest.mark.skipif(os.environ.get("ODECHECK_NATIVE") == "0" or _native.library() is None,
                                  reason="fused CPU kernels disabled or not buildable here")


@needs_native
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_and_derivative_as_accurate_as_atens_float32(act):
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
@pytest.mark.parametrize("q,m", [(16, 32), (32, 16), (16, 64), (16, 16)])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fused_step_matches_float64_reference(q, m, act):
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
    assert _native.status() == expected
    with _native.disabled():
        assert _native.status() == "disabled"
    monkeypatch.setenv("ODECHECK_NATIVE", "0")
    assert _native.status() == "disabled"
