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

import functools
import math

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from odecheck.core._errors import invalid
from odecheck.engine.activations import activate, activate_backward
from odecheck.engine.blocks import base
from odecheck.engine.blocks.base import Block, buf
from odecheck.engine.init import member_generator


def side(q: int, c: int) -> int:
    """The map side S with q = c S^2, or 0 when there is none."""
    if q % c:
        return 0
    s = math.isqrt(q // c)
    return s if s * s * c == q else 0


DENSE_MAX_Q = 64  # maps of c S^2 <= 64 entries run as dense (q x q) matrices: bmm instead of tiny convolutions


@functools.lru_cache(maxsize=32)
def kernel_positions(c: int, s: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Where each kernel entry sits in the dense matrix M of the convolution (padding 1) on c x S x S maps:
    ``rows`` index the flattened kernel (c_out, c_in, 3, 3), ``cols`` the flattened M (q_out, q_in), q = c S^2,
    so that M.flat[cols] = K.flat[rows]. Each entry of M holds at most one kernel entry (the offset of an
    input pixel from an output pixel fixes it): M is exactly the kernel's entries, nothing summed. On
    ``device`` (index_add_ needs its index where its tensor is)."""
    rows, cols = [], []
    q = c * s * s
    for o in range(c):
        for i in range(c):
            for a in range(3):
                for b in range(3):
                    for y in range(s):
                        for x in range(s):
                            yy, xx = y + a - 1, x + b - 1
                            if 0 <= yy < s and 0 <= xx < s:
                                rows.append(((o * c + i) * 3 + a) * 3 + b)
                                cols.append((o * s * s + y * s + x) * q + i * s * s + yy * s + xx)
    return torch.tensor(rows, device=device), torch.tensor(cols, device=device)


class Conv(Block):
    name = "conv"
    families = ("W", "V")
    zero_at_tied = ("V",)
    uses_width = True
    weight_ndim = 6

    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        return {"W": (m, m, 3, 3), "V": (m, m, 3, 3)}

    acts_on_vectors = False

    def check_shape(self, dim: int, width: int) -> None:
        if side(dim, width) == 0:
            raise invalid("dim", dim, f"c S^2 for width c = {width} channels and an integer side S "
                                      "(block='conv' keeps c x S x S feature maps)")

    def conv_io_maps(self, net):
        return conv_io_maps(net)

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

    @staticmethod
    def _dense(net) -> bool:
        """Whether this network's maps run as dense (q x q) matrices (q <= DENSE_MAX_Q). Each layer's matrices
        are built where they are used, in the forward and again in the backward: building every layer's at
        once was faster at q = 16 (3.4 against 5.5 ms a step) and slower at q = 64 (15.2 against 12.6 ms), the
        matrices no longer in cache (docs/performance.md)."""
        return net.dim <= DENSE_MAX_Q

    @staticmethod
    def _matrix(K: torch.Tensor, c: int, s: int) -> torch.Tensor:
        """(R, c, c, 3, 3) kernels -> (R, q, q) dense matrices of their convolutions (exact: entries copied)."""
        rows, cols = kernel_positions(c, s, str(K.device))
        q, R = c * s * s, K.shape[0]
        M = K.new_zeros(R, q * q)
        M[:, cols] = K.reshape(R, c * c * 9)[:, rows]
        return M.reshape(R, q, q)

    @staticmethod
    def _kernel_grad(gM: torch.Tensor, c: int, s: int) -> torch.Tensor:
        """The adjoint of ``_matrix``: (R, q, q) gradients of M -> (R, c, c, 3, 3), each kernel entry the sum
        over the pixels where it sits."""
        rows, cols = kernel_positions(c, s, str(gM.device))
        gK = gM.new_zeros(gM.shape[0], c * c * 9)
        gK.index_add_(1, rows, gM.reshape(gM.shape[0], -1)[:, cols])
        return gK.reshape(-1, c, c, 3, 3)

    def _layer(self, net, Wk, Vk, hk, c, s, fan, u=None, a=None):
        """One layer's pre-activation u, activation a (written into ``u``, ``a`` when given) and
        conv_V(a) as states (R, n, q), without the factor fan * alpha. Small maps (q <= DENSE_MAX_Q) keep
        u and a as states (R, n, q) and multiply by the dense matrices; others as maps (n, R c, S, S)."""
        R = hk.shape[0]
        if self._dense(net):
            conv = torch.bmm(hk, self._matrix(Wk, c, s).transpose(1, 2), out=u)
            u = conv.mul_(fan)
            a = activate(net.activation, u, a)
            return u, a, torch.bmm(a, self._matrix(Vk, c, s).transpose(1, 2))
        conv = F.conv2d(self._maps(hk, c, s), Wk.reshape(R * c, c, 3, 3), padding=1, groups=R)
        u = torch.mul(conv, fan, out=u) if u is not None else conv.mul_(fan)
        a = activate(net.activation, u, a)
        return u, a, self._states(F.conv2d(a, Vk.reshape(R * c, c, 3, 3), padding=1, groups=R), R)

    def forward(self, net, p, h, ws):
        c, s, fan, alpha = self._geometry(net)
        L, R, n = h.shape[0] - 1, h.shape[1], h.shape[2]
        shape = (L, R, n, net.dim) if self._dense(net) else (L, n, R * c, s, s)
        u_all, a_all = buf(ws, "u", shape, h[0]), buf(ws, "a", shape, h[0])
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
        if self._dense(net):
            return self._dense_backward(net, p, cache, g)
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

    def _dense_backward(self, net, p, cache, g):
        """The backward pass on small maps: the dense matrices' gradients, folded back onto the kernels."""
        c, s, fan, alpha = self._geometry(net)
        W, V = p["W"], p["V"]
        gW, gV = torch.empty_like(W), torch.empty_like(V)
        for k in range(net.depth - 1, -1, -1):
            gy = g * (fan * alpha)  # (R, n, q)
            a, u = cache.a[k], cache.u[k]
            gV[k] = self._kernel_grad(torch.bmm(gy.transpose(1, 2), a), c, s)
            gu = activate_backward(net.activation, torch.bmm(gy, self._matrix(V[k], c, s)), u, a) * fan
            gW[k] = self._kernel_grad(torch.bmm(gu.transpose(1, 2), cache.h[k]), c, s)
            g = g + torch.bmm(gu, self._matrix(W[k], c, s))
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


# -- the conv io maps (io_init='conv'): a 3x3 input convolution and a pooled head, held as dense A and B
def conv_io_maps(net) -> tuple[torch.Tensor, torch.Tensor]:
    """A: the matrix of a 3x3 convolution from C image channels to c channels on S x S maps;
    B: channel averages over the map, then a Gaussian (d', c) map. Both as dense (R, ., .)."""
    c, R, d, dp = net.width, net.ensemble, net.input_dim, net.output_dim
    S = side(net.dim, c)
    if d % (S * S):
        raise invalid("input_dim", d, f"C S^2 image inputs with S = {S} (the maps' side) for io_init='conv'")
    C = d // (S * S)
    kernels = torch.empty(R, c, C, 3, 3, dtype=torch.float64)
    heads = torch.empty(R, dp, c, dtype=torch.float64)
    for r in range(R):
        g = member_generator(net.seed + 7919, r)
        kernels[r] = torch.randn(c, C, 3, 3, generator=g, dtype=torch.float64) / math.sqrt(9 * C)
        heads[r] = torch.randn(dp, c, generator=g, dtype=torch.float64) / math.sqrt(c)
    A = torch.empty(R, net.dim, d, dtype=torch.float64)
    B = torch.empty(R, dp, net.dim, dtype=torch.float64)
    conv_io_dense(net, kernels, heads, A, B)
    return A, B


def conv_io_dense(net, kernels, heads, A, B) -> None:
    """Write the dense maps of conv kernels (R, c, C, 3, 3) and pooled heads (R, d', c) into A
    (R, q, d) and B (R, d', q): A's column j is the convolution of basis image j; B puts w / S^2 on
    every position of a channel (the average over the S x S map, then the head)."""
    R, c, C = kernels.shape[:3]
    S = side(net.dim, c)
    d = C * S * S
    eye = torch.eye(d, dtype=A.dtype, device=A.device).reshape(d, C, S, S)  # basis images
    for r in range(R):
        A[r] = F.conv2d(eye, kernels[r], padding=1).reshape(d, net.dim).T
    B.copy_((heads[..., None] / (S * S)).expand(R, heads.shape[1], c, S * S).reshape(R, -1, net.dim))


def conv_io_directions(net, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    r"""The conv io maps' training directions, in place: for ``io_init="conv"``, the dense
    gradients G_A, G_B (internal layout (R, q, d), (R, d', q)) become E E^T G, E the linear map
    from the structured parameters (the 3x3 kernel k, the head w) to the dense matrices A = E(k),
    B = E(w). E^T G is the parameters' own gradient (chain rule), so a step -lr E E^T G on A is the
    step -lr E^T G on k: plain, momentum and weight-decay SGD and gradient flow train k and w
    exactly; so does Adam, which acts entry by entry on E's copies of each parameter, with the
    copies' scale :func:`conv_io_scale` (tests/test_classification.py checks all three against
    torch.optim on the kernel and the head). Returns ``grads``."""
    c, d, dp, R = net.width, net.input_dim, net.output_dim, net.ensemble
    S = side(net.dim, c)
    C = d // (S * S)
    G = grads["A"].reshape(R, c, S, S, C, S, S)  # (member, out channel, y, x, in channel, y', x')
    k = torch.empty(R, c, C, 3, 3, dtype=G.dtype, device=G.device)
    for a in range(3):  # tap (a, b) couples output (y, x) to input (y + a - 1, x + b - 1)
        rows = torch.diagonal(G, offset=a - 1, dim1=2, dim2=5)          # (R, c, x, C, x', n_y)
        for b in range(3):
            taps = torch.diagonal(rows, offset=b - 1, dim1=2, dim2=4)  # (R, c, C, n_y, n_x)
            k[:, :, :, a, b] = taps.sum((-2, -1))
    w = grads["B"].reshape(R, dp, c, S * S).sum(-1) / (S * S)  # the head's gradient
    conv_io_dense(net, k, w, grads["A"], grads["B"])
    return grads


def conv_io_scale(net) -> float:
    """The factor 1/S^2 with which each parameter of the conv head enters its dense map B (B averages each
    channel over the S x S map); the kernel enters A with factor 1. Adam, scale-free per entry, needs it
    to step the parameter rather than its copies."""
    return 1.0 / side(net.dim, net.width) ** 2
