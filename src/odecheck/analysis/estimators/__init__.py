"""Limit estimators: pure functions returning named results with their uncertainty."""

from odecheck.analysis.estimators.discretization import gradient_error, heun_gain, reconstruction_error
from odecheck.analysis.estimators.distance import l2_distance
from odecheck.analysis.estimators.pl import PLSummary, init_ratios, pl_summary
from odecheck.analysis.estimators.regularity import (
    PathStats,
    Regime,
    RegimeDecision,
    classify_regime,
    hurst,
    max_increment,
    max_norm,
    path_stats,
    quadratic_variation,
    root_sum_squares,
)
from odecheck.analysis.estimators.scaling import ScalingFit, scaling_exponent

__all__ = [
    "PLSummary",
    "PathStats",
    "Regime",
    "RegimeDecision",
    "ScalingFit",
    "classify_regime",
    "gradient_error",
    "heun_gain",
    "hurst",
    "init_ratios",
    "l2_distance",
    "max_increment",
    "max_norm",
    "path_stats",
    "pl_summary",
    "quadratic_variation",
    "reconstruction_error",
    "root_sum_squares",
    "scaling_exponent",
]
