r"""Polyak-Lojasiewicz ratio and init-time signal propagation.

PL ratio r(t) = (||dl/dA||^2 + L sum_k ||dl/dZ_k||^2 + ||dl/dB||^2) / l(t), mu_hat = min_t r(t);
under the PL condition l(t) <= exp(-mu t) l(0) [M24 Def. 1, Thm. 6]. At initialization [M25]:
||h_L - h_0|| / ||h_0|| and ||dl/dh_0 - dl/dh_L|| / ||dl/dh_L||.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PLSummary:
    """Per member: mu_hat (R,), rate (R,) fitted exponential decay rate of l(t) in flow time,
    loss_ratio (R,) l(T)/l(0), horizon T = steps * lr."""

    mu_hat: np.ndarray
    rate: np.ndarray
    loss_ratio: np.ndarray
    horizon: float


def pl_summary(traj) -> PLSummary:
    t = np.arange(traj.loss.shape[0]) * traj.lr
    mu = np.nanmin(traj.pl_ratio, axis=0)
    with np.errstate(divide="ignore"):
        logl = np.log(traj.loss)
    rate = np.array([-np.polyfit(t, logl[:, r], 1)[0] if np.all(np.isfinite(logl[:, r])) else np.nan
                     for r in range(traj.loss.shape[1])])
    return PLSummary(mu_hat=mu, rate=rate, loss_ratio=traj.loss[-1] / traj.loss[0], horizon=float(t[-1]))


def init_ratios(net, x, y=None) -> tuple[np.ndarray, np.ndarray]:
    """Forward ||h_L - h_0||/||h_0|| and backward ||g_0 - g_L||/||g_L|| ratios per member (R,),
    norms over all samples; the loss is the squared error to ``y`` (default: zeros)."""
    from odecheck.engine._kernels import backward, forward, mse

    x = net.prepare_input(x)
    with torch.no_grad():
        out, cache = forward(net, x, keep=True)
        if y is None:
            y = torch.zeros_like(out)
        _, g_out = mse(out, y)
        grads = backward(net, cache, g_out)
    h = cache.h
    fwd = (h[-1] - h[0]).flatten(1).norm(dim=1) / h[0].flatten(1).norm(dim=1)
    g0, gL = grads["_h0"], grads["_hL"]
    bwd = (g0 - gL).flatten(1).norm(dim=1) / gL.flatten(1).norm(dim=1)
    return fwd.double().cpu().numpy(), bwd.double().cpu().numpy()
