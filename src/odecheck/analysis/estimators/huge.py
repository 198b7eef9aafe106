"""Paths whose entries are too large for float64's squares: computed on the path scaled by a power of two
(exact: only the exponent changes) and the statistics that carry the scale multiplied back."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from odecheck.analysis.estimators.regularity import PathStats

HUGE = 2.0 ** 400  # above it sums of a path's squares could overflow float64 (2^800 per square, so up to 2^223
# entries are safe): its statistics are computed scaled


def huge_exponent(big: float) -> int:
    """The binary exponent e of a path's largest entry ``big``: the path is computed as Z 2^-e (exact)."""
    return int(np.frexp(big)[1])


def scaled_back(st: PathStats, e: int) -> PathStats:
    """The statistics of Z from those of Z 2^-e: the ones that carry the scale multiplied back by 2^e (2^2e for
    the quadratic variation; inf beyond float64), the scale-free ones (Hurst, regime, normalized increments)
    as they are."""
    up = lambda x, k=1: float(np.ldexp(x, k * e))  # noqa: E731
    with np.errstate(over="ignore"):
        return replace(st, max_increment=up(st.max_increment), max_norm=up(st.max_norm),
                       root_sum_squares=up(st.root_sum_squares), quadratic_variation=up(st.quadratic_variation, 2),
                       increments=tuple(up(x) for x in st.increments), norms=tuple(up(x) for x in st.norms))
