"""Hypothesis strategies for odecheck (import only with hypothesis installed).

Strategies are plural nouns with ``min_*``/``max_*`` keyword pairs, validated eagerly: a bad
bound raises :class:`odecheck.InvalidArgument` when the strategy is built, not when drawn.
They choose *structure* (architecture, initialization, sizes, step); the random seed of every
statistical sample is derived deterministically from that structure (:func:`derived_seed`),
never drawn by Hypothesis.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from odecheck.core._errors import invalid
from odecheck.engine.blocks import REGISTRY
from odecheck.engine.init import INIT_KINDS, Init, fbm_paths, gp_paths, member_generator
from odecheck.engine.models import ACTIVATIONS, BLOCKS


def derived_seed(*parts) -> int:
    """A seed that is a fixed function of the drawn structure."""
    blob = json.dumps([str(p) for p in parts]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


def _bounds(name: str, lo, hi, *, minimum=None) -> None:
    if minimum is not None and lo < minimum:
        raise invalid(f"min_{name}", lo, f">= {minimum}")
    if hi < lo:
        raise invalid(f"max_{name}", hi, f">= min_{name}={lo}")


def _subset(name: str, values, allowed) -> tuple:
    vals = tuple(values)
    if not vals or any(v not in allowed for v in vals):
        raise invalid(name, values, f"a non-empty subset of {allowed}")
    return vals


def architectures(*, blocks=BLOCKS, activations=ACTIVATIONS, min_depth: int = 2, max_depth: int = 12,
                  min_dim: int = 1, max_dim: int = 5, min_width: int = 1, max_width: int = 6,
                  min_beta: float = 0.0, max_beta: float = 1.5, min_ensemble: int = 1, max_ensemble: int = 3):
    """Keyword dicts for :class:`odecheck.ResNet` (without init and seed). For the conv block the
    state is c x S x S maps (c <= 3 channels, S <= 3), so its dim is c S^2 whatever the dim bounds."""
    blocks = _subset("blocks", blocks, BLOCKS)
    activations = _subset("activations", activations, ACTIVATIONS)
    _bounds("depth", min_depth, max_depth, minimum=1)
    _bounds("dim", min_dim, max_dim, minimum=1)
    _bounds("width", min_width, max_width, minimum=1)
    _bounds("beta", min_beta, max_beta, minimum=0.0)
    _bounds("ensemble", min_ensemble, max_ensemble, minimum=1)

    @st.composite
    def draw(d):
        block = d(st.sampled_from(blocks))
        dim = d(st.integers(min_dim, max_dim))
        arch = {"block": block, "depth": d(st.integers(min_depth, max_depth)), "dim": dim,
                "width": d(st.integers(min_width, max_width)), "activation": d(st.sampled_from(activations)),
                "beta": d(st.floats(min_beta, max_beta, allow_nan=False)),
                "ensemble": d(st.integers(min_ensemble, max_ensemble)),
                "input_dim": d(st.integers(1, dim)), "output_dim": d(st.integers(1, dim))}
        blk = REGISTRY[block]
        if blk.trained_delta:
            arch["delta"] = d(st.sampled_from(["fixed", "shared", "per_layer"]))
        if not blk.acts_on_vectors:  # conv: c channels of S x S maps, the state is q = c S^2
            c = d(st.integers(1, max(1, min(3, max_width))))
            S = d(st.integers(1, 3))
            q = c * S * S
            arch.update(width=c, dim=q, input_dim=d(st.integers(1, q)), output_dim=d(st.integers(1, q)))
        return arch

    return draw()


def initializations(*, kinds=INIT_KINDS, min_hurst: float = 0.1, max_hurst: float = 0.9,
                    min_length_scale: float = 0.05, max_length_scale: float = 0.5):
    """:class:`odecheck.Init` objects."""
    kinds = _subset("kinds", kinds, INIT_KINDS)
    _bounds("hurst", min_hurst, max_hurst, minimum=1e-3)
    if max_hurst >= 1:
        raise invalid("max_hurst", max_hurst, "< 1")
    _bounds("length_scale", min_length_scale, max_length_scale, minimum=1e-3)

    @st.composite
    def draw(d):
        kind = d(st.sampled_from(kinds))
        if kind == "fbm":
            return Init(kind="fbm", hurst=d(st.floats(min_hurst, max_hurst)))
        if kind == "smooth":
            return Init(kind="smooth", length_scale=d(st.floats(min_length_scale, max_length_scale)))
        return Init(kind=kind)

    return draw()


@dataclass(frozen=True)
class DataSpec:
    n: int
    input_dim: int
    output_dim: int
    target_scale: float

    def sample(self, dtype=torch.float64):
        g = member_generator(derived_seed("data", self), 0)
        x = torch.randn(self.n, self.input_dim, generator=g, dtype=torch.float64)
        y = self.target_scale * torch.randn(self.n, self.output_dim, generator=g, dtype=torch.float64)
        return x.to(dtype), y.to(dtype)


def datasets(*, input_dim: int, output_dim: int, min_n: int = 1, max_n: int = 16,
             min_target_scale: float = 0.1, max_target_scale: float = 1.0):
    """Gaussian regression data specs (:class:`DataSpec`; ``.sample()`` is seeded by the structure)."""
    _bounds("n", min_n, max_n, minimum=1)
    _bounds("target_scale", min_target_scale, max_target_scale, minimum=0.0)
    if input_dim < 1 or output_dim < 1:
        raise invalid("input_dim", (input_dim, output_dim), "positive dimensions")
    return st.builds(DataSpec, n=st.integers(min_n, max_n), input_dim=st.just(input_dim),
                     output_dim=st.just(output_dim),
                     target_scale=st.floats(min_target_scale, max_target_scale))


def experiments(*, min_steps: int = 1, max_steps: int = 20, min_lr: float = 1e-3, max_lr: float = 3e-2, **arch_kw):
    """Whole configurations: {"arch", "init", "data", "steps", "lr"}."""
    _bounds("steps", min_steps, max_steps, minimum=0)
    _bounds("lr", min_lr, max_lr, minimum=1e-12)

    @st.composite
    def draw(d):
        arch = d(architectures(**arch_kw))
        return {"arch": arch, "init": d(initializations(kinds=("iid", "tied", "smooth", "zero"))),
                "data": d(datasets(input_dim=arch["input_dim"], output_dim=arch["output_dim"], max_n=8)),
                "steps": d(st.integers(min_steps, max_steps)), "lr": d(st.floats(min_lr, max_lr))}

    return draw()


@dataclass(frozen=True)
class PlantedPath:
    """A weight path with known regularity: kind in {smooth, brownian, white, fbm}, Hurst index ``hurst``."""

    kind: str
    depth: int
    entries: int
    hurst: float

    @property
    def regime(self) -> str:
        return {"smooth": "ode", "brownian": "sde", "white": "none"}.get(self.kind, "fbm")

    def sample(self, replicate: int = 0) -> np.ndarray:
        g = member_generator(derived_seed("path", self), replicate)
        if self.kind == "smooth":
            z = gp_paths(self.entries, self.depth, 0.1, g)
        elif self.kind == "white":
            z = torch.randn(self.entries, self.depth, generator=g, dtype=torch.float64)
        else:
            z = fbm_paths(self.entries, self.depth, self.hurst, g)
        return z.T.numpy()


def weight_paths(*, kinds=("smooth", "brownian", "white", "fbm"), min_depth: int = 64, max_depth: int = 512,
                 min_entries: int = 8, max_entries: int = 32, min_hurst: float = 0.2, max_hurst: float = 0.8):
    """Planted paths (L, entries) with a known regime or Hurst index."""
    kinds = _subset("kinds", kinds, ("smooth", "brownian", "white", "fbm"))
    _bounds("depth", min_depth, max_depth, minimum=3)
    _bounds("entries", min_entries, max_entries, minimum=1)
    _bounds("hurst", min_hurst, max_hurst, minimum=1e-3)

    @st.composite
    def draw(d):
        kind = d(st.sampled_from(kinds))
        H = {"smooth": 1.0, "brownian": 0.5, "white": 0.0}.get(kind)
        if H is None:
            H = round(d(st.floats(min_hurst, max_hurst)), 3)
        return PlantedPath(kind, d(st.integers(min_depth, max_depth)), d(st.integers(min_entries, max_entries)), H)

    return draw()
