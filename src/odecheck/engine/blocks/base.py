r"""What every residual block provides, and the pieces of a pass that all blocks share.

A network is h_0 = A x, h_{k+1} = h_k + f(h_k, Z_k) for k = 0..L-1, F(x) = B h_L, evaluated for
R members at once. A :class:`Block` owns f: the shapes of its per-layer weights, its forward and
backward over all layers on the batched path (weights in the engine's (L, R, ...) layout), its
vector field for the neural-ODE limit, its naive per-layer reference for the tests, and the
validation of stacked weights handed to ``ResNet.from_weights``. The engine (``_kernels``) does
the rest: h_0, the output map, the loss and the gradients of A and B.

To add a block: write one module in this package with a subclass of :class:`Block`, and add one
line to ``REGISTRY`` in ``blocks/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch


class Network(Protocol):
    """What the blocks and the engine's kernels read of a network: its configuration and its parameter
    tensors (``params``, the engine's layer-major layout; see ``odecheck.ResNet.params``). ``ResNet`` is
    one; the blocks depend on this interface, not on the model class."""

    block: str
    depth: int
    dim: int
    width: int
    ensemble: int
    activation: str
    beta: float
    delta_mode: str
    width_factors: bool
    device: torch.device

    @property
    def params(self) -> dict[str, torch.Tensor]: ...


@dataclass
class Cache:
    """Saved forward quantities: h (L+1, R, n, q); u, a (L, R, n, width) pre-activations/activations.

    ``d``: sigma'(u) instead of u, when the fused CPU kernels ran the mlp forward."""

    h: torch.Tensor
    u: torch.Tensor | None
    a: torch.Tensor | None
    x: torch.Tensor
    d: torch.Tensor | None = None


def workspace(net: Network, reuse: bool | dict) -> dict:
    """Buffers kept on the network between calls (``reuse``) to avoid re-faulting fresh memory each
    step; ``reuse`` may also be the workspace dict itself (``odecheck.nn`` keeps a pool of them)."""
    if isinstance(reuse, dict):
        return reuse
    if not reuse:
        return {}
    return net.__dict__.setdefault("_ws", {})


def buf(ws: dict, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """The workspace buffer ``key`` of this shape, dtype and device (allocated when missing)."""
    t = ws.get(key)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = torch.empty(shape, dtype=like.dtype, device=like.device)
        ws[key] = t
    return t


def output_backward(g_out: torch.Tensor, hL: torch.Tensor, B: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """dl/dB and dl/dh_L from dl/dF (F = B h_L)."""
    g = torch.bmm(g_out, B)
    return {"B": torch.bmm(g_out.transpose(1, 2), hL), "_hL": g.clone()}, g


def input_backward(grads: dict, g0: torch.Tensor, x: torch.Tensor, R: int) -> None:
    """dl/dA and dl/dh_0 from g0 = dl/dh_0 (h_0 = A x), one A per member."""
    grads["_h0"] = g0
    gA = torch.matmul(g0.transpose(1, 2), x)
    grads["A"] = gA if gA.shape[0] == R else gA.expand(R, *gA.shape[1:]).clone()


def residual_scale(depth: int, beta: float) -> float:
    """alpha_L = L^-beta, from the configuration."""
    return float(depth) ** (-beta)


class Block:
    """One residual block f(h, Z). Subclasses set the class attributes and implement the methods.

    Attributes
    ----------
    name : registry name
    families : names of the per-layer weight families Z_k, in a fixed order
    zero_at_tied : families that the ``tied`` initialization sets to zero
    uses_width : whether the inner width m is a free parameter (else m = q)
    """

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]]
    zero_at_tied: ClassVar[tuple[str, ...]] = ()
    uses_width: ClassVar[bool] = False
    weight_ndim: ClassVar[int] = 4  # of the stacked (R, L, ...) arrays that from_weights takes
    trained_delta: ClassVar[bool] = False  # has the delta modes 'shared' and 'per_layer'
    optional_width_factors: ClassVar[bool] = False  # can run without its 1/sqrt(width) factors
    recomputes: ClassVar[bool] = False  # its backward can recompute stored states segment by segment
    acts_on_vectors: ClassVar[bool] = True  # its branch is a function of a state vector (not of feature maps)
    laziness: ClassVar[bool] = False  # [CP25]'s laziness statistic is written for it (a plain naive update)

    def check_shape(self, dim: int, width: int) -> None:
        """Refuse a state size and width this block cannot hold (the error names ``dim``)."""

    def naive_options(self, net: Network) -> dict:
        """Options of ``naive_update`` beyond the configuration arguments that this network sets."""
        return {}

    def v_fan_in(self, net: Network) -> float:
        """The factor that makes V's entries Var 1/fan-in where the block does not apply 1/sqrt(fan-in) itself."""
        return 1.0

    def conv_io_maps(self, net: Network):
        """The io maps of io_init='conv' (a 3x3 input convolution and a pooled head): conv blocks only."""
        from odecheck.core._errors import invalid

        raise invalid("io_init", "conv", "'identity' or 'gaussian' unless block='conv'")

    # -- shapes and configuration
    def layer_shapes(self, q: int, m: int) -> dict[str, tuple[int, ...]]:
        """Per-layer shape of each family (without the (R, L) axes)."""
        raise NotImplementedError

    def check_config(self, net: Network) -> None:
        """Refuse options this block does not have: a trained delta, or running without width factors."""
        from odecheck.core._errors import invalid

        if net.delta_mode != "fixed" and not self.trained_delta:
            raise invalid("delta", net.delta_mode, f"'fixed' unless block='single' (block={self.name!r})")
        if not net.width_factors and not self.optional_width_factors:
            raise invalid("width_factors", False, f"True unless block='mlp' (block={self.name!r})")
        self.check_shape(net.dim, net.width)

    def layer_weights(self, given: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int, int]:
        """Validate stacked public (R, L, ...) float64 arrays of the families; return them in the
        engine's per-layer shapes with q and m."""
        raise NotImplementedError

    # -- the batched path (engine layout: (L, R, ...))
    def forward(self, net: Network, p: dict, h: torch.Tensor, ws: dict) -> dict[str, torch.Tensor | None]:
        """Fill h[1:] from h[0] (h: (L+1, R, n, q)); return the saved u, a (and d) for the backward."""
        raise NotImplementedError

    def forward_state(self, net: Network, p: dict, h0: torch.Tensor) -> torch.Tensor:
        """h_L from h_0 without storing the layers (evaluation)."""
        raise NotImplementedError

    def backward(self, net: Network, p: dict, cache: Cache, g: torch.Tensor, ws: dict, *, consume: bool,
                 out: dict[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Weight gradients (engine layout) and dl/dh_0 from g = dl/dh_L (may be modified in place).

        ``out``: tensors (engine layout) the block may write its weight gradients into instead of
        its own buffers; the returned dict holds whichever tensors hold the gradients."""
        raise NotImplementedError

    # -- the neural-ODE limit
    def vector_field(self, net: Network, w: dict[str, torch.Tensor], p64: dict[str, torch.Tensor],
                     H: torch.Tensor) -> torch.Tensor:
        """dH/ds at the layer weights ``w`` (each (R, ...), float64) for states H (R, n, q): the
        residual update f(H, Z(s)) times L, so that Euler with step 1/L is the network."""
        raise NotImplementedError

    # -- the independent reference
    @staticmethod
    def naive_update(h: torch.Tensor, z: dict[str, torch.Tensor], *, depth: int, beta: float, q: int, m: int,
                     activation: str, delta: torch.Tensor | float | None = None) -> torch.Tensor:
        """f(h, Z_k) for one member and layer, written plainly (h (n, q); z: this layer's weights,
        public per-layer shapes); every constant computed from the configuration arguments. The
        tests differentiate it by autograd."""
        raise NotImplementedError
