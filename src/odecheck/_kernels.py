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


def forward(net: ResNet, x: torch.Tensor, *, keep: bool = True, params=None) -> tuple[torch.Tensor, Cache | None]:
    """Network output (R, n, d') and, if ``keep``, the cache needed by :func:`backward`."""
    p = net._p if params is None else params
    L, R, q, m = net.depth, net.ensemble, net.dim, net.width
    act = net.activation
    A, B = p["A"], p["B"]
    h0 = torch.matmul(x, A.transpose(1, 2))  # (R, n, q)
    n = h0.shape[1]
    dt, dev = h0.dtype, h0.device
    if keep:
        h = torch.empty((L + 1, R, n, q), dtype=dt, device=dev)
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
            u = torch.empty((L, R, n, m), dtype=dt, device=dev)
            a = u if act == "identity" else torch.empty_like(u)
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
            u = torch.empty((L, R, n, q), dtype=dt, device=dev)
            a = u if act == "identity" else torch.empty_like(u)
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
            a = torch.empty((L, R, n, q), dtype=dt, device=dev)
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
    if act == "identity":
        out.copy_(u)
    elif act == "tanh":
        torch.tanh(u, out=out)
    elif act == "gelu":
        out.copy_(torch.nn.functional.gelu(u))
    elif act == "relu":
        torch.clamp(u, min=0.0, out=out)
    else:
        out.copy_(activate(act, u))


def backward(net: ResNet, cache: Cache, g_out: torch.Tensor, *, params=None) -> dict[str, torch.Tensor]:
    """Gradients of sum_r l_r given g_out = dl/dF (R, n, d'), in the internal (L, R, ...) layout."""
    p = net._p if params is None else params
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
        gV, gW = torch.empty_like(V), torch.empty_like(W)
        ga = torch.empty_like(u[0])
        for k in range(L - 1, -1, -1):
            torch.baddbmm(gV[k], g.transpose(1, 2), a[k], beta=0.0, alpha=c, out=gV[k])
            torch.baddbmm(ga, g, V[k], beta=0.0, alpha=c, out=ga)
            gu = activate_backward(act, ga, u[k], a[k])
            torch.baddbmm(gW[k], gu.transpose(1, 2), h[k], beta=0.0, alpha=s, out=gW[k])
            g.baddbmm_(gu, W[k], alpha=s)
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


def loss_and_grads(net: ResNet, x: torch.Tensor, y: torch.Tensor, *, params=None):
    """Per-member loss (R,) and the gradients of every parameter (internal layout)."""
    out, cache = forward(net, x, keep=True, params=params)
    loss, g_out = mse(out, y)
    assert cache is not None
    return loss, backward(net, cache, g_out, params=params)
