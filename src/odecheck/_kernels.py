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
from dataclasses import dataclass

import torch

from .models import ResNet, activate, activate_backward


@dataclass
class Cache:
    """Saved forward quantities: h (L+1, R, n, q); u, a (L, R, n, m) pre-activations/activations."""

    h: torch.Tensor
    u: torch.Tensor | None
    a: torch.Tensor | None
    x: torch.Tensor


def _delta(net: ResNet, p: dict[str, torch.Tensor], k: int):
    if net.delta_mode == "fixed":
        return net.alpha
    d = p["delta"][k] if net.delta_mode == "per_layer" else p["delta"]
    return d[:, None, None]


def _workspace(net: ResNet, reuse: bool) -> dict:
    """Buffers kept on the network between calls (``reuse``) to avoid re-faulting fresh memory each step."""
    if not reuse:
        return {}
    return net.__dict__.setdefault("_ws", {})


def _buf(ws: dict, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    t = ws.get(key)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = torch.empty(shape, dtype=like.dtype, device=like.device)
        if ws is not None:
            ws[key] = t
    return t


def forward(net: ResNet, x: torch.Tensor, *, keep: bool = True, params=None, reuse: bool = False
            ) -> tuple[torch.Tensor, Cache | None]:
    """Network output (R, n, d') and, if ``keep``, the cache needed by :func:`backward`.

    ``reuse``: write the cache into buffers kept on ``net`` (overwritten by the next call).
    """
    p = net._p if params is None else params
    ws = _workspace(net, reuse and keep)
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
    u = a = None
    if net.block == "mlp":
        V, W = p["V"], p["W"]
        s, c = 1.0 / math.sqrt(q), net.alpha / math.sqrt(m)
        if keep:
            u = _buf(ws, "u", (L, R, n, m), h0)
            a = u if act == "identity" else _buf(ws, "a", (L, R, n, m), h0)
        else:
            ub = torch.empty((R, n, m), dtype=dt, device=dev)
            ab = ub if act == "identity" else torch.empty_like(ub)
        for k in range(L):
            hk = h[k] if keep else cur
            uk = u[k] if keep else ub
            ak = a[k] if keep else ab
            torch.baddbmm(uk, hk, W[k].transpose(1, 2), beta=0.0, alpha=s, out=uk)
            if act != "identity":
                _act_out(act, uk, ak)
            if keep:
                torch.baddbmm(hk, ak, V[k].transpose(1, 2), alpha=c, out=h[k + 1])
            else:
                torch.baddbmm(hk, ak, V[k].transpose(1, 2), alpha=c, out=nxt)
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
                _act_out(act, uk, ak)
            dk = _delta(net, p, k)
            out = h[k + 1] if keep else nxt
            torch.add(hk, ak * dk if not isinstance(dk, float) else ak, alpha=dk if isinstance(dk, float) else 1.0, out=out)
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
            _act_out(act, hk, ak)
            out = h[k + 1] if keep else nxt
            torch.baddbmm(hk, ak, V[k].transpose(1, 2), alpha=c, out=out)
            if not keep:
                cur, nxt = nxt, cur
    hL = h[L] if keep else cur
    y = torch.bmm(hL, B.transpose(1, 2))
    return y, (Cache(h=h, u=u, a=a, x=x) if keep else None)


def _act_out(act: str, u: torch.Tensor, out: torch.Tensor) -> None:
    """out = sigma(u) without a temporary."""
    if act == "identity":
        out.copy_(u)
    elif act == "tanh":
        torch.tanh(u, out=out)
    elif act == "gelu":
        torch._C._nn.gelu(u, out=out)
    elif act == "relu":
        torch.clamp(u, min=0.0, out=out)
    elif act == "softplus":
        torch.ops.aten.softplus.out(u, 1.0, 20.0, out=out)
    else:
        out.copy_(activate(act, u))


def _act_backward_out(act: str, grad: torch.Tensor, u: torch.Tensor, a: torch.Tensor, out: torch.Tensor
                      ) -> torch.Tensor:
    """out = grad * sigma'(u) in one fused pass (``a`` = sigma(u))."""
    if act == "identity":
        return grad
    if act == "gelu":
        return torch.ops.aten.gelu_backward.grad_input(grad, u, grad_input=out)
    if act == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, a, grad_input=out)
    if act == "softplus":
        return torch.ops.aten.softplus_backward.grad_input(grad, u, 1.0, 20.0, grad_input=out)
    if act == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, a, 0.0, grad_input=out)
    return activate_backward(act, grad, u, a)


