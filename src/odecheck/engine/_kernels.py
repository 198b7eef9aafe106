r"""The engine: forward and hand-written backward passes over stacked (L, R, ...) weights.

One Python loop over the layers serves the whole ensemble: every layer is a few batched
matrix products (``bmm``/``baddbmm``) over the ensemble axis, written into preallocated
buffers. The block's own pass (``blocks``) runs between h_0 = A x and F = B h_L; the backward
pass is the exact adjoint of the forward recursion, tested against autograd on a naive per-layer
model and with ``gradcheck`` in float64.
"""

from __future__ import annotations

import torch

from odecheck.core._errors import invalid
from odecheck.engine.blocks import get as get_block
from odecheck.engine.blocks.base import Cache, Network, buf, input_backward, output_backward, workspace
from odecheck.engine.blocks.mlp import fused_chosen, loss_and_grads_recompute, path_choice
from odecheck.engine.losses import loss_function, mse


def forward(net: Network, x: torch.Tensor, *, keep: bool = True, params=None, reuse: bool | dict = False
            ) -> tuple[torch.Tensor, Cache | None]:
    """Network output (R, n, d') and, if ``keep``, the cache needed by :func:`backward`.

    ``reuse``: write the cache into buffers kept on ``net`` (overwritten by the next call), or
    into the given workspace dict.
    """
    p = net.params if params is None else params
    block = get_block(net.block)
    h0 = torch.matmul(x, p["A"].transpose(1, 2))  # (R, n, q)
    if not keep:
        hL = block.forward_state(net, p, h0)
        return torch.bmm(hL, p["B"].transpose(1, 2)), None
    ws = workspace(net, reuse)
    L = net.depth
    R, n, q = h0.shape
    h = buf(ws, "h", (L + 1, R, n, q), h0)
    h[0] = h0
    saved = block.forward(net, p, h, ws)
    y = torch.bmm(h[L], p["B"].transpose(1, 2))
    return y, Cache(h=h, u=saved["u"], a=saved["a"], x=x, d=saved["d"])


def backward(net: Network, cache: Cache, g_out: torch.Tensor, *, params=None, reuse: bool | dict = False,
             consume: bool = True, out: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Gradients of sum_r l_r given g_out = dl/dF (R, n, d'), in the internal (L, R, ...) layout.

    ``reuse``: gradients and temporaries live in buffers kept on ``net`` (overwritten by the next
    call), or in the given workspace dict. ``consume=False`` leaves the cache intact (a second
    backward through it gives the same result); ``out``: tensors (engine layout) the block may write
    its weight gradients into (``odecheck.nn`` hands autograd tensors shaped like its parameters).
    """
    p = net.params if params is None else params
    ws = workspace(net, reuse)
    grads, g = output_backward(g_out, cache.h[net.depth], p["B"])
    block_grads, g = get_block(net.block).backward(net, p, cache, g, ws, consume=consume, out=out)
    grads.update(block_grads)
    input_backward(grads, g, cache.x, net.ensemble)
    return grads


def loss_and_grads(net: Network, x: torch.Tensor, y: torch.Tensor, *, params=None, reuse: bool = False,
                   segment: int | None = None, loss: str = "mse"):
    """Per-member loss (R,) and the gradients of every parameter (internal layout).

    ``reuse=True`` keeps the activations and gradients in buffers on ``net``: the returned
    gradients are then overwritten by the next call (the training loops consume them at once).
    ``segment``: mlp block only; store one state per ``segment`` layers and recompute the rest in
    the backward pass (bounded memory at large depth, about one extra forward pass of time).
    """
    if segment is not None:
        if not get_block(net.block).recomputes or params is not None:
            raise invalid("segment", segment, "None unless block='mlp' (recomputation is implemented for mlp)")
        if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
            raise invalid("segment", segment, "a positive integer")
        return loss_and_grads_recompute(net, x, y, segment, reuse, loss=loss)
    fn = loss_function(loss)
    out, cache = forward(net, x, keep=True, params=params, reuse=reuse)
    value, g_out = fn(out, y)
    assert cache is not None
    return value, backward(net, cache, g_out, params=params, reuse=reuse)


__all__ = ["Cache", "GraphedLossAndGrads", "backward", "forward", "fused_chosen", "loss_and_grads", "mse",
           "path_choice"]


class GraphedLossAndGrads:
    """:func:`loss_and_grads` (``reuse=True``) captured once in a CUDA graph and replayed.

    On a GPU the batched path launches a few kernels per layer; at L = 1024 the launches, not the
    arithmetic, set the time. A replay issues the whole captured pass at once. The graph reads the
    weights, ``x`` and ``y`` from the storage they had at capture: update the weights in place
    (the training loops do); a reallocated weight is refused. ``loss`` and ``grads`` are the same
    tensors at every call, overwritten by the next replay.
    """

    def __init__(self, net: Network, x: torch.Tensor, y: torch.Tensor, *, segment: int | None = None,
                 warmup: int = 2, loss: str = "mse"):
        if net.device.type != "cuda":
            raise invalid("device", str(net.device), "a CUDA device (CUDA graphs)")
        dev = net.device
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # allocate every workspace buffer before capture
            for _ in range(max(1, warmup)):
                loss_and_grads(net, x, y, reuse=True, segment=segment, loss=loss)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.grads = loss_and_grads(net, x, y, reuse=True, segment=segment, loss=loss)
        self.net, self.x, self.y = net, x, y
        self._ptrs = {name: t.data_ptr() for name, t in net.params.items()}

    def __call__(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        moved = [n for n, t in self.net.params.items() if t.data_ptr() != self._ptrs[n]]
        if moved:
            raise invalid("net", f"weights {moved} reallocated since capture", "weights updated in place")
        self.graph.replay()
        return self.loss, self.grads
