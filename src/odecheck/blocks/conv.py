r"""The convolutional block of [M24]'s image experiments:
h_{k+1} = h_k + L^-beta conv_V(sigma(conv_W(h_k) / sqrt(9c))) / sqrt(9c), with c channels and 3x3
kernels (padding 1) on c x S x S feature maps.

The state is the flattened map, q = dim = c S^2 with c = width; the kernels W_k, V_k are (c, c, 3, 3)
per layer. The 1/sqrt(9c) factors are the fan-in normalization of N(0, 1) kernels, as 1/sqrt(q)
and 1/sqrt(m) are for the mlp block. An ensemble runs as one grouped convolution (groups = R):
no loop over members. The input map A (q, d) and output map B (d', q) are the engine's dense maps
(a convolution and a pooled classifier are special cases of them).

References
----------
[M24] Marion et al., ICLR 2024, sec. 5 (CIFAR-10 experiments).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from .._errors import invalid
from ..activations import activate, activate_backward
from . import base
from .base import Block, buf


def side(q: int, c: int) -> int:
    """The map side S with q = c S^2, or 0 when there is none."""
    if q % c:
        return 0
    s = math.isqrt(q // c)
    return s if s * s * c == q else 0


class Conv(Block):
    name = "conv"
    families = ("W", "V")
    zero_at_tied = ("V",)
    uses_width = True
    weight_ndim = 6

    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        return {"W": (m, m, 3, 3), "V": (m, m, 3, 3)}

    def check_config(self, net) -> None:
        super().check_config(net)
        if side(net.dim, net.width) == 0:
            raise invalid("dim", net.dim, f"c S^2 for width c = {net.width} channels and an integer side S "
                                          "(block='conv' keeps c x S x S feature maps)")

    def layer_weights(self, given):
        raise invalid("block", "conv", "ResNet(block='conv', dim=c*S*S, width=c, ...) and load_weights_: the "
                                       "kernels do not say the maps' side S, so from_weights cannot build a conv net")

    # -- layout: (R, n, q) states <-> (n, R c, S, S) maps, so that groups = R convolves each member
    @staticmethod
    def _maps(h: torch.Tensor, c: int, s: int) -> torch.Tensor:
        R, n = h.shape[0], h.shape[1]
        return h.reshape(R, n, c, s, s).transpose(0, 1).reshape(n, R * c, s, s)

    @staticmethod
    def _states(y: torch.Tensor, R: int) -> torch.Tensor:
        n = y.shape[0]
        return y.reshape(n, R, -1).transpose(0, 1)

    def _geometry(self, net):
        c = net.width
        return c, side(net.dim, c), 1.0 / math.sqrt(9 * c), base.residual_scale(net.depth, net.beta)

    def _layer(self, net, Wk, Vk, hk, c, s, fan, u=None, a=None):
        """One layer's pre-activation u, activation a (written into ``u``, ``a`` when given) and
        conv_V(a) as states (R, n, q), without the factor fan * alpha."""
        R = hk.shape[0]
        conv = F.conv2d(self._maps(hk, c, s), Wk.reshape(R * c, c, 3, 3), padding=1, groups=R)
        u = torch.mul(conv, fan, out=u) if u is not None else conv.mul_(fan)
        a = activate(net.activation, u, a)
        return u, a, self._states(F.conv2d(a, Vk.reshape(R * c, c, 3, 3), padding=1, groups=R), R)

    def forward(self, net, p, h, ws):
        c, s, fan, alpha = self._geometry(net)
        L, R, n = h.shape[0] - 1, h.shape[1], h.shape[2]
        u_all = buf(ws, "u", (L, n, R * c, s, s), h[0])
        a_all = buf(ws, "a", (L, n, R * c, s, s), h[0])
        for k in range(L):
            y = self._layer(net, p["W"][k], p["V"][k], h[k], c, s, fan, u_all[k], a_all[k])[2]
            torch.add(h[k], y, alpha=fan * alpha, out=h[k + 1])
        return {"u": u_all, "a": a_all, "d": None}

    def forward_state(self, net, p, h0):
        c, s, fan, alpha = self._geometry(net)
        h = h0.clone()
        for k in range(net.depth):
            h.add_(self._layer(net, p["W"][k], p["V"][k], h, c, s, fan)[2], alpha=fan * alpha)
        return h

    def backward(self, net, p, cache, g, ws, *, consume, out):
        c, s, fan, alpha = self._geometry(net)
        W, V = p["W"], p["V"]
        R = W.shape[1]
        gW, gV = torch.empty_like(W), torch.empty_like(V)
        for k in range(net.depth - 1, -1, -1):
            Wk, Vk = W[k].reshape(R * c, c, 3, 3), V[k].reshape(R * c, c, 3, 3)
            gy = self._maps(g, c, s) * (fan * alpha)
            a, u = cache.a[k], cache.u[k]
            gV[k] = conv2d_weight(a, Vk.shape, gy, padding=1, groups=R).reshape(R, c, c, 3, 3)
            gu = activate_backward(net.activation, conv2d_input(a.shape, Vk, gy, padding=1, groups=R), u, a) * fan
            x = self._maps(cache.h[k], c, s)
            gW[k] = conv2d_weight(x, Wk.shape, gu, padding=1, groups=R).reshape(R, c, c, 3, 3)
            g = g + self._states(conv2d_input(x.shape, Wk, gu, padding=1, groups=R), R)
        return {"W": gW, "V": gV}, g

    def vector_field(self, net, w, p64, H):
        c, s, fan, alpha = self._geometry(net)
        return (net.depth * fan * alpha) * self._layer(net, w["W"], w["V"], H, c, s, fan)[2]

    @staticmethod
    def naive_update(h, z, *, depth, beta, q, m, activation, delta=None):
        n = h.shape[0]
        S = math.isqrt(q // m)
        img = h.reshape(n, m, S, S)
        u = F.conv2d(img, z["W"], padding=1) / math.sqrt(9 * m)
        y = F.conv2d(activate(activation, u), z["V"], padding=1) / math.sqrt(9 * m)
        return depth ** (-beta) * y.reshape(n, q)
