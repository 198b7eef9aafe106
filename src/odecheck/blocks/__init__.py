"""Residual blocks, one module each, and the registry that maps a block's name to its class.

Adding a block is one new module with a :class:`Block` subclass and one line in ``REGISTRY``.
"""

from __future__ import annotations

from .._errors import invalid
from .base import Block, Cache
from .conv import Conv
from .meanfield import MeanField
from .mlp import MLP
from .res1 import Res1
from .single import Single

REGISTRY: dict[str, type[Block]] = {"mlp": MLP, "single": Single, "res1": Res1, "conv": Conv, "meanfield": MeanField}


def get(name: str) -> Block:
    """An instance of the block registered as ``name``."""
    if name not in REGISTRY:
        raise invalid("block", name, f"one of {', '.join(map(repr, REGISTRY))}")
    return REGISTRY[name]()


__all__ = ["REGISTRY", "Block", "Cache", "get"]
