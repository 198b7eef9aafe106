r"""Forward and hand-written backward passes over stacked (L, R, ...) weights.

One Python loop over the layers serves the whole ensemble: every layer is a few batched
matrix products (``bmm``/``baddbmm``) over the ensemble axis, written into preallocated
buffers. The backward pass is the exact adjoint of the forward recursion; it is tested
against autograd on a naive per-layer model and with ``gradcheck`` in float64.

Adjoint of the mlp block (g_k = dl/dh_k, c = alpha_L / sqrt(m), s = 1/sqrt(q)):
    dl/dV_k = c g_{k+1}^T sigma(u_k),   g_u = sigma'(u_k) * (c g_{k+1} V_k),
    dl/dW_k = s g_u^T h_k,              g_k = g_{k+1} + s g_u W_k.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from . import _native
from ._errors import invalid
from .models import ResNet, activate, activate_backward


@dataclass
class Cache:
    """Saved forward quantities: h (L+1, R, n, q); u, a (L, R, n, m) pre-activations/activations.

    ``d``: sigma'(u) instead of u, when the fused CPU kernels (``_native``) ran the mlp forward."""

    h: torch.Tensor
    u: torch.Tensor | None
    a: torch.Tensor | None
    x: torch.Tensor
    d: torch.Tensor | None = None


# ----------------------------------------------------------------------------- fused or batched: measured
TUNE_LAYERS = 16  # layers of the synthetic pass each path is timed on
TUNE_REPS = 3  # timed passes per path, alternating (after one warm-up each); the fastest counts


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def choice_key(kind: str, dtype: torch.dtype, act: str, R: int, n: int, q: int, m: int) -> str:
    """The shape class a path choice is remembered for: the kernel library (source, flags, compiler,
    CPU), the kernel kind, dtype, activation, q, m, the torch thread count, and R and n rounded up to
    powers of two."""
    return "|".join([str(_native.build_key()), kind, str(dtype).replace("torch.", ""), act, f"q{q}", f"m{m}",
                     f"R{_pow2(R)}", f"n{_pow2(n)}", f"threads{torch.get_num_threads()}"])


