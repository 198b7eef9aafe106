r"""The mlp block of [M24]: h_{k+1} = h_k + alpha_L m^{-1/2} V_k sigma(q^{-1/2} W_k h_k).

V_k: (q, m), W_k: (m, q); the ``tied`` initialization sets V to zero. On the CPU in float32 (and
for small layers in float64) the fused kernels of ``_native`` can run the whole pass; the engine
times them against the batched path on first use of a shape class and keeps the faster
(:func:`path_choice`).

Adjoint (c = alpha_L / sqrt(m), s = 1/sqrt(q), g_k = dl/dh_k):
    dl/dV_k = c g_{k+1}^T sigma(u_k),   g_u = sigma'(u_k) * (c g_{k+1} V_k),
    dl/dW_k = s g_u^T h_k,              g_k = g_{k+1} + s g_u W_k.

References
----------
[M24] Marion et al., ICLR 2024, eq. (1).
"""

from __future__ import annotations

import math
import time

import torch

from odecheck.core._errors import invalid
from odecheck.engine import _native
from odecheck.engine.activations import activate, activate_backward
from odecheck.engine.blocks import base
from odecheck.engine.blocks.base import Block, Network, buf, input_backward, output_backward, workspace
from odecheck.engine.losses import loss_function


def scales(net) -> tuple[float, float]:
    """(s, c) = (1/sqrt(q), alpha_L / sqrt(m)) of the network's configuration; (1, alpha_L) without the
    width factors (``width_factors=False``: the block x + alpha_L V sigma(W x) of [M24]'s public script)."""
    if not net.width_factors:
        return 1.0, base.residual_scale(net.depth, net.beta)
    return 1.0 / math.sqrt(net.dim), base.residual_scale(net.depth, net.beta) / math.sqrt(net.width)


# ----------------------------------------------------------------------------- fused or batched: measured
TUNE_LAYERS = 16  # layers of the synthetic pass each path is timed on
TUNE_REPS = 3  # timed passes per path, alternating (after one warm-up each); the fastest counts


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def choice_key(kind: str, dtype: torch.dtype, act: str, R: int, n: int, q: int, m: int) -> str:
    """The shape class a path choice is remembered for: the kernel library (source, flags, compiler,
    CPU), the kernel kind, dtype, activation, q, m, and R and n rounded up to powers of two. Not the thread
    count: the two paths round differently, and the thread policy (``odecheck.threads``) changes the count
    with the machine's load, so one choice per shape class (timed at the count of its first use) keeps
    results the same for every thread count."""
    return "|".join([str(_native.build_key()), kind, str(dtype).replace("torch.", ""), act, f"q{q}", f"m{m}",
                     f"R{_pow2(R)}", f"n{_pow2(n)}"])


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
        range_forward(act, V, W, h, u, av, s, c)
        range_backward(act, V, W, h, u, av, g_out, gV, gW, s, c, ws)

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


def range_backward(act, V, W, h, u, a, g, gV, gW, s: float, c: float, ws: dict, consume: bool = True
                   ) -> torch.Tensor:
    """Backward through consecutive mlp layers (V, W, u, a: their slices; h: the len+1 states).

    Writes the weight gradients into gV, gW and returns dl/dh at the first layer. u is overwritten
    unless ``consume=False``.
    """
    S, R, n, q = V.shape[0], g.shape[0], g.shape[1], h.shape[-1]
    m = V.shape[-1]
    # G[k] = dl/dh_k; the sequential sweep only propagates G, and the weight gradients of all
    # layers are then two large batched products over the (layers * R) axis.
    G = buf(ws, "G", (S + 1, R, n, q), g)
    G[S] = g
    ga = torch.empty_like(u[0])
    # dl/du_k overwrites u_k, which is not needed afterwards (unless a is u: identity)
    GU = u if (a is not u and consume) else buf(ws, "GU", tuple(u.shape), u)
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


def range_forward(act, V, W, h, u, a, s: float, c: float) -> None:
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


def loss_and_grads_recompute(net: Network, x, y, segment: int, reuse: bool, *, loss: str = "mse"):
    """Loss and gradients storing only every ``segment``-th state; each segment's forward is
    recomputed during the backward pass (memory O(L/segment + segment) states, one extra forward)."""
    p = net.params
    ws = workspace(net, reuse)
    L, q, m = net.depth, net.dim, net.width
    act = net.activation
    s, c = scales(net)
    V, W, A, B = p["V"], p["W"], p["A"], p["B"]
    h0 = torch.matmul(x, A.transpose(1, 2))
    R, n = h0.shape[0], h0.shape[1]
    S = min(segment, L)
    starts = list(range(0, L, S))
    ck = buf(ws, "ck", (len(starts) + 1, R, n, q), h0)
    hs = buf(ws, "seg_h", (S + 1, R, n, q), h0)
    us = buf(ws, "seg_u", (S, R, n, m), h0)
    as_ = buf(ws, "seg_a", (S, R, n, m), h0)  # separate even for identity: views of one buffer are not `is`
    fused = fused_chosen(V, W, act, n)  # then us holds sigma'(u), and checkpoints need no stored layers
    ck[0] = h0
    for j, k0 in enumerate(starts):
        k1 = min(k0 + S, L)
        if fused:
            ck[j + 1] = ck[j]
            _native.mlp_forward(act, V[k0:k1], W[k0:k1], ck[j + 1], None, None, s, c, keep=False)
            continue
        hs[0] = ck[j]
        range_forward(act, V[k0:k1], W[k0:k1], hs[: k1 - k0 + 1], us[: k1 - k0], as_[: k1 - k0], s, c)
        ck[j + 1] = hs[k1 - k0]
    hL = ck[len(starts)]
    out = torch.bmm(hL, B.transpose(1, 2))
    loss, g_out = loss_function(loss)(out, y)
    grads, g = output_backward(g_out, hL, B)
    gV, gW = buf(ws, "gV", tuple(V.shape), V), buf(ws, "gW", tuple(W.shape), W)
    for j in range(len(starts) - 1, -1, -1):
        k0 = starts[j]
        k1 = min(k0 + S, L)
        w = k1 - k0
        hs[0] = ck[j]
        if fused:
            _native.mlp_forward(act, V[k0:k1], W[k0:k1], hs[: w + 1], as_[:w], us[:w], s, c)
            _native.mlp_backward(act, V[k0:k1], W[k0:k1], hs[: w + 1], as_[:w], us[:w], g, gV[k0:k1], gW[k0:k1], s, c)
            continue
        range_forward(act, V[k0:k1], W[k0:k1], hs[: w + 1], us[:w], as_[:w], s, c)
        g = range_backward(act, V[k0:k1], W[k0:k1], hs[: w + 1], us[:w], as_[:w], g, gV[k0:k1], gW[k0:k1],
                           s, c, ws)
    grads["V"], grads["W"] = gV, gW
    input_backward(grads, g, x, net.ensemble)
    return loss, grads



