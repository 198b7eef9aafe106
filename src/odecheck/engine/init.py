r"""Initializations of stacked residual weights.

Every sampler takes an explicit seed and draws each ensemble member from its own
child stream (``numpy.random.SeedSequence(seed, spawn_key=(r,))``), so member ``r``
of an ensemble of size 4 is the same network as member ``r`` of an ensemble of size 16.

References
----------
[M24] Marion, Wu, Sander, Biau. Implicit regularization of deep residual networks
      towards neural ODEs. ICLR 2024.
[M25] Marion, Fermanian, Biau, Vert. Scaling ResNets in the large-depth regime. JMLR 2025.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from odecheck.core._errors import InvalidArgument, invalid

InitKind = Literal["iid", "tied", "smooth", "fbm", "zero", "counterexample", "xavier", "xavier_depth"]
INIT_KINDS: tuple[str, ...] = get_args(InitKind)
XAVIER_KINDS = ("xavier", "xavier_depth")  # [C21]'s code's inits, with a scale s


@dataclass(frozen=True, kw_only=True)
class Init:
    """An initialization scheme for the block weights.

    Parameters
    ----------
    kind : {"iid", "tied", "smooth", "fbm", "zero", "counterexample", "xavier", "xavier_depth"}
        ``xavier(s)`` is [C21]'s code's init: iid Gaussian, std s / fan_in for a matrix and s / sqrt(fan_in)
        for a bias (family ``b``), fan_in the last axis; ``xavier_depth(s)`` divides both by L.
    length_scale : float
        Length scale ``l`` of the squared-exponential kernel of ``smooth``.
    hurst : float
        Hurst index ``H`` in (0, 1) of ``fbm``.
    scale : float
        Standard deviation of every entry (``iid``, ``tied``, ``smooth``, ``fbm``); s of ``xavier``.
    """

    kind: InitKind = "iid"
    length_scale: float = 0.1
    hurst: float = 0.5
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in INIT_KINDS:
            raise invalid("init", self.kind, f"one of {', '.join(INIT_KINDS)}")
        if not (isinstance(self.length_scale, (int, float)) and self.length_scale > 0):
            raise invalid("length_scale", self.length_scale, "a positive float")
        if not (isinstance(self.hurst, (int, float)) and 0.0 < self.hurst < 1.0):
            raise invalid("hurst", self.hurst, "a float in (0, 1)")
        if not (isinstance(self.scale, (int, float)) and self.scale >= 0 and math.isfinite(self.scale)):
            raise invalid("scale", self.scale, "a finite float >= 0")

    def __str__(self) -> str:
        if self.kind == "fbm":
            return f"fbm({self.hurst:g})"
        if self.kind == "smooth":
            return f"smooth({self.length_scale:g})"
        if self.kind in XAVIER_KINDS:
            return f"{self.kind}({self.scale:g})"
        return self.kind


_PATTERN = re.compile(r"^\s*(\w+)\s*(?:\(\s*([0-9.eE+-]+)\s*\))?\s*$")


def as_init(init: Init | str) -> Init:
    """Turn ``"iid"``, ``"fbm(0.7)"``, ``"smooth(0.2)"`` or an :class:`Init` into an :class:`Init`."""
    if isinstance(init, Init):
        return init
    if not isinstance(init, str):
        raise invalid("init", init, "an Init or a string such as 'tied', 'smooth(0.1)', 'fbm(0.7)'")
    m = _PATTERN.match(init)
    if m is None or m.group(1) not in INIT_KINDS:
        raise invalid("init", init, f"one of {', '.join(INIT_KINDS)}, optionally with a parameter: 'fbm(0.7)'")
    kind, arg = m.group(1), m.group(2)
    if arg is None:
        return Init(kind=kind)  # type: ignore[arg-type]
    try:
        value = float(arg)
    except ValueError:
        raise invalid("init", init, "a numeric parameter in parentheses") from None
    if kind == "fbm":
        return Init(kind="fbm", hurst=value)
    if kind == "smooth":
        return Init(kind="smooth", length_scale=value)
    if kind in XAVIER_KINDS:
        return Init(kind=kind, scale=value)  # type: ignore[arg-type]
    raise invalid("init", init, f"no parameter for {kind!r} (only fbm(H), smooth(l) and xavier(s) take one)")


def member_generator(seed: int, member: int) -> torch.Generator:
    """A CPU generator for ensemble member ``member``, independent of the ensemble size."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(member),))
    g = torch.Generator(device="cpu")
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1)))
    return g


def _circulant_sample(
    acov: np.ndarray, n_paths: int, generator: torch.Generator, *, name: str
) -> torch.Tensor:
    """Exact stationary Gaussian sequences by circulant embedding (Davies-Harte).

    ``acov`` has the autocovariance at lags 0..M/2 (M the embedding size). Returns
    (n_paths, N) in float64 with N = len(acov) truncated by the caller.
    """
    half = len(acov) - 1
    row = np.concatenate([acov, acov[-2:0:-1]]) if half > 0 else acov
    m = len(row)
    lam = np.fft.fft(row).real
    if lam.min() < -1e-8 * max(lam.max(), 1e-300):
        raise InvalidArgument(
            f"{name}: circulant embedding is not positive (min eigenvalue {lam.min():.3g}); "
            "use a shorter length scale"
        )
    lam = np.clip(lam, 0.0, None)
    sq = torch.from_numpy(np.sqrt(lam / m))
    re_ = torch.randn(n_paths, m, generator=generator, dtype=torch.float64)
    im_ = torch.randn(n_paths, m, generator=generator, dtype=torch.float64)
    y = torch.fft.fft(torch.complex(re_, im_) * sq, dim=-1)
    return y.real


