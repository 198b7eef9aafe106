r"""Planted weight paths with a known regularity, for calibrating the regime rule.

Each family samples paths Z (L, P) (P entries, layer index first) and states, from its configuration
alone, the exact variogram gamma(h) = E ||Z_{k+h} - Z_k||^2 / P per entry and whether the path has a
rough (diffusive) part. The *true local exponents* at lags h_1 < ... < h_J are
(1/2) log(gamma(h_{j+1}) / gamma(h_j)) / log(h_{j+1} / h_j): what the regime rule estimates, at the
scales a path of depth L shows. ``truth`` turns them into the verdicts that are wrong for the path
(docs/calibration.md, "truth table").

Families: fbm(H) (Davies-Harte), white noise, smooth Gaussian process (l = 0.1), random Fourier
features with up to ``cycles`` cycles over the path (under-resolved when cycles ~ L/3), smooth paths
plus iid layer noise at a noise/signal ratio, Ornstein-Uhlenbeck, Brownian motion with a drift,
Brownian paths with heterogeneous entry scales, and Brownian entries correlated in contiguous groups
of 9 (a 3 x 3 conv kernel).

References
----------
[M25] (fbm weights); [C21] sec. 4 (regularity of trained weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from odecheck.engine.init import fbm_paths, gp_paths

ODE_ABOVE, NONE_BELOW, TOLERANCE = 0.75, 0.25, 0.25  # the bands and crossover tolerance of docs/theory.md


@dataclass(frozen=True)
class Planted:
    """A family of planted paths: ``sample(L, P, generator) -> (L, P)`` and its exact variogram."""

    name: str
    sample: Callable[[int, int, torch.Generator], np.ndarray]
    variogram: Callable[[np.ndarray, int], np.ndarray]  # gamma(h) per entry at lags h, depth L
    rough: bool  # has a diffusive (rough, Brownian-like) component

    def local_exponents(self, lags, L: int) -> np.ndarray:
        h = np.asarray(lags, dtype=float)
        g = self.variogram(h, L)
        return np.diff(0.5 * np.log(g)) / np.diff(np.log(h))


def _gauss(L, P, g):
    return torch.randn(L, P, generator=g, dtype=torch.float64).numpy()


def _unif(L, P, g):
    return torch.rand(L, P, generator=g, dtype=torch.float64).numpy()


def fbm(H: float) -> Planted:
    return Planted(f"fbm H={H}", lambda L, P, g: fbm_paths(P, L, H, g).T.numpy(),
                   lambda h, L: (h / L) ** (2 * H), rough=True)


WHITE = Planted("white noise", _gauss, lambda h, L: np.full_like(h, 2.0), rough=False)
GP = Planted("smooth GP l=0.1", lambda L, P, g: gp_paths(P, L, 0.1, g).T.numpy(),
             lambda h, L: 2 * (1 - np.exp(-((h / L) ** 2) / (2 * 0.1**2))), rough=False)


def fourier(cycles: Callable[[int], float], label: str) -> Planted:
    """sin(2 pi c_i k / L + phi_i), c_i ~ U(0, cycles(L)), phi_i ~ U(0, 2 pi): a smooth path of
    bandwidth ``cycles(L)`` over the whole path; gamma(h) = 1 - sinc(2 pi C h / L) (sin(x)/x)."""

    def sample(L, P, g):
        c, phi = _unif(1, P, g) * cycles(L), _unif(1, P, g) * 2 * math.pi
        return np.sin(2 * math.pi * c * np.arange(L)[:, None] / L + phi)

    def vario(h, L):
        x = 2 * math.pi * cycles(L) * h / L
        return 1 - np.sin(x) / x

    return Planted(f"Fourier, up to {label} cycles", sample, vario, rough=False)


def smooth_plus_noise(ratio: float) -> Planted:
    """The smooth path sin(2 pi w_i k / L + phi_i), w_i ~ N(0, 1) (variance 1/2), plus iid N(0, ratio^2 / 2)
    per layer and entry: noise/signal ratio ``ratio`` in standard deviation;
    gamma(h) = 1 - exp(-(2 pi h / L)^2 / 2) + ratio^2."""

    def sample(L, P, g):
        w, phi = _gauss(1, P, g), _unif(1, P, g) * 2 * math.pi
        smooth = np.sin(2 * math.pi * w * np.arange(L)[:, None] / L + phi)
        return smooth + ratio / math.sqrt(2) * _gauss(L, P, g)

    return Planted(f"smooth + noise {ratio}", sample,
                   lambda h, L: 1 - np.exp(-((2 * math.pi * h / L) ** 2) / 2) + ratio**2, rough=False)


def ornstein_uhlenbeck(theta: float) -> Planted:
    """Stationary OU dZ = -theta Z ds + sqrt(2 theta) dW on s in [0, 1] at s = k/L (unit variance):
    gamma(h) = 2 (1 - exp(-theta h / L))."""

    def sample(L, P, g):
        a = math.exp(-theta / L)
        e = _gauss(L, P, g)
        Z = np.empty((L, P))
        Z[0] = e[0]
        for k in range(1, L):
            Z[k] = a * Z[k - 1] + math.sqrt(1 - a * a) * e[k]
        return Z

    return Planted(f"OU theta={theta:g}", sample, lambda h, L: 2 * (1 - np.exp(-theta * h / L)), rough=True)


def drifted_walk(drift: float) -> Planted:
    """Brownian motion plus a linear drift, mu_i s + B_i(s) at s = k/L, mu_i ~ N(0, drift^2):
    gamma(h) = drift^2 (h/L)^2 + h/L."""

    def sample(L, P, g):
        mu = drift * _gauss(1, P, g)
        return mu * np.arange(1, L + 1)[:, None] / L + np.cumsum(_gauss(L, P, g), 0) / math.sqrt(L)

    return Planted(f"random walk, drift sd {drift:g}", sample, lambda h, L: drift**2 * (h / L) ** 2 + h / L, rough=True)


def _heterogeneous(L, P, g):
    scale = np.exp(_gauss(1, P, g))  # entry scales spread over about two orders of magnitude
    return scale * np.cumsum(_gauss(L, P, g), 0) / math.sqrt(L)


HETEROGENEOUS = Planted("Brownian, lognormal entry scales", _heterogeneous, lambda h, L: h / L, rough=True)

GROUP = 9  # a 3 x 3 conv kernel


def _grouped(L, P, g):
    own = np.cumsum(_gauss(L, P, g), 0)
    shared = np.cumsum(_gauss(L, -(-P // GROUP), g), 0)
    return (own + np.repeat(shared, GROUP, axis=1)[:, :P]) / math.sqrt(2 * L)


GROUPED = Planted("Brownian, entries correlated in groups of 9", _grouped, lambda h, L: h / L, rough=True)


def families() -> list[Planted]:
    """Every planted family of the calibration, in table order."""
    return [fbm(0.1), fbm(0.3), fbm(0.5), fbm(0.7), fbm(0.9), WHITE, GP,
            fourier(lambda L: 1.0, "1"), fourier(lambda L: L / 3, "L/3"),
            smooth_plus_noise(0.01), smooth_plus_noise(0.1), smooth_plus_noise(0.3), smooth_plus_noise(1.0),
            ornstein_uhlenbeck(10.0), ornstein_uhlenbeck(100.0), drifted_walk(3.0), HETEROGENEOUS, GROUPED]


def region(s: float) -> set[str]:
    """The regimes whose Hurst band holds the exponent s (both at a boundary)."""
    out = set()
    if s >= ODE_ABOVE:
        out.add("ode")
    if s <= NONE_BELOW:
        out.add("none")
    if NONE_BELOW <= s <= ODE_ABOVE:
        out.add("sde")
    return out


def wrong_verdicts(family: Planted, lags, L: int) -> set[str]:
    """The verdicts that are wrong for ``family`` at depth L over ``lags`` (the truth table).

    With s the true local exponents: `mixed` is wrong when they spread by at most the tolerance (one
    power law at these scales); `ode`, `sde`, `none` are wrong when they spread by more (a crossover),
    or when no local exponent lies in the verdict's band; `sde` is also wrong for a path with no
    rough part (smooth, noise, or both). `inconclusive` is never wrong (a loss of power)."""
    if len(lags) < 2:
        return {"ode", "sde", "none", "mixed"}
    s = family.local_exponents(lags, L)
    straight = len(s) < 2 or (s.max() - s.min()) <= TOLERANCE
    allowed = set().union(*(region(x) for x in s)) if straight else {"mixed"}
    if not family.rough:
        allowed.discard("sde")
    return {"ode", "sde", "none", "mixed"} - allowed
