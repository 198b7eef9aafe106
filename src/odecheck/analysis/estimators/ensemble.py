r"""How an ensemble of trained networks approaches its mean-ODE limit as depth grows: claim 11's estimator.

Input: the outputs F_r(L) of R independently initialized networks (members r) at each depth L of a
doubling grid, after the same training (outputs flattened to N entries per member). Two statistics:

- the run-to-run spread s(L) = sqrt(mean over entries of the members' variance): the fluctuation
  O(1/sqrt(L M)) around the ensemble mean ([Ch25], [CCM26]); predicted slope -1/2 in L at fixed M;
- the bias of the ensemble mean, seen through consecutive depths: b(L) = RMS over entries of
  E[F(L)] - E[F(2L)], which for a bias c/L is c/(2L): predicted slope -1. The plain difference of two
  ensemble means also carries their noise (variance Var(F_r(L) - F_r(2L)) / R per entry), so its square is
  corrected by that estimate (unbiased for b(L)^2); a depth where the corrected square is not positive has
  a bias below the ensemble's noise, and the slope declines.

Slopes are OLS fits of log s and log b on log L, after a check that one power law describes each: a local
slope (per doubling) that changes by more than the band between the shallowest and the deepest depths, with
confidence, declines the slope (the shallowest depths are pre-asymptotic, say). Intervals: a percentile bootstrap over members, resampling
a member's whole column of depths (member r at every depth is one draw of the seed stream: the columns
are i.i.d., the depths need not be independent). A bias slope is declined when more than
``max_declined`` of the bootstrap replicates meet a non-positive corrected square (the interval would
rest on the replicates where the bias happened to show).

References
----------
[Ch25] Chizat, arXiv 2509.10167.  [CCM26] Chaintron, Chizat, Maass, arXiv 2603.18168.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odecheck.core._errors import invalid


@dataclass(frozen=True)
class RateFit:
    slope: float
    ci: tuple[float, float]
    values: np.ndarray  # the statistic at each depth of the fit
    depths: np.ndarray
    declined: str  # why no slope is stated ("" when one is)


def _spread(F: np.ndarray) -> np.ndarray:
    """(B, D, R, N) -> (B, D) the members' standard deviation, RMS over entries."""
    return np.sqrt(F.var(axis=2, ddof=1).mean(axis=-1))


def _bias2(F: np.ndarray) -> np.ndarray:
    """(B, D, R, N) -> (B, D - 1) corrected squared RMS difference of consecutive ensemble means."""
    delta = F[:, :-1] - F[:, 1:]  # (B, D-1, R, N): member r at L and at 2L
    R = F.shape[2]
    return (delta.mean(axis=2) ** 2).mean(-1) - delta.var(axis=2, ddof=1).mean(-1) / R


def _slopes(x: np.ndarray, logv: np.ndarray) -> np.ndarray:
    xc = x - x.mean()
    return (logv - logv.mean(-1, keepdims=True)) @ xc / (xc @ xc)


def _bends(logv: np.ndarray, boot_logv: np.ndarray, level: float, band: float) -> str:
    """Why one power law does not describe ``logv`` over the doubling depths ("" when it does): the last local
    slope minus the first (per doubling, in log2 units), with its bootstrap interval wholly outside +-band."""
    def bend(v):
        return ((v[..., -1] - v[..., -2]) - (v[..., 1] - v[..., 0])) / np.log(2)

    lo, hi = np.quantile(bend(boot_logv), ((1 - level) / 2, (1 + level) / 2))
    if lo > band or hi < -band:
        first, last = (logv[1] - logv[0]) / np.log(2), (logv[-1] - logv[-2]) / np.log(2)
        return (f"not one power law: the local slope goes from {first:.2f} at the shallowest depths to {last:.2f} at "
                f"the deepest (change interval [{lo:.2f}, {hi:.2f}] outside +-{band})")
    return ""


def _checked_panel(depths, outputs, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(depths, outputs) as float arrays, each argument checked and named when it does not fit."""
    L = np.asarray(depths, dtype=float)
    F = np.asarray(outputs, dtype=float)
    if F.ndim != 3 or F.shape[0] != L.size:
        raise invalid("outputs", f"<shape {F.shape}>", f"(depths, members, entries) with {L.size} depths")
    if L.size < 4 or not np.allclose(L[1:] / L[:-1], 2.0):
        raise invalid("depths", L.tolist(), "at least 4 depths, each twice the one before")
    if F.shape[1] < 8:
        raise invalid("outputs", f"<{F.shape[1]} members>", "at least 8 members per depth")
    if not np.all(np.isfinite(F)):
        raise invalid("outputs", "<non-finite values>", "finite outputs (a diverged run has no rate)")
    if not (0 < level < 1):
        raise invalid("level", level, "a float in (0, 1)")
    return L, F


def ensemble_rates(depths, outputs, *, level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                   max_declined: float = 0.05, band: float = 0.25) -> tuple[RateFit, RateFit]:
    """(spread fit, bias fit) of ``outputs`` (D, R, N): D depths doubling (L, 2L, 4L, ...), R members, N
    output entries each. See the module text. A statistic whose local slope changes by more than ``band``
    (with confidence) between the shallowest and the deepest depths is not one power law: its slope is
    declined, saying so."""
    L, F = _checked_panel(depths, outputs, level)
    x = np.log(L)
    rng = np.random.default_rng(seed)
    boot_s, boot_b = [], []
    for start in range(0, n_boot, 100):
        idx = rng.integers(0, F.shape[1], size=(min(100, n_boot - start), F.shape[1]))
        Fb = np.moveaxis(F[:, idx], 1, 0)  # (B, D, R, N)
        boot_s.append(_spread(Fb))
        boot_b.append(_bias2(Fb))
    boot_s, boot_b = np.concatenate(boot_s), np.concatenate(boot_b)
    q = ((1 - level) / 2, (1 + level) / 2)
    s = _spread(F[None])[0]
    ss = _slopes(x, np.log(boot_s))
    bent = _bends(np.log(s), np.log(boot_s), level, band)
    spread = (RateFit(float("nan"), (float("nan"),) * 2, s, L, bent) if bent else
              RateFit(float(_slopes(x, np.log(s))), tuple(float(v) for v in np.quantile(ss, q)), s, L, ""))
    b2 = _bias2(F[None])[0]
    xb = x[:-1]
    if np.any(b2 <= 0):
        at = [int(v) for v in L[:-1][b2 <= 0]]
        return spread, RateFit(float("nan"), (float("nan"),) * 2, np.sqrt(np.maximum(b2, 0)), L[:-1],
                               f"the bias is below the ensemble's noise at L = {at} (more members, or depths further "
                               "apart)")
    ok = np.all(boot_b > 0, axis=1)
    if ok.mean() < 1 - max_declined:
        return spread, RateFit(float("nan"), (float("nan"),) * 2, np.sqrt(b2), L[:-1],
                               f"in {1 - ok.mean():.0%} of the bootstrap replicates the bias is below the noise at "
                               "some depth (more members)")
    boot_lb = 0.5 * np.log(boot_b[ok])
    bent = _bends(0.5 * np.log(b2), boot_lb, level, band) if b2.size >= 3 else ""
    if bent:
        return spread, RateFit(float("nan"), (float("nan"),) * 2, np.sqrt(b2), L[:-1], bent)
    sb = _slopes(xb, boot_lb)
    bias = RateFit(float(_slopes(xb, 0.5 * np.log(b2))), tuple(float(v) for v in np.quantile(sb, q)), np.sqrt(b2),
                   L[:-1], "")
    return spread, bias


__all__ = ["RateFit", "ensemble_rates"]
