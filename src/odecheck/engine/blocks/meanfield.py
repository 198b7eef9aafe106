r"""The mean-field block of [CCM26]: h_{k+1} = h_k + alpha_L M^-1 V_k sigma(D^-1 W_k h_k), alpha_L = L^-beta.

With beta = 1 this is [CCM26]'s h + (1/(L M)) V tanh(U^T h / D) (W = U^T): the inner width M and the
embedding width D enter as 1/M and 1/D (means over neurons, not the 1/sqrt factors of the mlp block),
and the entries of U and V are drawn with variance D (an iid init with scale sqrt(D)). Training moves
the blocks when the per-layer step is eta L M D ([CCM26]'s effective step: gradient flow's factor L times
``lr = eta M D``). The same weights, kernels and adjoint as :mod:`odecheck.blocks.mlp` with
(s, c) = (1/D, alpha_L / M) in place of (1/sqrt(q), alpha_L / sqrt(m)).

References
----------
[Ch25] Chizat, arXiv 2509.10167.  [CCM26] Chaintron, Chizat, Maass, arXiv 2603.18168.
"""

from __future__ import annotations

from odecheck.engine.activations import activate
from odecheck.engine.blocks import base
from odecheck.engine.blocks.mlp import MLP


class MeanField(MLP):
    name = "meanfield"
    optional_width_factors = False
    recomputes = False  # the recomputing backward is written for the mlp block's factors
    laziness = False

    def naive_options(self, net) -> dict:
        return {}

    @staticmethod
    def scales(net) -> tuple[float, float]:
        return 1.0 / net.dim, base.residual_scale(net.depth, net.beta) / net.width

    @staticmethod
    def naive_update(h, z, *, depth, beta, q, m, activation, delta=None, width_factors=True):
        return depth ** (-beta) / m * activate(activation, h @ z["W"].T / q) @ z["V"].T
