"""Residual blocks, one module each, and the registry that maps a block's name to its class.

Adding a block is one new module with a :class:`Block` subclass and one line in ``REGISTRY``.
"""

from __future__ import annotations

from odecheck.core._errors import invalid
from odecheck.engine.blocks.base import Block, Cache
from odecheck.engine.blocks.conv import Conv
from odecheck.engine.blocks.meanfield import MeanField
from odecheck.engine.blocks.mlp import MLP
from odecheck.engine.blocks.res1 import Res1
from odecheck.engine.blocks.single import Single

REGISTRY: dict[str, type[Block]] = {"mlp": MLP, "single": Single, "res1": Res1, "conv": Conv, "meanfield": MeanField}


def get(name: str) -> Block:
    """An instance of the block registered as ``name``."""
    if name not in REGISTRY:
        raise invalid("block", name, f"one of {', '.join(map(repr, REGISTRY))}")
    return REGISTRY[name]()


__all__ = ["REGISTRY", "Block", "Cache", "get"]
