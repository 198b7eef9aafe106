r"""Distances between weight functions.

L2 distance of the piecewise-constant weight functions Z^L(s) = Z_{min(floor(L s), L-1)} and
Z^{L'}(s) of a deeper reference: ( int_0^1 ||Z^L(s) - Z^{L'}(s)||_F^2 ds )^{1/2}, computed exactly
on the common refinement of the two grids.

References
----------
[M24] Thm. 4 (weight functions converge in L2([0,1])).
"""

from __future__ import annotations

import numpy as np

from odecheck.core._errors import invalid


def l2_distance(path, reference) -> float:
    Z = np.asarray(path, dtype=float)
    Zr = np.asarray(reference, dtype=float)
    if Z.ndim < 1 or Zr.ndim < 1 or Z.shape[1:] != Zr.shape[1:]:
        raise invalid("reference", f"<shape {Zr.shape}>", f"per-layer shape {Z.shape[1:]} like path")
    L, Lr = Z.shape[0], Zr.shape[0]
    cuts = np.union1d(np.arange(L + 1) / L, np.arange(Lr + 1) / Lr)
    mids = (cuts[1:] + cuts[:-1]) / 2
    w = np.diff(cuts)
    a = Z.reshape(L, -1)[np.minimum((mids * L).astype(int), L - 1)]
    b = Zr.reshape(Lr, -1)[np.minimum((mids * Lr).astype(int), Lr - 1)]
    return float(np.sqrt((w * ((a - b) ** 2).sum(1)).sum()))
