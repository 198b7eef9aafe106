"""The one home of the weight layouts.

Public layout (what users see, ``ResNet.weights``, ``odecheck.nn``, saved files): every per-layer
family is stacked as (R, L, ...), members first. Internal layout (what the engine computes on):
layers first, (L, R, ...), so that one pass over the layers serves the whole ensemble with
batched products and each layer's slice is contiguous. The ``single`` block's bias is (R, L, q)
in public and (L, R, 1, q) inside (a row to add). A, B and a shared delta have no layer axis and
are the same in both.

The conversions are views: a public tensor whose memory is layer-major (for instance one made
by :func:`to_public`) converts back without a copy.
"""

from __future__ import annotations

import torch


def to_public(name: str, t: torch.Tensor, layered: tuple[str, ...]) -> torch.Tensor:
    """Internal tensor ``t`` of parameter ``name`` as a public (R, L, ...) view; ``layered`` names the
    parameters with a layer axis."""
    if name not in layered:
        return t
    if name == "b":
        return t[:, :, 0, :].transpose(0, 1)
    return t.transpose(0, 1)


def to_internal(name: str, t: torch.Tensor, layered: tuple[str, ...]) -> torch.Tensor:
    """Public tensor ``t`` of parameter ``name`` as an internal (L, R, ...) view (inverse of
    :func:`to_public`)."""
    if name not in layered:
        return t
    if name == "b":
        return t.transpose(0, 1).unsqueeze(2)
    return t.transpose(0, 1)


def member_axis(name: str, layered: tuple[str, ...]) -> int:
    """Axis of the ensemble members in an internal tensor: 1 for layer-major stacks, 0 otherwise."""
    return 1 if name in layered else 0
