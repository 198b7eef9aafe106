r"""The res1 block of [M25]: h_{k+1} = h_k + alpha_L V_k sigma(h_k), V_k: (q, q).

References
----------
[M25] Marion et al., JMLR 2025, eq. (3).
"""

from __future__ import annotations

import torch

from odecheck.core._errors import invalid
from odecheck.engine.activations import activate, activate_backward
from odecheck.engine.blocks import base
from odecheck.engine.blocks.base import Block, buf


class Res1(Block):
    name = "res1"
    laziness = True

    def v_fan_in(self, net) -> float:
        return float(net.dim) ** -0.5  # h + V sigma(h) with N(0, 1) entries: no 1/sqrt(fan-in) of its own
    families = ("V",)

    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        return {"V": (q, q)}

    def layer_weights(self, given):
        V = given["V"]
        q = V.shape[2]
        if V.shape[3] != q:
            raise invalid("V", f"<shape {tuple(V.shape)}>", "shape (R, L, q, q)")
        return {"V": V}, q, q

    def forward(self, net, p, h, ws):
        L, R, n, q = h.shape[0] - 1, h.shape[1], h.shape[2], h.shape[3]
        c = base.residual_scale(net.depth, net.beta)
        a = buf(ws, "a", (L, R, n, q), h[0])
        for k in range(L):
            activate(net.activation, h[k], a[k])
            torch.baddbmm(h[k], a[k], p["V"][k].transpose(1, 2), alpha=c, out=h[k + 1])
        return {"u": None, "a": a, "d": None}

    def forward_state(self, net, p, h0):
        c = base.residual_scale(net.depth, net.beta)
        cur, nxt, ab = h0.clone(), torch.empty_like(h0), torch.empty_like(h0)
        for k in range(net.depth):
            activate(net.activation, cur, ab)
            torch.baddbmm(cur, ab, p["V"][k].transpose(1, 2), alpha=c, out=nxt)
            cur, nxt = nxt, cur
        return cur

    def backward(self, net, p, cache, g, ws, *, consume, out):
        V = p["V"]
        c = base.residual_scale(net.depth, net.beta)
        h, a = cache.h, cache.a
        gV = torch.empty_like(V)
        for k in range(net.depth - 1, -1, -1):
            torch.baddbmm(gV[k], g.transpose(1, 2), a[k], beta=0.0, alpha=c, out=gV[k])
            ga = torch.bmm(g, V[k]) * c
            g.add_(activate_backward(net.activation, ga, h[k], a[k]))
        return {"V": gV}, g

    def vector_field(self, net, w, p64, H):
        scale = net.depth * base.residual_scale(net.depth, net.beta)
        return scale * torch.bmm(activate(net.activation, H), w["V"].transpose(1, 2))

    @staticmethod
    def naive_update(h, z, *, depth, beta, q, m, activation, delta=None):
        return depth ** (-beta) * activate(activation, h) @ z["V"].T
