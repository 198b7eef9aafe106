r"""The single-layer block of [C21]: h_{k+1} = h_k + delta_k sigma(W_k h_k + b_k).

W_k: (q, q), b_k: (q,) (stored as a row (1, q) per layer inside the engine). delta_k = alpha_L fixed,
or trained: one scalar per member (``delta="shared"``) or one per layer (``"per_layer"``).

References
----------
[C21] Cohen et al., ICML 2021, eq. (1).
"""

from __future__ import annotations

import torch

from odecheck.core._errors import invalid
from odecheck.engine.activations import activate, activate_backward
from odecheck.engine.blocks import base
from odecheck.engine.blocks.base import Block, buf

PER_LAYER_DELTAS = ("per_layer", "per_layer_gaussian")  # the delta modes with one trained delta_k per layer
SHARED_DELTAS = ("shared", "shared_abs")  # and with one trained delta per network


def _deltas(net, p: dict[str, torch.Tensor]):
    """delta_k of every layer, computed once per pass (not in the per-layer loop): the float alpha_L when
    fixed, else a tensor whose entry k is delta_k as an (R, 1, 1) column."""
    if net.delta_mode == "fixed":
        return base.residual_scale(net.depth, net.beta)
    d = p["delta"]
    if net.delta_mode in PER_LAYER_DELTAS:
        return d[:, :, None, None]  # (L, R, 1, 1)
    d = d.abs() if net.delta_mode == "shared_abs" else d
    return d[None, :, None, None].expand(net.depth, -1, 1, 1)  # one delta for every layer


class Single(Block):
    name = "single"
    families = ("W", "b")
    trained_delta = True
    laziness = True

    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        return {"W": (q, q), "b": (1, q)}

    def layer_weights(self, given):
        W, b = given["W"], given["b"]
        R, L, q = W.shape[0], W.shape[1], W.shape[2]
        if W.shape[3] != q:
            raise invalid("W", f"<shape {tuple(W.shape)}>", "shape (R, L, q, q)")
        if b is None or b.ndim != 3 or b.shape != (R, L, q):
            raise invalid("b", "<missing>" if b is None else f"<shape {tuple(b.shape)}>", f"shape {(R, L, q)}")
        return {"W": W, "b": b[:, :, None, :]}, q, q

    def _step(self, net, p, k, hk, uk, ak, out, deltas):
        act = net.activation
        torch.baddbmm(p["b"][k], hk, p["W"][k].transpose(1, 2), out=uk)
        if act != "identity":
            activate(act, uk, ak)
        dk = deltas if isinstance(deltas, float) else deltas[k]
        if isinstance(dk, float):
            torch.add(hk, ak, alpha=dk, out=out)
        else:
            torch.addcmul(hk, ak, dk, out=out)

    def forward(self, net, p, h, ws):
        L, R, n, q = h.shape[0] - 1, h.shape[1], h.shape[2], h.shape[3]
        u = buf(ws, "u", (L, R, n, q), h[0])
        a = u if net.activation == "identity" else buf(ws, "a", (L, R, n, q), h[0])
        deltas = _deltas(net, p)
        for k in range(L):
            self._step(net, p, k, h[k], u[k], a[k], h[k + 1], deltas)
        return {"u": u, "a": a, "d": None}

    def forward_state(self, net, p, h0):
        cur, nxt = h0.clone(), torch.empty_like(h0)
        ub = torch.empty_like(h0)
        ab = ub if net.activation == "identity" else torch.empty_like(ub)
        deltas = _deltas(net, p)
        for k in range(net.depth):
            self._step(net, p, k, cur, ub, ab, nxt, deltas)
            cur, nxt = nxt, cur
        return cur

    def backward(self, net, p, cache, g, ws, *, consume, out):
        L, act = net.depth, net.activation
        W = p["W"]
        h, u, a = cache.h, cache.u, cache.a
        gW, gb = torch.empty_like(W), torch.empty_like(p["b"])
        gdelta = None
        if net.delta_mode != "fixed":
            gdelta = torch.zeros((L, net.ensemble), dtype=g.dtype, device=g.device)
        deltas = _deltas(net, p)
        for k in range(L - 1, -1, -1):
            dk = deltas if isinstance(deltas, float) else deltas[k]
            if gdelta is not None:
                gdelta[k] = (g * a[k]).sum(dim=(1, 2))
            gu = activate_backward(act, g * dk, u[k], a[k])
            torch.bmm(gu.transpose(1, 2), h[k], out=gW[k])
            torch.sum(gu, dim=1, keepdim=True, out=gb[k])
            g.baddbmm_(gu, W[k])
        grads = {"W": gW, "b": gb}
        if gdelta is not None:
            grads["delta"] = gdelta if net.delta_mode in PER_LAYER_DELTAS else gdelta.sum(0)
            if net.delta_mode == "shared_abs":  # d|delta|/d delta = sign(delta)
                grads["delta"] = grads["delta"] * torch.sign(p["delta"]).to(gdelta.dtype)
        return grads, g

    def vector_field(self, net, w, p64, H):
        if net.delta_mode == "fixed":
            d = base.residual_scale(net.depth, net.beta)
        elif net.delta_mode in SHARED_DELTAS:
            d = p64["delta"][:, None, None]
            d = d.abs() if net.delta_mode == "shared_abs" else d
        else:
            d = w["delta"][:, None, None]
        return net.depth * d * activate(net.activation, torch.baddbmm(w["b"], H, w["W"].transpose(1, 2)))

    @staticmethod
    def naive_update(h, z, *, depth, beta, q, m, activation, delta=None):
        dk = depth ** (-beta) if delta is None else delta
        return dk * activate(activation, h @ z["W"].T + z["b"])
