"""Independent references: a naive per-layer, per-member model differentiated by autograd."""

from __future__ import annotations

import torch
from odecheck.blocks import REGISTRY


def naive_forward(net, x, weights=None, *, config=None):
    """Loop over members and layers with plain matrix-vector algebra; returns (R, n, d').

    The layer update is the block class's ``naive_update``; its constants (alpha_L = L^-beta,
    1/sqrt(m), 1/sqrt(q)) come from ``config`` (default ``net.config()``, the constructor's
    arguments), never from the network's derived attributes such as ``net.alpha``."""
    cfg = net.config() if config is None else config
    w = weights if weights is not None else {k: v for k, v in net.weights.items()}
    block = REGISTRY[cfg["block"]]
    R, L = cfg["ensemble"], cfg["depth"]
    outs = []
    for r in range(R):
        xr = x if x.ndim == 2 else x[r if x.shape[0] > 1 else 0]
        h = xr @ w["A"][r].T
        for k in range(L):
            z = {f: w[f][r, k] for f in block.families}
            delta = None
            mode = cfg.get("delta", "fixed")
            if mode == "shared":
                delta = w["delta"][r]
            elif mode == "shared_abs":  # [C21]'s shared delta enters as |delta|
                delta = w["delta"][r].abs()
            elif mode in ("per_layer", "per_layer_gaussian"):
                delta = w["delta"][r, k]
            extra = {"width_factors": cfg.get("width_factors", True)} if cfg["block"] == "mlp" else {}
            h = h + block.naive_update(h, z, depth=L, beta=cfg["beta"], q=cfg["dim"], m=cfg["width"],
                                       activation=cfg["activation"], delta=delta, **extra)
        outs.append(h @ w["B"][r].T)
    return torch.stack(outs)


def naive_loss_grads(net, x, y):
    """Per-member loss and autograd gradients of the naive model, public (R, L, ...) layout."""
    w = {k: v.detach().clone().requires_grad_(True) for k, v in net.weights.items()}
    out = naive_forward(net, x, w)
    loss = ((out - y) ** 2).sum(dim=(1, 2)) / out.shape[1]
    loss.sum().backward()
    return loss.detach(), {k: v.grad for k, v in w.items()}


F32_UNIT_ROUNDOFF = 2.0**-24


def rounding_bound(depth: int, *dims: int, unit_roundoff: float = F32_UNIT_ROUNDOFF) -> float:
    """First-order worst-case relative rounding error of one loss-and-gradient pass.

    Every entry the pass computes is a sum of at most K = max(dims) products, which floating point
    evaluates to within gamma_K ~ K u (u the unit roundoff, 2^-24 in float32 and 2^-53 in float64;
    Higham, Accuracy and Stability of Numerical Algorithms, sec. 3.1); the activation adds its own
    few-u error (at most 3 u: the fused float32 forms are held to ATen's float32 error plus 2 u).
    The forward and backward passes chain 2 (depth + 1) such steps, so errors add up to
    2 (depth + 1) (K + 3) u. Two implementations of the same pass differ by at most twice that."""
    return 2 * (depth + 1) * (max(dims) + 3) * unit_roundoff


def linear_digits_floor(false_failure: float = 1e-3) -> float:
    """A reference for the digits tests instead of a hand-picked accuracy: the test accuracy of a
    logistic-regression classifier on the same split (about 0.969), less the one-sided normal
    quantile of the accuracy's sampling noise on the 450 test images at ``false_failure``. The
    networks contain a linear classifier (B A with the blocks at zero), so a trained one that falls
    below this floor has failed to learn what a linear map learns."""
    import math

    from odecheck.data import digits
    from scipy.stats import norm
    from sklearn.linear_model import LogisticRegression

    d = digits()
    labels = d.y.numpy().argmax(1)
    acc = LogisticRegression(max_iter=2000).fit(d.x.numpy(), labels).score(d.x_test.numpy(),
                                                                            d.y_test.numpy().argmax(1))
    n = d.x_test.shape[0]
    return float(acc - norm.ppf(1 - false_failure) * math.sqrt(acc * (1 - acc) / n))
