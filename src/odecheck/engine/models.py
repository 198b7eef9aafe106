r"""Ensembles of deep residual networks with stacked weights.

Blocks (state h in R^q, k = 0..L-1, alpha_L = L^-beta):

- ``mlp``    h_{k+1} = h_k + alpha_L m^{-1/2} V_k sigma(q^{-1/2} W_k h_k)        [M24]
- ``single`` h_{k+1} = h_k + delta_k sigma(W_k h_k + b_k)                         [C21]
- ``res1``   h_{k+1} = h_k + alpha_L V_k sigma(h_k)                               [M25]

with h_0 = A x and F(x) = B h_L. Every weight family is one tensor with leading axes
(R, L): R ensemble members, L layers. Internally the layer axis comes first so that one
pass over the layers serves the whole ensemble with batched matrix products.

References
----------
[M24] Marion et al., ICLR 2024.  [C21] Cohen et al., ICML 2021.  [M25] Marion et al., JMLR 2025.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from dataclasses import fields as fields_of
from typing import Literal, get_args

import numpy as np
import torch

from odecheck.core import layout
from odecheck.core._errors import InvalidArgument, invalid
from odecheck.core.validation import as_tensor, check_choice, check_dtype, check_float, check_int, resolve_device
from odecheck.engine import _kernels, blocks
from odecheck.engine.activations import ACTIVATIONS, SMOOTH_ACTIVATIONS, Activation, activate, activate_backward
from odecheck.engine.blocks.single import PER_LAYER_DELTAS, SHARED_DELTAS
from odecheck.engine.init import Init, as_init, member_generator, sample_stack

Block = Literal["mlp", "single", "res1", "conv", "meanfield"]
DeltaMode = Literal["fixed", "shared", "per_layer", "shared_abs", "per_layer_gaussian"]
IOInit = Literal["identity", "gaussian", "conv"]
BLOCKS: tuple[str, ...] = tuple(blocks.REGISTRY)

# per-layer weight families of each block, in a fixed order (from the block classes)
LAYER_FAMILIES: dict[str, tuple[str, ...]] = {name: cls.families for name, cls in blocks.REGISTRY.items()}


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """The structure of an ensemble, each field checked where it is declared (the error names the field):
    block, depth L, state dim q, inner width m (default q; blocks without one use q), input and output
    dims d, d' (default q), activation, beta (alpha_L = L^-beta), train_io, delta mode, ensemble size R,
    dtype, device, width_factors. ``ResNet(architecture, init=..., ...)`` or ``ResNet(**fields, init=...)``."""

    block: Block = "mlp"
    depth: int
    dim: int
    width: int | None = None
    input_dim: int | None = None
    output_dim: int | None = None
    activation: Activation = "gelu"
    beta: float = 1.0
    train_io: bool = False
    delta: DeltaMode = "fixed"
    ensemble: int = 1
    dtype: torch.dtype | str = torch.float32
    device: torch.device | str = "cpu"
    width_factors: bool = True

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)
        check_choice("block", self.block, BLOCKS)
        impl = blocks.get(self.block)
        check_int("depth", self.depth, 1)
        check_int("dim", self.dim, 1)
        put("width", check_int("width", self.width if self.width is not None else self.dim, 1) if impl.uses_width
            else self.dim)
        put("input_dim", check_int("input_dim", self.input_dim if self.input_dim is not None else self.dim, 1))
        put("output_dim", check_int("output_dim", self.output_dim if self.output_dim is not None else self.dim, 1))
        check_choice("activation", self.activation, ACTIVATIONS)
        b = self.beta
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
            raise invalid("beta", b, "a finite float >= 0")
        put("beta", float(b))
        if not isinstance(self.train_io, bool):
            raise invalid("train_io", self.train_io, "a bool")
        check_choice("delta", self.delta, get_args(DeltaMode))
        if not isinstance(self.width_factors, bool):
            raise invalid("width_factors", self.width_factors, "a bool")
        impl.check_config(self)
        check_int("ensemble", self.ensemble, 1)
        put("dtype", check_dtype(self.dtype))
        put("device", resolve_device(self.device))

    @property
    def delta_mode(self) -> str:
        return self.delta


@dataclass(frozen=True)
class _Given:
    """Weights handed to :meth:`ResNet.from_weights` (engine layout), passed as the ``init`` of the one
    constructor; ``io_init`` is "given" when A or B came with them, else "identity"."""

    params: dict[str, torch.Tensor]
    io_init: str


# ----------------------------------------------------------------------------- the model
class ResNet:
    r"""An ensemble of R residual networks of depth L, trained and evaluated together.

    Parameters
    ----------
    architecture : Architecture, optional
        The structure below as one record (positional); its fields may also be given as keywords
        (``ResNet(block="mlp", depth=64, dim=16)``), or both (keywords replace the record's fields).
    block : {"mlp", "single", "res1", "conv", "meanfield"}
    depth : int
        Number of residual blocks L >= 1.
    dim : int
        State dimension q.
    width : int
        Inner width m of the mlp block (ignored by the other blocks).
    input_dim, output_dim : int
        d and d' (default q).
    activation : {"identity", "tanh", "gelu", "softplus", "relu"}
    beta : float
        Residual scaling alpha_L = L^-beta, beta >= 0 (1: neural ODE, 1/2: SDE).
    init : Init or str
        Block-weight initialization, e.g. "tied", "iid", "smooth(0.1)", "fbm(0.7)".
    io_init : {"identity", "gaussian", "conv"}
        A = (I; 0) and B = (0, I), or Gaussian with variance 1/d and 1/q; "conv" (block="conv"): A is a
        3x3 convolution (padding 1) from the input's image channels (input_dim = C S^2) to the c
        channels, B averages each channel over the S x S map and maps the c averages to the outputs
        (Gaussian kernel and map, variances 1/(9 C) and 1/c).
    train_io : bool
        Whether A and B are trained. With ``io_init="conv"`` they are trained as what they are, a
        3x3 kernel and a (d', c) head: every optimizer steps along :meth:`io_directions` of the
        dense gradients, which is exactly training the kernel and the head, so A stays a
        convolution and B a pooled head.
    delta : {"fixed", "shared", "per_layer", "shared_abs", "per_layer_gaussian"}
        ``single`` block only: delta_k = alpha_L fixed, or trained (one scalar, or one per layer, both
        initialised to alpha_L). [C21]'s code: ``shared_abs`` (one scalar used as |delta|, initialised to
        alpha_L) and ``per_layer_gaussian`` (delta_k ~ N(0, alpha_L^2), used with its sign).
    bias : bool
        ``single`` block only: False keeps b_k = 0 and untrained.
    ensemble : int
        Ensemble size R; member r is drawn from seed stream (seed, r).
    seed : int
    dtype : torch.float32 or torch.float64
    device : "cpu", "cuda", "auto" or torch.device

    Attributes
    ----------
    weights : dict of (R, L, ...) views of the per-layer weights, plus A (R, q, d), B (R, d', q)
    """

    def __init__(self, architecture: Architecture | None = None, /, *, init: Init | str = "tied",
                 io_init: IOInit = "identity", bias: bool = True, seed: int = 0, **fields) -> None:
        arch = Architecture(**fields) if architecture is None else replace(architecture, **fields)
        for f in fields_of(Architecture):  # the structure as the network's own attributes
            if f.name != "delta":
                setattr(self, f.name, getattr(arch, f.name))
        self.delta_mode = arch.delta
        if isinstance(init, _Given):  # from_weights: the weights are handed in, not drawn
            self.bias, self.init, self.seed, self.io_init = True, None, 0, init.io_init
            params = dict(init.params)
        else:
            params = self._drawn(init=init, bias=bias, seed=seed, io_init=io_init)
        self._p = {k: v.to(dtype=self.dtype, device=self.device).contiguous() for k, v in params.items()}

    def _drawn(self, *, init, bias, seed, io_init) -> dict[str, torch.Tensor]:
        """The initial weights (engine layout, float64) drawn from ``init`` with ``seed``."""
        if not isinstance(bias, bool):
            raise invalid("bias", bias, "a bool")
        self.bias = bias
        self.init = as_init(init)
        self.seed = check_int("seed", seed, 0)
        check_choice("io_init", io_init, get_args(IOInit))
        self.io_init = io_init
        impl = blocks.get(self.block)
        stacks = sample_stack(
            self.init, impl.layer_shapes(self.dim, self.width), depth=self.depth, ensemble=self.ensemble,
            seed=self.seed, zero_at_tied=impl.zero_at_tied,
        )
        params: dict[str, torch.Tensor] = {k: v.transpose(0, 1) for k, v in stacks.items()}
        if "b" in params and not bias:
            params["b"] = torch.zeros_like(params["b"])
        if self.delta_mode == "per_layer":
            params["delta"] = torch.full((self.depth, self.ensemble), self.alpha, dtype=torch.float64)
        elif self.delta_mode == "per_layer_gaussian":  # [C21]'s `multi`: delta_k ~ N(0, alpha_L^2), own stream
            params["delta"] = torch.stack([torch.randn(self.depth, generator=member_generator(self.seed, 20_000 + r),
                                                       dtype=torch.float64) for r in range(self.ensemble)], 1) * self.alpha
        elif self.delta_mode in SHARED_DELTAS:
            params["delta"] = torch.full((self.ensemble,), self.alpha, dtype=torch.float64)
        params["A"], params["B"] = self._io_maps(io_init)
        return params

    def io_directions(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r"""The io maps' training directions, in place: for ``io_init="conv"`` (trained), the dense gradients
        of A and B become those of the structured kernel and head (``blocks.conv.conv_io_directions``);
        other io maps: ``grads`` unchanged. Returns ``grads``."""
        if self.io_init != "conv" or not self.train_io or not ("A" in grads and "B" in grads):
            return grads
        from odecheck.engine.blocks.conv import conv_io_directions

        return conv_io_directions(self, grads)

    def io_scale(self, name: str) -> float:
        """The factor s with which a structured io parameter enters its dense map: 1/S^2 for the trained conv
        head (``blocks.conv.conv_io_scale``), 1 for every other parameter. Adam, scale-free per entry, needs it
        to step the parameter rather than its copies."""
        if self.io_init != "conv" or not self.train_io or name != "B":
            return 1.0
        from odecheck.engine.blocks.conv import conv_io_scale

        return conv_io_scale(self)

    def _io_maps(self, io_init: str) -> tuple[torch.Tensor, torch.Tensor]:
        q, d, dp, R = self.dim, self.input_dim, self.output_dim, self.ensemble
        if io_init == "identity":
            if q < max(d, dp):
                raise invalid("dim", q, f"q >= max(input_dim, output_dim) = {max(d, dp)} for io_init='identity'")
            A = torch.zeros(R, q, d, dtype=torch.float64)
            A[:, :d, :] = torch.eye(d, dtype=torch.float64)
            B = torch.zeros(R, dp, q, dtype=torch.float64)
            B[:, :, q - dp:] = torch.eye(dp, dtype=torch.float64)
            return A, B
        if io_init == "conv":
            from odecheck.engine.blocks import get as get_block

            return get_block(self.block).conv_io_maps(self)
        A = torch.empty(R, q, d, dtype=torch.float64)
        B = torch.empty(R, dp, q, dtype=torch.float64)
        for r in range(R):
            g = member_generator(self.seed + 7919, r)
            A[r] = torch.randn(q, d, generator=g, dtype=torch.float64) / math.sqrt(d)
            B[r] = torch.randn(dp, q, generator=g, dtype=torch.float64) / math.sqrt(q)
        return A, B

    @classmethod
    def from_weights(cls, *, V=None, W=None, b=None, delta=None, A=None, B=None, block: Block = "mlp", dtype=None,
                     **fields) -> ResNet:
        """Build an ensemble from stacked weights.

        Shapes: mlp V (R, L, q, m), W (R, L, m, q); single W (R, L, q, q), b (R, L, q),
        delta None (fixed alpha_L), (R,) shared or (R, L) per layer; res1 V (R, L, q, q).
        A (R, q, d) or (1, q, d), default identity (d = q); B (R, d', q) or (1, d', q),
        default identity (d' = q). Arrays are copied. ``dtype``: default the arrays' (float32 or float64);
        ``fields``: the other :class:`Architecture` fields (activation, beta, train_io, device,
        width_factors); depth, dims, ensemble and delta mode come from the arrays.
        """
        check_choice("block", block, BLOCKS)
        given = {"V": V, "W": W, "b": b}
        fams = LAYER_FAMILIES[block]
        for name, val in given.items():
            if name in fams and val is None:
                raise invalid(name, None, f"a stacked (R, L, ...) array for block={block!r}")
            if name not in fams and val is not None:
                raise invalid(name, "<array>", f"None: block={block!r} has no {name}")
        nd = blocks.get(block).weight_ndim
        first = as_tensor(fams[0], given[fams[0]], ndim=(nd,))
        dtype = check_dtype(dtype) if dtype is not None else (
            first.dtype if first.dtype in (torch.float32, torch.float64) else torch.float32)
        R, L = first.shape[:2]
        arrays = {name: as_tensor(name, given[name], ndim=(3,) if name == "b" else (nd,), dtype=torch.float64)
                  for name in fams}
        layer, q, m = blocks.get(block).layer_weights(arrays)
        mode = "fixed"
        delta_t = None
        if delta is not None:  # whether the block has a trained delta: its check_config, in Architecture
            delta_t = as_tensor("delta", delta, ndim=(1, 2), dtype=torch.float64)
            if delta_t.shape == (R,):
                mode = "shared"
            elif delta_t.shape == (R, L):
                mode, delta_t = "per_layer", delta_t.T
            else:
                raise invalid("delta", f"<shape {tuple(delta_t.shape)}>", f"shape ({R},) or ({R}, {L})")
        At = _io_tensor("A", A, R, q, default=q)
        d = At.shape[2]
        Bt = _io_tensor("B", B, R, q, default=q, output=True)
        dp = Bt.shape[1]
        params = {k: v.transpose(0, 1) for k, v in layer.items()}
        if delta_t is not None:
            params["delta"] = delta_t
        params["A"], params["B"] = At, Bt
        given = _Given(params, "given" if (A is not None or B is not None) else "identity")
        return cls(block=block, depth=L, dim=q, width=m, input_dim=d, output_dim=dp, delta=mode, ensemble=R,
                   dtype=dtype, init=given, **fields)

    # -- properties
    @property
    def alpha(self) -> float:
        """Residual scaling alpha_L = L^-beta (the engine's own: ``blocks.base.residual_scale``)."""
        return blocks.base.residual_scale(self.depth, self.beta)

    @property
    def layer_families(self) -> tuple[str, ...]:
        """Names of the per-layer weight families Z_k (plus 'delta' if trained per layer)."""
        fams = tuple(f for f in LAYER_FAMILIES[self.block] if f != "b" or getattr(self, "bias", True))
        return fams + (("delta",) if self.delta_mode in PER_LAYER_DELTAS else ())

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names of the trained parameters."""
        names = [f for f in LAYER_FAMILIES[self.block] if f != "b" or getattr(self, "bias", True)]
        if self.delta_mode != "fixed":
            names.append("delta")
        if self.train_io:
            names += ["A", "B"]
        return tuple(names)

    @property
    def layered(self) -> tuple[str, ...]:
        """Names of the parameters with a layer axis (all of the block's families, and delta when
        trained per layer), whether trained or not."""
        return LAYER_FAMILIES[self.block] + (("delta",) if self.delta_mode in PER_LAYER_DELTAS else ())

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """The engine's parameter tensors themselves (no copies), the interface optimizers and kernels work
        on: per-layer families layer-major (L, R, ...) (the ``single`` block's bias (L, R, 1, q)), A (R, q, d),
        B (R, d', q), a shared delta (R,) (``odecheck.layout`` converts to and from the public (R, L, ...)
        views of :attr:`weights`). Update them in place (``sub_``, ``copy_``); the dict itself is the
        network's, so do not add or replace entries. Gradients from the engine come in this layout."""
        return self._p

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """Views (no copies) of every weight: per-layer families as (R, L, ...), A, B, delta."""
        return {k: layout.to_public(k, v, self.layered) for k, v in self._p.items()}

    def public(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Engine-layout tensors named like the parameters (gradients, say) as public (R, L, ...) views."""
        return {k: layout.to_public(k, v, self.layered) for k, v in tensors.items() if k in self._p}

    def _checked_internal(self, arg: str, name: str, value) -> torch.Tensor:
        if name not in self._p:
            raise invalid(arg, name, f"parameter names among {', '.join(self._p)}")
        want = tuple(self.weights[name].shape)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != want:
            got = f"<shape {tuple(value.shape)}>" if isinstance(value, torch.Tensor) else type(value).__name__
            raise invalid(f"{arg}[{name!r}]", got, f"a tensor of shape {want}")
        return layout.to_internal(name, value, self.layered)

    def update_(self, grads: dict[str, torch.Tensor], lr: float, *, flow: bool = False) -> ResNet:
        r"""Gradient step in place: w <- w - lr * g for every named tensor of ``grads`` (public
        layout, as :func:`odecheck.loss_and_grads` returns). ``flow=True`` multiplies the per-layer
        families by L, the factor of the gradient flow of [M24] (dZ_k/dt = -L dl/dZ_k): one Euler
        step of :func:`odecheck.gradient_flow`. Returns ``self``."""
        lr = check_float("lr", lr)
        if not isinstance(grads, dict):
            raise invalid("grads", type(grads).__name__, "a dict of tensors named like the parameters")
        staged = {name: self._checked_internal("grads", name, g) for name, g in grads.items()}
        for name, g in staged.items():  # all validated before any weight moves
            factor = float(self.depth) if (flow and name in self.layered) else 1.0
            self._p[name].sub_(g.to(dtype=self.dtype, device=self.device), alpha=lr * factor)
        return self

    def load_weights_(self, weights: dict[str, torch.Tensor]) -> ResNet:
        """Copy weights (public layout, e.g. another network's :attr:`weights`) into this network in
        place, keeping its storage. Every name must be a parameter with the same shape. Returns ``self``."""
        if not isinstance(weights, dict):
            raise invalid("weights", type(weights).__name__, "a dict of tensors named like the parameters")
        staged = {name: self._checked_internal("weights", name, w) for name, w in weights.items()}
        for name, w in staged.items():
            self._p[name].copy_(w)
        return self

    def config(self) -> dict:
        """The constructor's keyword arguments (JSON/TOML-friendly)."""
        return {
            "block": self.block, "depth": self.depth, "dim": self.dim, "width": self.width,
            "input_dim": self.input_dim, "output_dim": self.output_dim, "activation": self.activation,
            "beta": self.beta, "init": "given" if self.init is None else str(self.init), "io_init": self.io_init, "train_io": self.train_io,
            "delta": self.delta_mode, "bias": self.bias, "ensemble": self.ensemble, "seed": self.seed,
            "dtype": str(self.dtype).replace("torch.", ""), "device": str(self.device),
            "width_factors": self.width_factors,
        }

    def __repr__(self) -> str:
        c = self.config()
        return "ResNet(" + ", ".join(f"{k}={v!r}" for k, v in c.items()) + ")"

    # -- copies
    def _with_params(self, params: dict[str, torch.Tensor], ensemble: int) -> ResNet:
        net = copy.copy(self)  # the configuration; not the workspace, which is per network
        net.__dict__.pop("_ws", None)
        net.ensemble = ensemble
        net._p = params
        return net

    def clone(self) -> ResNet:
        """A deep copy."""
        return self._with_params({k: v.clone() for k, v in self._p.items()}, self.ensemble)

    def select(self, members) -> ResNet:
        """A new ensemble made of copies of the given members (int or sequence of ints)."""
        idx = [members] if isinstance(members, (int, np.integer)) else list(members)
        for i in idx:
            if not (0 <= int(i) < self.ensemble):
                raise invalid("members", i, f"indices in [0, {self.ensemble})")
        it = torch.tensor(idx, dtype=torch.long, device=self.device)
        params = {}
        for k, v in self._p.items():
            params[k] = v.index_select(layout.member_axis(k, self.layered), it).contiguous()
        return self._with_params(params, len(idx))

    def to(self, *, dtype=None, device=None) -> ResNet:
        """A copy in another dtype and/or on another device."""
        net = self.clone()
        if dtype is not None:
            net.dtype = check_dtype(dtype)
        if device is not None:
            net.device = resolve_device(device)
        net._p = {k: v.to(dtype=net.dtype, device=net.device) for k, v in net._p.items()}
        return net

    def numpy_weights(self) -> dict[str, np.ndarray]:
        """Every weight as a numpy array, per-layer families (R, L, ...)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.weights.items()}

    # -- evaluation
    def prepare_input(self, x) -> torch.Tensor:
        """``x`` as this network's input tensor (n, d) or (R, n, d) in its dtype and device, its shape checked
        (the last axis input_dim, a leading axis 1 or R), the argument named when it is refused."""
        x = as_tensor("x", x, ndim=(2, 3), dtype=self.dtype, device=self.device)
        if x.shape[-1] != self.input_dim:
            raise invalid("x", f"<shape {tuple(x.shape)}>", f"last dimension input_dim={self.input_dim}")
        if x.ndim == 3 and x.shape[0] not in (1, self.ensemble):
            raise invalid("x", f"<shape {tuple(x.shape)}>", f"leading ensemble axis 1 or R={self.ensemble}")
        return x

    def __call__(self, x) -> torch.Tensor:
        """F(x): x of shape (n, d) or (R, n, d) -> (R, n, d')."""
        with torch.no_grad():
            out, _ = _kernels.forward(self, self.prepare_input(x), keep=False)
        return out

    def hidden_states(self, x) -> torch.Tensor:
        """All states h_0..h_L: (R, L+1, n, q)."""
        with torch.no_grad():
            _, cache = _kernels.forward(self, self.prepare_input(x), keep=True)
        return cache.h.transpose(0, 1)

    def increments(self) -> torch.Tensor:
        r"""||Z_{k+1} - Z_k||_F over all per-layer families jointly: (R, L-1)."""
        return layer_increments(self._p, self.layer_families)


def layer_increments(params: dict[str, torch.Tensor], families: tuple[str, ...], *, chunk: int = 64) -> torch.Tensor:
    """Frobenius norms of successive differences of layer-major stacks, summed over families: (R, L-1).

    Computed over chunks of layers so that the temporaries stay small (no weight-sized allocation)."""
    first = params[families[0]]
    L, R = first.shape[0], first.shape[1]
    total = torch.zeros((max(L - 1, 0), R), dtype=torch.float64, device=first.device)
    for name in families:
        v = params[name]
        flat = v.reshape(L, R, -1) if v.ndim > 2 else v[..., None]
        for i in range(0, L - 1, chunk):
            j = min(i + chunk, L - 1)
            dv = flat[i + 1:j + 1] - flat[i:j]
            total[i:j] += torch.linalg.vector_norm(dv, dim=-1).double() ** 2
    return total.sqrt().T


def _io_tensor(name: str, value, R: int, q: int, *, default: int, output: bool = False) -> torch.Tensor:
    if value is None:
        eye = torch.eye(q, dtype=torch.float64)
        return eye.expand(R, q, q).clone()
    t = as_tensor(name, value, ndim=(3,), dtype=torch.float64)
    ok_r = t.shape[0] in (1, R)
    ok_q = (t.shape[2] == q) if output else (t.shape[1] == q)
    if not (ok_r and ok_q):
        want = f"(R={R} or 1, d', q={q})" if output else f"(R={R} or 1, q={q}, d)"
        raise invalid(name, f"<shape {tuple(t.shape)}>", f"shape {want}")
    return t.expand(R, *t.shape[1:]).clone()


__all__ = ["ACTIVATIONS", "BLOCKS", "SMOOTH_ACTIVATIONS", "Activation", "InvalidArgument", "ResNet", "activate",
           "activate_backward", "as_tensor", "resolve_device"]
