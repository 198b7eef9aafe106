"""The training losses, per ensemble member: each returns the loss (R,) and its gradient in the outputs."""

from __future__ import annotations

import torch


def mse(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss l_r = (1/n) sum_i ||F(x_i) - y_i||^2 per member (R,) and dl/dF (R, n, d')."""
    n = out.shape[1]
    diff = out - y
    loss = (diff * diff).sum(dim=(1, 2)) / n
    return loss, diff * (2.0 / n)


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss l_r = -(1/n) sum_i sum_c y_ic log softmax(F(x_i))_c per member (R,) and dl/dF (R, n, d').
    ``y``: one-hot (or probability) rows, the same shape as the MSE targets."""
    n = out.shape[1]
    logp = torch.log_softmax(out, dim=-1)
    loss = -(y * logp).sum(dim=(1, 2)) / n
    g = (torch.exp(logp) * y.sum(-1, keepdim=True) - y) * (1.0 / n)
    return loss, g


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def loss_function(name: str):
    """The loss called ``name`` ('mse' or 'cross_entropy'): (out, y) -> (loss (R,), dl/dF)."""
    if name not in LOSSES:
        from odecheck.core._errors import invalid

        raise invalid("loss", name, "'mse' or 'cross_entropy'")
    return LOSSES[name]