def backward(net: ResNet, cache: Cache, g_out: torch.Tensor, *, params=None, reuse: bool = False
             ) -> dict[str, torch.Tensor]:
    """Gradients of sum_r l_r given g_out = dl/dF (R, n, d'), in the internal (L, R, ...) layout.

    ``reuse``: gradients live in buffers kept on ``net`` (overwritten by the next call).
    """
    p = net._p if params is None else params
    ws = _workspace(net, reuse)
    L, q, m = net.depth, net.dim, net.width
    act = net.activation
    h, u, a, x = cache.h, cache.u, cache.a, cache.x
    grads: dict[str, torch.Tensor] = {}
    grads["B"] = torch.bmm(g_out.transpose(1, 2), h[L])
    g = torch.bmm(g_out, p["B"])
    grads["_hL"] = g.clone()
    if net.block == "mlp":
        V, W = p["V"], p["W"]
        s, c = 1.0 / math.sqrt(q), net.alpha / math.sqrt(m)
        R, n = g.shape[0], g.shape[1]
        gV, gW = _buf(ws, "gV", tuple(V.shape), V), _buf(ws, "gW", tuple(W.shape), W)
        # G[k] = dl/dh_k for k = 0..L; the sequential sweep only propagates G, and the weight
        # gradients of all layers are then two large batched products over the (L * R) axis.
        G = _buf(ws, "G", (L + 1, R, n, q), g)
        G[L] = g
        ga = torch.empty_like(u[0])
        # dl/du_k overwrites u_k, which is not needed afterwards (unless a is u: identity)
        GU = u if a is not u else _buf(ws, "GU", tuple(u.shape), u)
        for k in range(L - 1, -1, -1):
            if a is u:
                torch.baddbmm(GU[k], G[k + 1], V[k], beta=0.0, alpha=c, out=GU[k])
            else:
                torch.baddbmm(ga, G[k + 1], V[k], beta=0.0, alpha=c, out=ga)
                _act_backward_out(act, ga, u[k], a[k], GU[k])
            torch.baddbmm(G[k + 1], GU[k], W[k], alpha=s, out=G[k])
        LR = L * R
        torch.baddbmm(gV.view(LR, q, m), G[1:].reshape(LR, n, q).transpose(1, 2), a.reshape(LR, n, m),
                      beta=0.0, alpha=c, out=gV.view(LR, q, m))
        torch.baddbmm(gW.view(LR, m, q), GU.reshape(LR, n, m).transpose(1, 2), h[:L].reshape(LR, n, q),
                      beta=0.0, alpha=s, out=gW.view(LR, m, q))
        g = G[0]
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
    grads["_h0"] = g
    grads["A"] = torch.matmul(g.transpose(1, 2), x)
    if grads["A"].shape[0] != net.ensemble:
        grads["A"] = grads["A"].expand(net.ensemble, *grads["A"].shape[1:]).clone()
    return grads


def mse(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss l_r = (1/n) sum_i ||F(x_i) - y_i||^2 per member (R,) and dl/dF (R, n, d')."""
    n = out.shape[1]
    diff = out - y
    loss = (diff * diff).sum(dim=(1, 2)) / n
    return loss, diff * (2.0 / n)


def loss_and_grads(net: ResNet, x: torch.Tensor, y: torch.Tensor, *, params=None, reuse: bool = False):
    """Per-member loss (R,) and the gradients of every parameter (internal layout).

    ``reuse=True`` keeps the activations and gradients in buffers on ``net``: the returned
    gradients are then overwritten by the next call (the training loops consume them at once).
    """
    out, cache = forward(net, x, keep=True, params=params, reuse=reuse)
    loss, g_out = mse(out, y)
    assert cache is not None
    return loss, backward(net, cache, g_out, params=params, reuse=reuse)
