"""What every reproduction shares: its result and registry entry types, and table helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odecheck.analysis.estimators import scaling_exponent
from odecheck.analysis.estimators.decisions import ALPHA
from odecheck.experiments.verdicts import Verdict

SCALES = ("smoke", "paper")


Result = Verdict  # a reproduction's result is the one verdict record (paper and note set)


@dataclass(frozen=True)
class Reproduction:
    name: str
    source: str
    description: str
    spec: Callable[[str], dict]
    analyse: Callable[[Any, Path, dict], tuple[list[Result], dict]]
    figure: Callable[[dict, list[Result], Path, str], Path]
    # other parametrizations of the same experiment: name -> (spec of a scale, what differs)
    variants: dict[str, tuple[Callable[[str], dict], str]] = field(default_factory=dict)
    # a study that is not a sweep of engine models (c21-cifar's staged conv nets): run(settings, folder,
    # device=..., progress=...) -> table, in process; None: spec(scale) is a sweep spec
    run: Callable[..., Any] | None = None


# ----------------------------------------------------------------------------- shared pieces
def study_folder(folder: Path, settings: dict, name: str) -> Path:
    """The folder of an in-process study (``run``), created if missing and marked with its settings
    (settings.json, with their hash): a folder of other settings is refused, naming ``out``, so that a
    resumed study never mixes records of two settings."""
    import hashlib
    import json

    from odecheck.core._errors import invalid
    from odecheck.core._io import atomic_write
    from odecheck.core.validation import writable_folder

    folder = writable_folder("out", folder)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    marker = folder / "settings.json"
    if marker.exists() and json.loads(marker.read_text()).get("hash") != key:
        raise invalid("out", str(folder), f"a folder of the same {name} settings (choose another --out)")
    atomic_write(marker, lambda f: f.write(json.dumps({"hash": key, **settings}, indent=1).encode()))
    return folder


def slope(depths, values, level=1 - ALPHA):
    """Members-t slope of log(values) in log(depth): values (D, R)."""
    return scaling_exponent(depths, values, level=level)


def by_depth(df, column: str, depth_field: str = "model.depth") -> tuple[list[int], np.ndarray]:
    depths = sorted(df[depth_field].unique())
    vals = np.array([df[df[depth_field] == L].sort_values("member")[column].to_numpy(dtype=float) for L in depths])
    return [int(L) for L in depths], vals


def smoothness(regimes) -> str:
    """Whether trained weights are smooth along depth, from every run's calibrated regime: "yes" if all
    are 'ode', "no" if all are 'sde' or 'none', else "mixed"."""
    if all(r == "ode" for r in regimes):
        return "yes"
    return "no" if all(r in ("sde", "none") for r in regimes) else "mixed"


def smoothness_verdict(regimes, smooth_expected: bool) -> str:
    """confirmed if :func:`smoothness` is what the paper reports, refuted if it is the opposite, else
    inconclusive."""
    ours = smoothness(regimes)
    if ours == "mixed":
        return "inconclusive"
    return "confirmed" if (ours == "yes") == smooth_expected else "refuted"


def cell_weights(out: Path, cell: str, keys=None) -> dict[str, np.ndarray]:
    """A cell's saved weights (``keys`` only, when given: a deep reference's snapshots are large)."""
    with np.load(out / "cells" / cell / "weights.npz") as z:
        return {k: z[k] for k in (z.files if keys is None else keys)}


def ols_beta(depths, values) -> float:
    """[C21]'s exponent: minus the OLS slope of log(value) on log(L), one value per depth."""
    return float(-np.polyfit(np.log(np.asarray(depths, float)), np.log(np.asarray(values, float)), 1)[0])


RESOLUTION = 0.1  # the code states its exponents to one decimal


def code_verdict(code: float, ci: tuple[float, float]) -> str:
    """The code's exponent against ours: refuted if outside our interval; confirmed if inside an interval no
    wider than +-RESOLUTION (the code's one decimal); else inconclusive (too few depths or seeds to tell)."""
    lo, hi = ci
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if not lo <= code <= hi:
        return "refuted"
    return "confirmed" if (hi - lo) / 2 <= RESOLUTION else "inconclusive"
