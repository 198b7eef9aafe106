"""``odecheck bench``: the engine against a per-layer ModuleList baseline, in one process.

Workload [M24] finite time: n = 100, d = q = 16, m = 32, gelu, full-batch gradient step
(forward, backward, update), R networks. The baseline is written the way the papers' code is:
per network an nn.ModuleList of per-layer modules, the networks one after another, autograd
and torch.optim.SGD (learning rate L * lr on the blocks, as in the flow).

``engine_path`` says which engine ran: ``fused`` (the C++ kernels of ``_native``, CPU float32),
``cuda-graph`` (the batched path captured once in a CUDA graph and replayed) or ``batched`` (one
batched torch product per layer and weight family). Otherwise ``batched_s`` times the batched
path in the same run, and ``path_max_rel_diff`` compares the two paths' gradients on the same
weights (at depth min(L, 1024)), so the gain and the agreement are both measured.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from odecheck.engine import _native
from odecheck.engine._kernels import GraphedLossAndGrads, fused_chosen, loss_and_grads, path_choice
from odecheck.engine.models import ResNet

N, Q, M = 100, 16, 32
CHECK_DEPTH = 1024  # the paths' gradients are compared at depth min(L, CHECK_DEPTH) (memory)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Block(nn.Module):
    def __init__(self, q: int, m: int, scale: float):
        super().__init__()
        self.W = nn.Linear(q, m, bias=False)
        self.V = nn.Linear(m, q, bias=False)
        self.scale = scale
        self.q = q

    def forward(self, h):
        return self.scale * self.V(nn.functional.gelu(self.W(h) / math.sqrt(self.q)))


class _BaselineNet(nn.Module):
    def __init__(self, L: int, q: int, m: int):
        super().__init__()
        self.layers = nn.ModuleList(_Block(q, m, 1.0 / (L * math.sqrt(m))) for _ in range(L))

    def forward(self, x):
        h = x
        for layer in self.layers:
            h = h + layer(h)
        return h


def baseline_step_fn(L: int, R: int, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-2) -> Callable[[], None]:
    nets = [_BaselineNet(L, Q, M).to(x.device) for _ in range(R)]
    opts = [torch.optim.SGD(net.parameters(), lr=L * lr) for net in nets]

    def step():
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad(set_to_none=True)
            loss = ((net(x) - y) ** 2).sum(1).mean()
            loss.backward()
            opt.step()

    return step


def _bench_net(L: int, R: int, device: torch.device) -> ResNet:
    return ResNet(block="mlp", depth=L, dim=Q, width=M, activation="gelu", init="iid", ensemble=R, seed=0,
                  device=device)


def engine_step_fn(L: int, R: int, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-2,
                   recompute: int | None = None, graph: bool = False) -> Callable[[], None]:
    """One full-batch gradient step of the engine; ``graph``: the loss and gradient pass replayed
    from a CUDA graph (CUDA only)."""
    net = _bench_net(L, R, x.device)
    names = net.trainable
    graphed = GraphedLossAndGrads(net, x, y, segment=recompute) if graph else None

    def step():
        _, grads = graphed() if graphed is not None else loss_and_grads(net, x, y, reuse=True, segment=recompute)
        net.update_(net.public({k: grads[k] for k in names}), lr, flow=True)

    return step


def module_step_fn(L: int, R: int, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-2) -> Callable[[], None]:
    """The engine's step through its ``torch.nn.Module`` face: ``odecheck.nn.StackedResNet`` forward,
    loss, ``backward()`` (the engine's own backward under autograd) and ``torch.optim.SGD`` with the
    flow's rates (L * lr on the blocks)."""
    from odecheck.engine.nn import StackedResNet

    module = StackedResNet.from_resnet(_bench_net(L, R, x.device))
    opt = torch.optim.SGD(module.flow_param_groups(lr))
    n = x.shape[0]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((module(x) - y) ** 2).sum() / n
        loss.backward()
        opt.step()

    return step


def engine_path(device: torch.device, ensemble: int = 16) -> str:
    """The path the engine takes on the bench workload: ``fused`` (C++ kernels, CPU float32),
    ``cuda-graph`` (batched path replayed from a CUDA graph) or ``batched`` (no fused kernel
    applies, or the engine measured the batched path faster here: see ``_kernels.path_choice``)."""
    if device.type == "cuda":
        return "cuda-graph"
    probe = torch.empty(1, ensemble, Q, M, device=device)
    return "fused" if fused_chosen(probe, probe.transpose(2, 3).contiguous(), "gelu", N) else "batched"


def path_difference(L: int, R: int, x: torch.Tensor, y: torch.Tensor, path: str,
                    recompute: int | None = None) -> float:
    """Largest relative gradient difference between ``path`` and the batched path on the same
    weights: max over parameters of max|g - g_batched| / max|g_batched| (float32 rounding: ~1e-6)."""
    net = _bench_net(L, R, x.device)
    if path == "cuda-graph":
        grads = {k: v.clone() for k, v in GraphedLossAndGrads(net, x, y, segment=recompute)()[1].items()}
    else:
        grads = {k: v.clone() for k, v in loss_and_grads(net, x, y, segment=recompute)[1].items()}
    with _native.disabled():
        ref = loss_and_grads(net, x, y, segment=recompute)[1]
    return max(((grads[k] - ref[k]).abs().max() / ref[k].abs().max()).item() for k in net.trainable)


def flops_per_step(L: int, R: int) -> float:
    """2 forward + 4 backward matrix products of n x q x m per layer and member (2 flops per multiply-add)."""
    return 12.0 * R * N * Q * M * L


BMM_REPS = 200


def bmm_fn(R: int, device: torch.device) -> Callable[[], None]:
    """The reference: BMM_REPS bare batched matmuls of the workload's shapes, (R, n, q) @ (R, q, m)."""
    a = torch.randn(R, N, Q, device=device)
    b = torch.randn(R, Q, M, device=device)
    out = torch.empty(R, N, M, device=device)

    def fn():
        for _ in range(BMM_REPS):
            torch.bmm(a, b, out=out)

    return fn


def bmm_flops(R: int) -> float:
    return 2.0 * R * N * Q * M * BMM_REPS


def paired_times(fn: Callable[[], None], ref: Callable[[], None], device: torch.device, *, repeat: int
                 ) -> tuple[list[float], list[float]]:
    """Times of ``fn`` and of the reference ``ref``, alternated call by call (after one warm-up of
    each), so that both see the same background load; a shared machine drifts by 10-50 %."""
    fn()
    ref()
    _sync(device)
    ts, rs = [], []
    for _ in range(repeat):
        for f, out in ((fn, ts), (ref, rs)):
            t0 = time.perf_counter()
            f()
            _sync(device)
            out.append(time.perf_counter() - t0)
    return ts, rs


def _normalized(ts: list[float], rs: list[float]) -> float:
    """Median time in units of the reference timed next to it."""
    return statistics.median(t / r for t, r in zip(ts, rs, strict=True))


def default_variants(device: torch.device) -> list[str]:
    """The kernel variants a bench times next to each other: on the CPU the native build and, on an
    AVX-512 machine, the AVX2 build too (what most laptops and many cloud CPUs run); none on CUDA."""
    if device.type != "cpu" or _native.library() is None:
        return []
    out = ["native"]
    if _native.status().get("isa") == "avx512" and "avx2" in _native.runnable_variants():
        out.append("avx2")
    return out


def check_bench(depths, ensembles, device, *, recompute=None, variants=None) -> torch.device:
    """The resolved device, after every argument of :func:`run_bench` is checked (errors name them)."""
    from odecheck.core._errors import invalid
    from odecheck.core.validation import resolve_device

    dev = resolve_device(device)
    ensembles = [ensembles] if isinstance(ensembles, int) else ensembles
    if not depths or any(isinstance(L, bool) or not isinstance(L, int) or L < 1 for L in depths):
        raise invalid("depths", list(depths), "positive integers")
    if not ensembles or any(isinstance(R, bool) or not isinstance(R, int) or R < 1 for R in ensembles):
        raise invalid("ensembles", list(ensembles), "positive integers")
    if recompute is not None and (isinstance(recompute, bool) or not isinstance(recompute, int) or recompute < 1):
        raise invalid("recompute", recompute, "a positive integer")
    for name in variants or ():
        if name not in _native.ISAS:
            raise invalid("variants", name, f"one of {', '.join(_native.ISAS)}")
        if name not in _native.runnable_variants():
            raise invalid("variants", name, f"a build this CPU can run: {', '.join(_native.runnable_variants())}")
    if variants and dev.type != "cpu":
        raise invalid("variants", list(variants), "none off the CPU (the fused-kernel builds are CPU kernels)")
    return dev


def _bench_row(work: dict, path: str, choice, builds: dict, baseline_max_depth: int) -> dict:
    """One (R, L) row of ``run_bench``: the engine, the batched path, each build in ``builds`` and the baseline."""
    L, R, x, y, device, recompute = (work[k] for k in ("L", "R", "x", "y", "device", "recompute"))
    work["say"](f"R={R}, L={L}: engine ({path})")
    eng_t, eng_r = paired_times(engine_step_fn(L, R, x, y, recompute=recompute, graph=path == "cuda-graph"),
                                work["ref"], device, repeat=work["repeat"])
    eng, eng_n = statistics.median(eng_t), _normalized(eng_t, eng_r)
    batched = _batched_time(work) if (path != "batched" or builds) else None
    diff = None
    if path == "cuda-graph":
        diff = path_difference(min(L, CHECK_DEPTH), R, x, y, path, recompute)
    module_s, base, speedup_n = _module_and_baseline(work, path, baseline_max_depth, eng_n)
    per_variant = {isa: _fused_row(isa, b, work, base=base, batched=batched) for isa, b in builds.items()}
    if path == "fused":  # the engine's own build: measured above when timed, else here
        diff = (per_variant["native"]["path_max_rel_diff"] if "native" in per_variant
                else path_difference(min(L, CHECK_DEPTH), R, x, y, "fused", recompute))
    return {"depth": L, "ensemble": R, "baseline_s": base, "engine_s": eng,
            "speedup": (base / eng) if base else None, "speedup_normalized": speedup_n,
            **_engine_figures(L, R, eng_t, eng_r), "engine_bmm_units": eng_n, "engine_path": path,
            "choice": choice, "batched_s": batched,
            "engine_vs_batched": None if batched is None else batched / eng, "module_s": module_s,
            "module_vs_engine": None if module_s is None else module_s / eng,
            "path_max_rel_diff": diff, "variants": per_variant}


def run_bench(depths, ensembles, device: torch.device, *, repeat: int = 5, baseline_max_depth: int = 1024,
              recompute: int | None = None, variants: list[str] | None = None,
              progress: Callable[[str], None] | None = None,
              on_result: Callable[[dict], None] | None = None) -> dict:
    """Median seconds per step of the engine, the batched path, each fused-kernel variant and the
    baseline, each timed call by call alternately with the bare-bmm reference, for every (ensemble
    size, depth) pair.

    ``engine_s`` is the engine as a user gets it (on the CPU: the native kernels where the engine
    measured them faster than the batched path, ``choice`` holding that measurement), ``batched_s``
    the batched torch path, ``variants[isa]`` the fused kernels of that build forced on
    (``fused_s``, ``speedup``, ``roofline_fraction``, ``path_max_rel_diff`` against the batched
    path's gradients at depth min(L, 1024)). ``roofline_fraction`` is the median of the paired
    ratios (GFLOP/s over bmm GFLOP/s at the same moment). ``speedup`` is ``baseline_s / engine_s``;
    ``speedup_normalized`` divides the baseline's bmm-normalised time by the engine's instead, which
    removes a load change between the two measurements. ``module_s``: the same step through
    ``odecheck.nn.StackedResNet`` (forward, autograd backward into the engine, torch.optim.SGD);
    ``module_vs_engine`` its time over the engine's. ``engine_bmm_units``: the engine's step time
    in units of the reference timed next to it, for ratios across depths or runs. ``on_result``
    receives the report so far after each row (to write it as the run goes)."""
    device = check_bench(depths, ensembles, device, recompute=recompute, variants=variants)
    if isinstance(ensembles, int):
        ensembles = [ensembles]
    variants = default_variants(device) if variants is None else list(variants)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, Q, generator=g).to(device)
    y = torch.randn(N, Q, generator=g).to(device)
    results: list[dict] = []
    say = progress or (lambda msg: None)
    builds = {isa: _build_status(isa) for isa in variants}
    for R in ensembles:
        ref = bmm_fn(R, device)
        path = engine_path(device, R)
        choice = None if device.type != "cpu" else path_choice(*_probe(R), "gelu", N)
        for L in depths:
            work = {"L": L, "R": R, "x": x, "y": y, "ref": ref, "device": device, "repeat": repeat,
                    "recompute": recompute, "say": say}
            results.append(_bench_row(work, path, choice, {isa: builds[isa] for isa in variants}, baseline_max_depth))
            if on_result is not None:
                on_result(_report(device, recompute, builds, results))
    return _report(device, recompute, builds, results)