def time_paths(kind: str, dtype: torch.dtype, act: str, R: int, n: int, q: int, m: int) -> dict:
    """Seconds per layer of a full mlp forward and backward pass on each path (fused kernels and
    batched torch products), timed alternately on TUNE_LAYERS layers of random weights of the given
    shapes; the faster path is ``path``."""
    S = TUNE_LAYERS
    g = torch.Generator().manual_seed(0)
    V = torch.randn(S, R, q, m, generator=g, dtype=dtype)
    W = torch.randn(S, R, m, q, generator=g, dtype=dtype)
    h = torch.empty(S + 1, R, n, q, dtype=dtype)
    h[0] = torch.randn(R, n, q, generator=g, dtype=dtype)
    g_out = torch.randn(R, n, q, generator=g, dtype=dtype)
    a, d, u = (torch.empty(S, R, n, m, dtype=dtype) for _ in range(3))
    gV, gW = torch.empty_like(V), torch.empty_like(W)
    s, c = 1.0 / math.sqrt(q), 1.0 / (S * math.sqrt(m))
    ws: dict = {}

    def fused():
        _native.mlp_forward(act, V, W, h, a, d, s, c)
        _native.mlp_backward(act, V, W, h, a, d, g_out.clone(), gV, gW, s, c)

    def batched():
        av = u if act == "identity" else a
        _mlp_range_forward(act, V, W, h, u, av, s, c)
        _mlp_range_backward(act, V, W, h, u, av, g_out, gV, gW, s, c, ws)

    times: dict[str, list[float]] = {"fused": [], "batched": []}
    with torch.no_grad():
        fused()
        batched()
        for _ in range(TUNE_REPS):
            for name, fn in (("fused", fused), ("batched", batched)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    best = {k: min(v) / S for k, v in times.items()}
    return {"path": "fused" if best["fused"] <= best["batched"] else "batched", "fused_s": best["fused"],
            "batched_s": best["batched"], "kind": kind, "isa": _native.status().get("isa")}


def path_choice(V: torch.Tensor, W: torch.Tensor, act: str, n: int) -> dict | None:
    """How the mlp layers with weights V (S, R, q, m), W (S, R, m, q) on n samples run: None when no
    fused kernel applies (:func:`_native.kind`), else a dict whose ``path`` is ``fused`` or ``batched``.

    ``ODECHECK_NATIVE=1`` (or ``_native.forcing()``) takes the fused kernels wherever they apply. Otherwise, on first use of a
    shape class (:func:`choice_key`), both paths are timed (:func:`time_paths`) and the faster one is
    remembered in the cache directory (``_native.remember``), so the engine never keeps a fused
    kernel slower than its batched torch path on the machine at hand."""
    kind = _native.kind(V, W, act, n)
    if kind is None:
        return None
    if _native.forced():
        return {"path": "fused", "kind": kind, "forced": True}
    R, q, m = V.shape[1], V.shape[2], V.shape[3]
    key = choice_key(kind, V.dtype, act, R, n, q, m)
    choice = _native.remembered(key)
    if choice is None:
        choice = time_paths(kind, V.dtype, act, R, n, q, m)
        _native.remember(key, choice)
    return choice


def fused_chosen(V: torch.Tensor, W: torch.Tensor, act: str, n: int) -> bool:
    """Whether the fused kernels run these mlp layers (see :func:`path_choice`)."""
    choice = path_choice(V, W, act, n)
    return choice is not None and choice["path"] == "fused"


def _delta(net: ResNet, p: dict[str, torch.Tensor], k: int):
    if net.delta_mode == "fixed":
        return net.alpha
    d = p["delta"][k] if net.delta_mode == "per_layer" else p["delta"]
    return d[:, None, None]


def _workspace(net: ResNet, reuse: bool | dict) -> dict:
    """Buffers kept on the network between calls (``reuse``) to avoid re-faulting fresh memory each step;
    ``reuse`` may also be the workspace dict itself (``odecheck.nn`` keeps a pool of them)."""
    if isinstance(reuse, dict):
        return reuse
    if not reuse:
        return {}
    return net.__dict__.setdefault("_ws", {})


def _buf(ws: dict, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    t = ws.get(key)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = torch.empty(shape, dtype=like.dtype, device=like.device)
        ws[key] = t
    return t


def forward(net: ResNet, x: torch.Tensor, *, keep: bool = True, params=None, reuse: bool | dict = False
            ) -> tuple[torch.Tensor, Cache | None]:
    """Network output (R, n, d') and, if ``keep``, the cache needed by :func:`backward`.

    ``reuse``: write the cache into buffers kept on ``net`` (overwritten by the next call).
    """
    p = net._p if params is None else params
    ws = _workspace(net, reuse if keep else False)
    L, R, q, m = net.depth, net.ensemble, net.dim, net.width
    act = net.activation
    A, B = p["A"], p["B"]
    h0 = torch.matmul(x, A.transpose(1, 2))  # (R, n, q)
    n = h0.shape[1]
    dt, dev = h0.dtype, h0.device
    if keep:
        h = _buf(ws, "h", (L + 1, R, n, q), h0)
        h[0] = h0
    else:
        h = None
        cur = h0.clone()
        nxt = torch.empty_like(cur)
    u = a = d = None
    if net.block == "mlp":
        V, W = p["V"], p["W"]
        s, c = 1.0 / math.sqrt(q), net.alpha / math.sqrt(m)
        if fused_chosen(V, W, act, n):
            if keep:
                a, d = _buf(ws, "a", (L, R, n, m), h0), _buf(ws, "d", (L, R, n, m), h0)
                _native.mlp_forward(act, V, W, h, a, d, s, c)
            else:
                _native.mlp_forward(act, V, W, cur, None, None, s, c, keep=False)
        elif keep:
            u = _buf(ws, "u", (L, R, n, m), h0)
            a = u if act == "identity" else _buf(ws, "a", (L, R, n, m), h0)
            _mlp_range_forward(act, V, W, h, u, a, s, c)
        else:
            ub = torch.empty((R, n, m), dtype=dt, device=dev)
            ab = ub if act == "identity" else torch.empty_like(ub)
            Wt, Vt = W.transpose(2, 3).unbind(0), V.transpose(2, 3).unbind(0)
            for k in range(L):
                torch.baddbmm(ub, cur, Wt[k], beta=0.0, alpha=s, out=ub)
                if act != "identity":
                    activate(act, ub, ab)
                torch.baddbmm(cur, ab, Vt[k], alpha=c, out=nxt)
                cur, nxt = nxt, cur
    elif net.block == "single":
        W, b = p["W"], p["b"]
        if keep:
            u = _buf(ws, "u", (L, R, n, q), h0)
            a = u if act == "identity" else _buf(ws, "a", (L, R, n, q), h0)
        else:
            ub = torch.empty((R, n, q), dtype=dt, device=dev)
            ab = ub if act == "identity" else torch.empty_like(ub)
        for k in range(L):
            hk = h[k] if keep else cur
            uk = u[k] if keep else ub
            ak = a[k] if keep else ab
            torch.baddbmm(b[k], hk, W[k].transpose(1, 2), out=uk)
            if act != "identity":
                activate(act, uk, ak)
            dk = _delta(net, p, k)
            out = h[k + 1] if keep else nxt
            if isinstance(dk, float):
                torch.add(hk, ak, alpha=dk, out=out)
            else:
                torch.addcmul(hk, ak, dk, out=out)
            if not keep:
                cur, nxt = nxt, cur
    else:  # res1
        V = p["V"]
        c = net.alpha
        if keep:
            a = _buf(ws, "a", (L, R, n, q), h0)
        else:
            ab = torch.empty((R, n, q), dtype=dt, device=dev)
        for k in range(L):
            hk = h[k] if keep else cur
            ak = a[k] if keep else ab
            activate(act, hk, ak)
            out = h[k + 1] if keep else nxt
            torch.baddbmm(hk, ak, V[k].transpose(1, 2), alpha=c, out=out)
            if not keep:
                cur, nxt = nxt, cur
    hL = h[L] if keep else cur
    y = torch.bmm(hL, B.transpose(1, 2))
    return y, (Cache(h=h, u=u, a=a, x=x, d=d) if keep else None)


def backward(net: ResNet, cache: Cache, g_out: torch.Tensor, *, params=None, reuse: bool | dict = False,
             consume: bool = True, fresh_grads: bool = False) -> dict[str, torch.Tensor]:
    """Gradients of sum_r l_r given g_out = dl/dF (R, n, d'), in the internal (L, R, ...) layout.

    ``reuse``: gradients and temporaries live in buffers kept on ``net`` (overwritten by the next
    call), or in the given workspace dict. ``consume=False`` leaves the cache intact (a second
    backward through it gives the same result); ``fresh_grads``: the weight gradients are new
    tensors even when the temporaries are reused.
    """
    p = net._p if params is None else params
    ws = _workspace(net, reuse)
    L, q, m = net.depth, net.dim, net.width
    act = net.activation
    h, u, a, x = cache.h, cache.u, cache.a, cache.x
    grads, g = _output_backward(g_out, h[L], p["B"])
    if net.block == "mlp":
        V, W = p["V"], p["W"]
        s, c = 1.0 / math.sqrt(q), net.alpha / math.sqrt(m)
        if fresh_grads:
            gV, gW = torch.empty_like(V), torch.empty_like(W)
        else:
            gV, gW = _buf(ws, "gV", tuple(V.shape), V), _buf(ws, "gW", tuple(W.shape), W)
        if cache.d is not None:  # the forward ran the fused kernels
            _native.mlp_backward(act, V, W, h, a, cache.d, g, gV, gW, s, c)
        else:
            g = _mlp_range_backward(act, V, W, h, u, a, g, gV, gW, s, c, ws, consume=consume)
        grads["V"], grads["W"] = gV, gW
    elif net.block == "single":
        W = p["W"]
        gW, gb = torch.empty_like(W), torch.empty_like(p["b"])
        gdelta = None
        if net.delta_mode != "fixed":
            gdelta = torch.zeros((L, net.ensemble), dtype=g.dtype, device=g.device)
        for k in range(L - 1, -1, -1):
            dk = _delta(net, p, k)
            if gdelta is not None:
                gdelta[k] = (g * a[k]).sum(dim=(1, 2))
            gu = activate_backward(act, g * dk, u[k], a[k])
            torch.bmm(gu.transpose(1, 2), h[k], out=gW[k])
            torch.sum(gu, dim=1, keepdim=True, out=gb[k])
            g.baddbmm_(gu, W[k])
        grads["W"], grads["b"] = gW, gb
        if gdelta is not None:
            grads["delta"] = gdelta if net.delta_mode == "per_layer" else gdelta.sum(0)
    else:
        V = p["V"]
        c = net.alpha
        gV = torch.empty_like(V)
        for k in range(L - 1, -1, -1):
            torch.baddbmm(gV[k], g.transpose(1, 2), a[k], beta=0.0, alpha=c, out=gV[k])
            ga = torch.bmm(g, V[k]) * c
            g.add_(activate_backward(act, ga, h[k], a[k]))
        grads["V"] = gV
    _input_backward(grads, g, x, net.ensemble)
    return grads


def _output_backward(g_out: torch.Tensor, hL: torch.Tensor, B: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """dl/dB and dl/dh_L from dl/dF (F = B h_L)."""
    g = torch.bmm(g_out, B)
    return {"B": torch.bmm(g_out.transpose(1, 2), hL), "_hL": g.clone()}, g


def _input_backward(grads: dict, g0: torch.Tensor, x: torch.Tensor, R: int) -> None:
    """dl/dA and dl/dh_0 from g0 = dl/dh_0 (h_0 = A x), one A per member."""
    grads["_h0"] = g0
    gA = torch.matmul(g0.transpose(1, 2), x)
    grads["A"] = gA if gA.shape[0] == R else gA.expand(R, *gA.shape[1:]).clone()


def _mlp_range_backward(act, V, W, h, u, a, g, gV, gW, s: float, c: float, ws: dict, consume: bool = True
                        ) -> torch.Tensor:
    """Backward through consecutive mlp layers (V, W, u, a: their slices; h: the len+1 states).

    Writes the weight gradients into gV, gW and returns dl/dh at the first layer. u is overwritten
    unless ``consume=False``.
    """
    S, R, n, q = V.shape[0], g.shape[0], g.shape[1], h.shape[-1]
    m = V.shape[-1]
    # G[k] = dl/dh_k; the sequential sweep only propagates G, and the weight gradients of all
    # layers are then two large batched products over the (layers * R) axis.
    G = _buf(ws, "G", (S + 1, R, n, q), g)
    G[S] = g
    ga = torch.empty_like(u[0])
    # dl/du_k overwrites u_k, which is not needed afterwards (unless a is u: identity)
    GU = u if (a is not u and consume) else _buf(ws, "GU", tuple(u.shape), u)
    Gs, GUs, Vs, Ws, us, as_ = G.unbind(0), GU.unbind(0), V.unbind(0), W.unbind(0), u.unbind(0), a.unbind(0)
    same = a is u
    for k in range(S - 1, -1, -1):
        if same:
            torch.baddbmm(GUs[k], Gs[k + 1], Vs[k], beta=0.0, alpha=c, out=GUs[k])
        else:
            torch.baddbmm(ga, Gs[k + 1], Vs[k], beta=0.0, alpha=c, out=ga)
            activate_backward(act, ga, us[k], as_[k], GUs[k])
        torch.baddbmm(Gs[k + 1], GUs[k], Ws[k], alpha=s, out=Gs[k])
    SR = S * R
    torch.baddbmm(gV.reshape(SR, q, m), G[1:].reshape(SR, n, q).transpose(1, 2), a.reshape(SR, n, m),
                  beta=0.0, alpha=c, out=gV.view(SR, q, m))
    torch.baddbmm(gW.reshape(SR, m, q), GU.reshape(SR, n, m).transpose(1, 2), h[:S].reshape(SR, n, q),
                  beta=0.0, alpha=s, out=gW.view(SR, m, q))
    return G[0].clone()


def _mlp_range_forward(act, V, W, h, u, a, s: float, c: float) -> None:
    """Forward through consecutive mlp layers: h[0] given; writes h[1:], u, a.

    Per-layer views come from one ``unbind`` each (cheaper than indexing inside the loop)."""
    Wt, Vt = W.transpose(2, 3).unbind(0), V.transpose(2, 3).unbind(0)
    hs, us = h.unbind(0), u.unbind(0)
    as_ = us if a is u else a.unbind(0)
    same = a is u
    for k in range(len(Wt)):
        uk, ak = us[k], as_[k]
        torch.baddbmm(uk, hs[k], Wt[k], beta=0.0, alpha=s, out=uk)
        if not same:
            activate(act, uk, ak)
        torch.baddbmm(hs[k], ak, Vt[k], alpha=c, out=hs[k + 1])


def _mlp_loss_and_grads_recompute(net: ResNet, x, y, segment: int, reuse: bool):
    """Loss and gradients storing only every ``segment``-th state; each segment's forward is
    recomputed during the backward pass (memory O(L/segment + segment) states, one extra forward)."""
    p = net._p
    ws = _workspace(net, reuse)
    L, q, m = net.depth, net.dim, net.width
    act = net.activation
    s, c = 1.0 / math.sqrt(q), net.alpha / math.sqrt(m)
    V, W, A, B = p["V"], p["W"], p["A"], p["B"]
    h0 = torch.matmul(x, A.transpose(1, 2))
    R, n = h0.shape[0], h0.shape[1]
    S = min(segment, L)
    starts = list(range(0, L, S))
    ck = _buf(ws, "ck", (len(starts) + 1, R, n, q), h0)
    hs = _buf(ws, "seg_h", (S + 1, R, n, q), h0)
    us = _buf(ws, "seg_u", (S, R, n, m), h0)
    as_ = _buf(ws, "seg_a", (S, R, n, m), h0)  # separate even for identity: views of one buffer are not `is`
    fused = fused_chosen(V, W, act, n)  # then us holds sigma'(u), and checkpoints need no stored layers
    ck[0] = h0
    for j, k0 in enumerate(starts):
        k1 = min(k0 + S, L)
        if fused:
            ck[j + 1] = ck[j]
            _native.mlp_forward(act, V[k0:k1], W[k0:k1], ck[j + 1], None, None, s, c, keep=False)
            continue
        hs[0] = ck[j]
        _mlp_range_forward(act, V[k0:k1], W[k0:k1], hs[: k1 - k0 + 1], us[: k1 - k0], as_[: k1 - k0], s, c)
        ck[j + 1] = hs[k1 - k0]
    hL = ck[len(starts)]
    out = torch.bmm(hL, B.transpose(1, 2))
    loss, g_out = mse(out, y)
    grads, g = _output_backward(g_out, hL, B)
    gV, gW = _buf(ws, "gV", tuple(V.shape), V), _buf(ws, "gW", tuple(W.shape), W)
    for j in range(len(starts) - 1, -1, -1):
        k0 = starts[j]
        k1 = min(k0 + S, L)
        w = k1 - k0
        hs[0] = ck[j]
        if fused:
            _native.mlp_forward(act, V[k0:k1], W[k0:k1], hs[: w + 1], as_[:w], us[:w], s, c)
            _native.mlp_backward(act, V[k0:k1], W[k0:k1], hs[: w + 1], as_[:w], us[:w], g, gV[k0:k1], gW[k0:k1], s, c)
            continue
        _mlp_range_forward(act, V[k0:k1], W[k0:k1], hs[: w + 1], us[:w], as_[:w], s, c)
        g = _mlp_range_backward(act, V[k0:k1], W[k0:k1], hs[: w + 1], us[:w], as_[:w], g, gV[k0:k1], gW[k0:k1],
                                s, c, ws)
    grads["V"], grads["W"] = gV, gW
    _input_backward(grads, g, x, net.ensemble)
    return loss, grads


def mse(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss l_r = (1/n) sum_i ||F(x_i) - y_i||^2 per member (R,) and dl/dF (R, n, d')."""
    n = out.shape[1]
    diff = out - y
    loss = (diff * diff).sum(dim=(1, 2)) / n
    return loss, diff * (2.0 / n)


def loss_and_grads(net: ResNet, x: torch.Tensor, y: torch.Tensor, *, params=None, reuse: bool = False,
                   segment: int | None = None):
    """Per-member loss (R,) and the gradients of every parameter (internal layout).

    ``reuse=True`` keeps the activations and gradients in buffers on ``net``: the returned
    gradients are then overwritten by the next call (the training loops consume them at once).
    ``segment``: mlp block only; store one state per ``segment`` layers and recompute the rest in
    the backward pass (bounded memory at large depth, about one extra forward pass of time).
    """
    if segment is not None:
        if net.block != "mlp" or params is not None:
            raise invalid("segment", segment, "None unless block='mlp' (recomputation is implemented for mlp)")
        if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
            raise invalid("segment", segment, "a positive integer")
        return _mlp_loss_and_grads_recompute(net, x, y, segment, reuse)
    out, cache = forward(net, x, keep=True, params=params, reuse=reuse)
    loss, g_out = mse(out, y)
    assert cache is not None
    return loss, backward(net, cache, g_out, params=params, reuse=reuse)


class GraphedLossAndGrads:
    """:func:`loss_and_grads` (``reuse=True``) captured once in a CUDA graph and replayed.

    On a GPU the batched path launches a few kernels per layer; at L = 1024 the launches, not the
    arithmetic, set the time. A replay issues the whole captured pass at once. The graph reads the
    weights, ``x`` and ``y`` from the storage they had at capture: update the weights in place
    (the training loops do); a reallocated weight is refused. ``loss`` and ``grads`` are the same
    tensors at every call, overwritten by the next replay.
    """

    def __init__(self, net: ResNet, x: torch.Tensor, y: torch.Tensor, *, segment: int | None = None,
                 warmup: int = 2):
        if net.device.type != "cuda":
            raise invalid("device", str(net.device), "a CUDA device (CUDA graphs)")
        dev = net.device
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # allocate every workspace buffer before capture
            for _ in range(max(1, warmup)):
                loss_and_grads(net, x, y, reuse=True, segment=segment)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.grads = loss_and_grads(net, x, y, reuse=True, segment=segment)
        self.net, self.x, self.y = net, x, y
        self._ptrs = {name: t.data_ptr() for name, t in net._p.items()}

    def __call__(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        moved = [n for n, t in self.net._p.items() if t.data_ptr() != self._ptrs[n]]
        if moved:
            raise invalid("net", f"weights {moved} reallocated since capture", "weights updated in place")
        self.graph.replay()
        return self.loss, self.grads
