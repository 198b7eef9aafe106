r"""Activations sigma and their derivatives, in one place for every block and path.

identity, tanh, gelu (exact erf form), softplus (beta 1, linear above 20 as in torch) are smooth;
relu is not C^2. [M24]'s theory needs sigma C^2, Lipschitz, sigma(0) = 0.

References
----------
[M24] Marion et al., ICLR 2024, assumptions on sigma.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from odecheck.core._errors import invalid

Activation = Literal["identity", "tanh", "gelu", "softplus", "relu"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
SMOOTH_ACTIVATIONS: tuple[str, ...] = ("identity", "tanh", "gelu", "softplus")


def activate(name: str, u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """sigma(u) for the named activation (exact erf gelu). Without ``out`` the functional form
    (differentiable by autograd); with ``out`` written in place, no temporary."""
    if name not in ACTIVATIONS:
        raise invalid("activation", name, f"one of {', '.join(ACTIVATIONS)}")
    if out is None:
        return {"identity": lambda v: v, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu,
                "softplus": torch.nn.functional.softplus, "relu": torch.relu}[name](u)
    if name == "identity":
        return out.copy_(u)
    if name == "tanh":
        return torch.tanh(u, out=out)
    if name == "gelu":
        return torch.ops.aten.gelu.out(u, out=out)
    if name == "softplus":
        return torch.ops.aten.softplus.out(u, 1.0, 20.0, out=out)
    return torch.clamp(u, min=0.0, out=out)


def activate_backward(name: str, grad: torch.Tensor, u: torch.Tensor, a: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """grad * sigma'(u) in one fused pass (``a`` = sigma(u)), written into ``out`` if given."""
    if name == "identity":
        return grad if out is None else out.copy_(grad)
    if out is None:
        out = torch.empty_like(grad)
    if name == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, a, grad_input=out)
    if name == "gelu":
        return torch.ops.aten.gelu_backward.grad_input(grad, u, grad_input=out)
    if name == "softplus":
        return torch.ops.aten.softplus_backward.grad_input(grad, u, 1.0, 20.0, grad_input=out)
    if name == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, a, 0.0, grad_input=out)
    raise invalid("activation", name, f"one of {', '.join(ACTIVATIONS)}")