class MLP(Block):
    name = "mlp"
    families = ("V", "W")
    optional_width_factors = True
    recomputes = True
    laziness = True

    def naive_options(self, net) -> dict:
        return {"width_factors": net.width_factors}
    zero_at_tied = ("V",)
    uses_width = True

    @staticmethod
    def scales(net) -> tuple[float, float]:
        """(s, c): the factors of the inner and outer products (a subclass with other widths overrides it)."""
        return scales(net)

    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        return {"V": (q, m), "W": (m, q)}

    def layer_weights(self, given):
        V, W = given["V"], given["W"]
        R, L, q, m = V.shape
        if W.shape != (R, L, m, q):
            raise invalid("W", f"<shape {tuple(W.shape)}>", f"shape {(R, L, m, q)} to match V {tuple(V.shape)}")
        return {"V": V, "W": W}, q, m

    def forward(self, net, p, h, ws):
        L, R, n = h.shape[0] - 1, h.shape[1], h.shape[2]
        m, act = net.width, net.activation
        V, W = p["V"], p["W"]
        s, c = self.scales(net)
        h0 = h[0]
        if fused_chosen(V, W, act, n):
            a, d = buf(ws, "a", (L, R, n, m), h0), buf(ws, "d", (L, R, n, m), h0)
            _native.mlp_forward(act, V, W, h, a, d, s, c)
            return {"u": None, "a": a, "d": d}
        u = buf(ws, "u", (L, R, n, m), h0)
        a = u if act == "identity" else buf(ws, "a", (L, R, n, m), h0)
        range_forward(act, V, W, h, u, a, s, c)
        return {"u": u, "a": a, "d": None}

    def forward_state(self, net, p, h0):
        R, n = h0.shape[0], h0.shape[1]
        m, act = net.width, net.activation
        V, W = p["V"], p["W"]
        s, c = self.scales(net)
        cur = h0.clone()
        if fused_chosen(V, W, act, n):
            _native.mlp_forward(act, V, W, cur, None, None, s, c, keep=False)
            return cur
        nxt = torch.empty_like(cur)
        ub = torch.empty((R, n, m), dtype=h0.dtype, device=h0.device)
        ab = ub if act == "identity" else torch.empty_like(ub)
        Wt, Vt = W.transpose(2, 3).unbind(0), V.transpose(2, 3).unbind(0)
        for k in range(len(Wt)):
            torch.baddbmm(ub, cur, Wt[k], beta=0.0, alpha=s, out=ub)
            if act != "identity":
                activate(act, ub, ab)
            torch.baddbmm(cur, ab, Vt[k], alpha=c, out=nxt)
            cur, nxt = nxt, cur
        return cur

    def backward(self, net, p, cache, g, ws, *, consume, out):
        V, W = p["V"], p["W"]
        s, c = self.scales(net)
        act = net.activation
        if out is not None:  # the caller keeps these (odecheck.nn): fresh where none was given
            gV = out["V"] if "V" in out else torch.empty_like(V)
            gW = out["W"] if "W" in out else torch.empty_like(W)
        else:
            gV, gW = buf(ws, "gV", tuple(V.shape), V), buf(ws, "gW", tuple(W.shape), W)
        if cache.d is not None:  # the forward ran the fused kernels
            _native.mlp_backward(act, V, W, cache.h, cache.a, cache.d, g, gV, gW, s, c)
        else:
            g = range_backward(act, V, W, cache.h, cache.u, cache.a, g, gV, gW, s, c, ws, consume=consume)
        return {"V": gV, "W": gW}, g

    def vector_field(self, net, w, p64, H):
        L = net.depth
        s, c = self.scales(net)
        u = torch.bmm(H, w["W"].transpose(1, 2)) * s
        scale = L * c
        return scale * torch.bmm(activate(net.activation, u), w["V"].transpose(1, 2))

    @staticmethod
    def naive_update(h, z, *, depth, beta, q, m, activation, delta=None, width_factors=True):
        if not width_factors:
            return depth ** (-beta) * activate(activation, h @ z["W"].T) @ z["V"].T
        pre = h @ z["W"].T / math.sqrt(q)
        return depth ** (-beta) / math.sqrt(m) * activate(activation, pre) @ z["V"].T