def fgn(n_paths: int, length: int, hurst: float, generator: torch.Generator) -> torch.Tensor:
    r"""Unit-variance fractional Gaussian noise, exactly (Davies-Harte).

    Autocovariance :math:`\gamma(k) = \tfrac12(|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H})`.

    Returns
    -------
    Tensor of shape (n_paths, length), float64.
    """
    if length < 1:
        raise invalid("length", length, "an integer >= 1")
    k = np.arange(length + 1, dtype=np.float64) if length > 1 else np.arange(1, dtype=np.float64)
    h2 = 2.0 * hurst
    acov = 0.5 * (np.abs(k + 1) ** h2 - 2 * np.abs(k) ** h2 + np.abs(k - 1) ** h2)
    if length == 1:
        return torch.randn(n_paths, 1, generator=generator, dtype=torch.float64)
    return _circulant_sample(acov, n_paths, generator, name="fbm")[:, :length]


def fbm_paths(n_paths: int, length: int, hurst: float, generator: torch.Generator) -> torch.Tensor:
    """Fractional Brownian motion B_H at s = k/length, k = 1..length (shape (n_paths, length))."""
    return torch.cumsum(fgn(n_paths, length, hurst, generator), dim=-1) * length ** (-hurst)


def gp_paths(n_paths: int, length: int, length_scale: float, generator: torch.Generator) -> torch.Tensor:
    r"""Gaussian process with kernel :math:`\exp(-(s-s')^2/(2 l^2))` at s = k/length, k = 1..length.

    Returns (n_paths, length) float64, unit marginal variance.
    """
    if length == 1:
        return torch.randn(n_paths, 1, generator=generator, dtype=torch.float64)
    step = 1.0 / length
    half = max(length - 1, int(math.ceil(8.0 * length_scale / step)))
    lags = np.arange(half + 1, dtype=np.float64) * step
    acov = np.exp(-(lags**2) / (2.0 * length_scale**2))
    return _circulant_sample(acov, n_paths, generator, name="smooth")[:, :length]


# The last correlated stack sampled (smooth, fbm: the FFT sampling dominates building a network).
# Networks that differ only in what does not enter the weights (beta, activation, data: a phase
# diagram's columns) reuse it; the caller always gets a fresh copy. At most STACK_CACHE_MAX entries.
STACK_CACHE_MAX = 1 << 27
CACHED_KINDS = ("smooth", "fbm")  # the inits whose sampling is worth reusing (iid, tied: a randn)
_last_stack: list = []


def sample_stack(
    init: Init,
    shapes: dict[str, tuple[int, ...]],
    *,
    depth: int,
    ensemble: int,
    seed: int,
    zero_at_tied: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Sample every per-layer weight family.

    Parameters
    ----------
    init : Init
    shapes : mapping name -> per-layer shape (without the (R, L) axes)
    zero_at_tied : families set to zero by the ``tied`` scheme (the mlp block's V)

    Returns
    -------
    dict name -> float64 tensor of shape (R, L, *shape).
    """
    key = (init, tuple((k, tuple(v)) for k, v in shapes.items()), depth, ensemble, seed, tuple(zero_at_tied))
    if _last_stack and _last_stack[0][0] == key:
        return {k: v.clone() for k, v in _last_stack[0][1].items()}
    out = _sample_stack(init, shapes, depth=depth, ensemble=ensemble, seed=seed, zero_at_tied=zero_at_tied)
    size = sum(v.numel() for v in out.values())
    _last_stack.clear()
    if init.kind in CACHED_KINDS and size <= STACK_CACHE_MAX:
        _last_stack.append((key, {k: v.clone() for k, v in out.items()}))
    return out


def _sample_stack(init: Init, shapes: dict[str, tuple[int, ...]], *, depth: int, ensemble: int, seed: int,
                  zero_at_tied: tuple[str, ...]) -> dict[str, torch.Tensor]:
    L, R = depth, ensemble
    out = {name: torch.empty((R, L, *shape), dtype=torch.float64) for name, shape in shapes.items()}
    sign = torch.tensor([(-1.0) ** (k + 1) for k in range(L)], dtype=torch.float64) / L
    for r in range(R):
        g = member_generator(seed, r)
        for name, shape in shapes.items():
            size = int(np.prod(shape)) if shape else 1
            if init.kind == "iid":
                z = torch.randn(L, size, generator=g, dtype=torch.float64)
            elif init.kind == "tied":
                if name in zero_at_tied:
                    z = torch.zeros(L, size, dtype=torch.float64)
                else:
                    z = torch.randn(1, size, generator=g, dtype=torch.float64).expand(L, size)
            elif init.kind == "smooth":
                z = gp_paths(size, L, init.length_scale, g).T
            elif init.kind == "fbm":
                z = fgn(size, L, init.hurst, g).T
            elif init.kind == "zero":
                z = torch.zeros(L, size, dtype=torch.float64)
            elif init.kind in XAVIER_KINDS:
                fan = shape[-1] if shape else 1
                std = 1.0 / (math.sqrt(fan) if name == "b" else fan)  # times s below
                z = torch.randn(L, size, generator=g, dtype=torch.float64) * std
                if init.kind == "xavier_depth":
                    z = z / L
            else:  # counterexample: w_k = (-1)^k / L, k = 1..L
                z = sign[:, None].expand(L, size)
            if init.kind != "counterexample":
                z = z * init.scale
            out[name][r] = z.reshape(L, *shape)
    return out