def _build_status(isa: str) -> dict:
    with _native.using(isa):
        return _native.status()


def _batched_time(w: dict) -> float:
    """The batched torch path's median step time (the fused kernels off)."""
    L, R = w["L"], w["R"]
    w["say"](f"R={R}, L={L}: batched path")
    with _native.disabled():
        bt, _ = paired_times(engine_step_fn(L, R, w["x"], w["y"], recompute=w["recompute"]), w["ref"], w["device"],
                             repeat=max(2, w["repeat"] // 2))
    return statistics.median(bt)


def _engine_figures(L: int, R: int, eng_t: list[float], eng_r: list[float]) -> dict:
    """GFLOP/s of the engine's median step, its roofline share (paired with the reference) and the bmm rate."""
    flops = flops_per_step(L, R)
    return {"gflops": flops / statistics.median(eng_t) / 1e9,
            "roofline_fraction": statistics.median(flops * r / (t * bmm_flops(R)) for t, r in zip(eng_t, eng_r, strict=True)),
            "bmm_gflops": bmm_flops(R) / statistics.median(eng_r) / 1e9}


def _module_and_baseline(w: dict, path: str, baseline_max_depth: int, eng_n: float):
    """The odecheck.nn module's step time, and the per-layer baseline's with its speed-up over the engine
    normalized by the reference timed alongside (None where they are not timed); ``w``: the workload."""
    L, R, x, y, ref, device, repeat, say = (w[k] for k in ("L", "R", "x", "y", "ref", "device", "repeat", "say"))
    module_s = None
    if device.type == "cpu" or path != "cuda-graph":
        say(f"R={R}, L={L}: odecheck.nn module")
        mt, mr = paired_times(module_step_fn(L, R, x, y), ref, device, repeat=max(2, repeat // 2))
        module_s = statistics.median(mt)
    base = speedup_n = None
    if L <= baseline_max_depth:
        say(f"R={R}, L={L}: baseline")
        bt, br = paired_times(baseline_step_fn(L, R, x, y), ref, device, repeat=max(2, repeat // 2))
        base, speedup_n = statistics.median(bt), _normalized(bt, br) / eng_n
    return module_s, base, speedup_n


def _fused_row(isa: str, build: dict, w: dict, *, base, batched) -> dict:
    """One build of the fused kernels, forced on: its time, speed-ups, roofline share and its gradients'
    largest relative difference to the batched path's. ``w``: the workload (L, R, x, y, the reference ``ref``
    timed alongside, device, repeat, recompute, and ``say`` for progress)."""
    L, R, x, y, ref, device, repeat, recompute, say = (w[k] for k in ("L", "R", "x", "y", "ref", "device", "repeat",
                                                                       "recompute", "say"))
    say(f"R={R}, L={L}: fused kernels, {isa} build")
    with _native.using(isa), _native.forcing():
        ft, fr = paired_times(engine_step_fn(L, R, x, y, recompute=recompute), ref, device,
                              repeat=repeat)
        vdiff = path_difference(min(L, CHECK_DEPTH), R, x, y, "fused", recompute)
    fused = statistics.median(ft)
    return {
        "isa": build.get("isa"), "lanes": build.get("lanes"), "fused_s": fused,
        "speedup": (base / fused) if base else None,
        "roofline_fraction": statistics.median(flops_per_step(L, R) * r / (t * bmm_flops(R))
                                               for t, r in zip(ft, fr, strict=True)),
        "vs_batched": batched / fused, "path_max_rel_diff": vdiff}


def _probe(R: int) -> tuple[torch.Tensor, torch.Tensor]:
    V = torch.empty(1, R, Q, M)
    return V, V.transpose(2, 3).contiguous()


def _report(device: torch.device, recompute: int | None, builds: dict, results: list[dict]) -> dict:
    peak = _peak(device)
    for r in results:  # each row's GFLOP/s against the measured FMA peak of the same threads, same run
        r["fma_peak_share"] = None if peak is None else r["gflops"] / peak["gflops"]
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "fma_peak": peak,
            "cpu": _native.cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "bmm_gflops": statistics.median(r["bmm_gflops"] for r in results) if results else None,
            "recompute": recompute, "native": _native.status() if device.type == "cpu" else None,
            "variants": builds,
            "workload": {"n": N, "d": Q, "q": Q, "m": M, "activation": "gelu", "step": "full-batch gradient step",
                         "dtype": "float32"},
            "results": list(results)}


_PEAK: dict = {}


def _peak(device: torch.device) -> dict | None:
    """The CPU's measured FMA peak at torch's thread count with the native build (``_native.fma_peak``: the
    best of 3 timed runs of independent vector multiply-add chains), measured once per process; None on
    CUDA or without the kernels."""
    if device.type != "cpu":
        return None
    key = torch.get_num_threads()
    if key not in _PEAK:
        _PEAK[key] = _native.fma_peak(key)
    return _PEAK[key]
