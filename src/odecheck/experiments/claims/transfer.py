"""Claim 10, depth-transfer: under a depth parametrization's rule the optimal learning rate does not drift
with depth, and (its second estimate) blocks stay as non-lazy as the rule predicts.

References
----------
[Y23] Yang et al., Tensor Programs VI (2023).  [B23] Bordelon et al., arXiv 2309.16620.
[CP25] CompleteP, arXiv 2505.01618.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from odecheck.analysis.estimators import scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA, transfer_decision
from odecheck.analysis.estimators.scaling import mean_interval
from odecheck.core._errors import invalid
from odecheck.experiments.claims.base import Advance, Claim, Evidence, ExperimentConfig, no_progress


@dataclass(frozen=True, kw_only=True)
class TransferConfig(ExperimentConfig):
    """For one parametrization and optimizer (``method``, full batch): every learning rate 2^x of ``log2_lrs``
    at every depth of ``depths`` (m_L = L / ``base_depth``), ``ensemble`` seed members trained ``steps`` steps
    on the teacher task (``samples`` pairs in R^dim) in ``dtype``; the laziness after one step at 2^lazy_log2_lr
    on the first ``lazy_members`` members."""

    parametrization: str = "completep"
    method: str = "adam"
    block: str = "mlp"
    depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    log2_lrs: tuple[float, ...] = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0)
    steps: int = 50
    base_depth: int = 8
    ensemble: int = 12
    dim: int = 8
    width: int = 16
    activation: str = "gelu"
    init: str = "iid"
    samples: int = 32
    lazy_members: int = 4
    lazy_log2_lr: float = -6.0
    dtype: str = "float32"
    BLOCKS: ClassVar[tuple[str, ...]] = ("mlp", "res1", "single")  # the blocks this claim's grid runs

    def __post_init__(self) -> None:
        from odecheck.core.validation import check_choice, check_float, check_int
        from odecheck.experiments.parametrizations import parametrization

        super().__post_init__()
        parametrization(self.parametrization)
        check_choice("method", self.method, ("sgd", "adam"))
        check_choice("block", self.block, self.BLOCKS)
        check_int("base_depth", self.base_depth, 1)
        check_int("lazy_members", self.lazy_members, 2)
        if self.lazy_members > self.ensemble:
            raise invalid("lazy_members", self.lazy_members, f"at most ensemble = {self.ensemble}")
        check_float("lazy_log2_lr", self.lazy_log2_lr)
        if len(self.depths) < 3:
            raise invalid("depths", list(self.depths), "at least 3 depths (a slope and its interval)")
        lrs = self.log2_lrs
        if isinstance(lrs, (str, bytes)) or not hasattr(lrs, "__iter__"):
            raise invalid("log2_lrs", lrs, "at least 3 increasing exponents of 2")
        lrs = tuple(float(check_float("log2_lrs", x)) for x in lrs)
        if len(lrs) < 3 or bool(np.any(np.diff(lrs) <= 0)):
            raise invalid("log2_lrs", list(lrs), "at least 3 increasing exponents of 2")
        object.__setattr__(self, "log2_lrs", lrs)


# blocks whose update is linear in their weights (res1: L^-beta V sigma(h)): [CP25]'s laziness is 0 by construction
LINEAR_IN_WEIGHTS = ("res1",)


def transfer_experiment(cfg: TransferConfig, progress: Advance = no_progress) -> Evidence:
    from odecheck.analysis.estimators.transfer import transfer_slope
    from odecheck.experiments.parametrizations import final_losses, laziness_by_depth, parametrization

    level = 1 - cfg.alpha / 2  # Bonferroni over the two estimates
    losses = final_losses(cfg, progress=lambda e: progress(0.85 * e.done / e.total))
    fit = transfer_slope(cfg.depths, cfg.log2_lrs, losses, level=level)
    expected_lazy = parametrization(cfg.parametrization).alpha - 1.0
    if cfg.block in LINEAR_IN_WEIGHTS:  # its one-step change is all linear part: no laziness to estimate
        lazy, lazy_slope, lazy_ci = None, float("nan"), (float("nan"), float("nan"))
        verdict, lazy_call = transfer_decision(fit.verdict, None, expected_lazy)
    else:
        lazy = laziness_by_depth(cfg, progress=lambda e: progress(0.85 + 0.15 * e.done / e.total))
        lfit = scaling_exponent(cfg.depths, np.maximum(lazy, 1e-300), level=level, seed=cfg.seed, paired=True)
        lazy_slope, lazy_ci = lfit.estimate, lfit.ci
        verdict, lazy_call = transfer_decision(fit.verdict, lazy_ci, expected_lazy)
    opt = fit.optimum
    per_depth = [mean_interval(opt[d], level) for d in range(len(cfg.depths))]
    return Evidence(verdict=verdict, estimate=fit.slope, ci=fit.ci, n=len(cfg.depths) * cfg.ensemble,
                    figure="transfer",
                    details={"depths": list(cfg.depths), "ensemble": cfg.ensemble, "log2_lrs": list(cfg.log2_lrs),
                             "parametrization": cfg.parametrization, "method": cfg.method, "level": level,
                             "statistic": "d log2 eta* / d log2 L", "band": fit.band, "transfer": fit.verdict,
                             "reason": fit.reason, "losses": losses, "optimum": opt,
                             "optimum_mean": [m for m, _ in per_depth], "optimum_ci": [c for _, c in per_depth],
                             "laziness": lazy, "laziness_slope": lazy_slope, "laziness_ci": lazy_ci,
                             "laziness_expected": expected_lazy, "laziness_call": lazy_call})


DEPTH_TRANSFER = Claim(
    id="depth-transfer",
    statement="With residual multiplier L^-alpha and the parametrization's learning-rate rule (CompleteP: alpha = 1, "
              "Adam lr flat, hidden eps / m_L), the optimal learning rate eta*(L) does not drift with depth, and "
              "the blocks' laziness scales like L^(alpha - 1).",
    source="[CP25]; [Y23], [B23] for Depth-muP",
    scope={"parametrization": ["completep"], "method": ["adam"], "block": ["mlp", "res1"],
           "depth-mup": "one-layer blocks (res1) only [Y23]"},
    expected="confirmed", alpha=ALPHA,
    decision="eta*(L) per seed from a three-point parabola of log loss in log2 lr; slope of log2 eta* on log2 L with "
             "a 97.5% members-t interval: transfers if inside +-1/(2 log2(L_max/L_min)) (half a grid step over the "
             "depths), drifts if outside; laziness slope in L with a 97.5% members-t interval against alpha - 1 "
             "+- 0.25 (Bonferroni): confirmed if it transfers and the laziness agrees, refuted if it drifts or the "
             "laziness contradicts",
    presets={"quick": TransferConfig(depths=(8, 16, 32, 64), ensemble=8),
             "standard": TransferConfig(),
             "thorough": TransferConfig(depths=(8, 16, 32, 64, 128, 256, 512), ensemble=24, steps=100, samples=64,
                                        log2_lrs=tuple(float(x) for x in range(-6, 4)))},
    experiment=transfer_experiment)
