"""Counterexample search outside each claim's proven scope (needs hypothesis).

A *probe* describes a claim as a small experiment over named configuration fields, with an
in-scope strategy and a widened strategy per field, and a check returning the claim's verdict
with its evidence. :func:`falsify` widens the chosen fields, lets Hypothesis search for a
configuration whose verdict is ``refuted`` and shrinks it to a minimal one. Seeds of the
statistical samples are derived from the configuration, never drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from ._errors import invalid
from .claims.base import Context, rate_decision, rough_decision
from .claims.init_scaling import cell_decision, iid_regime
from .estimators import init_ratios, scaling_exponent
from .flow import gradient_flow
from .init import as_init, member_generator
from .models import ACTIVATIONS, SMOOTH_ACTIVATIONS, ResNet
from .strategies import derived_seed

INITS_ALL = ("tied", "smooth(0.3)", "iid", "fbm(0.3)", "fbm(0.8)", "zero")


@dataclass(frozen=True)
class Probe:
    claim: str
    scope: dict[str, Any]
    widened: dict[str, Any]
    check: Callable[[dict], tuple[str, dict]]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.scope)


def _increment_slopes(cfg: dict, *, steps: int = 200, lr: float = 0.05, R: int = 8, level: float = 0.95
                      ) -> tuple[np.ndarray, object]:
    L = cfg["depth"]
    q, m, n = cfg["dim"], cfg["width"], 10
    seed = derived_seed("falsify", sorted(cfg.items()))
    g = member_generator(seed, 0)
    x = torch.randn(n, q, generator=g, dtype=torch.float64)
    y = torch.randn(n, q, generator=g, dtype=torch.float64)
    D = []
    for depth in (L, 4 * L):
        net = ResNet(block="mlp", depth=depth, dim=q, width=m, activation=cfg["activation"], beta=cfg["beta"],
                     init=cfg["init"], ensemble=R, seed=seed, dtype=torch.float64)
        tr = gradient_flow(net, x, y, steps=steps, lr=lr)
        if tr.diverged.any():
            return np.array([np.nan]), None
        D.append(np.maximum(tr.max_increment.max(0), 1e-300))
    D = np.array(D)
    return D, scaling_exponent([L, 4 * L], D, paired=True, seed=seed, level=level)


def _check_increments(cfg: dict, level: float, decide) -> tuple[str, dict]:
    D, fit = _increment_slopes(cfg, level=level)
    if fit is None:
        return "diverged", {}
    return decide(fit), {"statistic": "max_{k,t} increment at depths L and 4L", "values": D.tolist(),
                         "slope": fit.estimate, "ci": list(fit.ci)}


def _check_tied(cfg: dict, level: float = 0.95) -> tuple[str, dict]:
    return _check_increments(cfg, level, rate_decision)


def _check_iid(cfg: dict, level: float = 0.95) -> tuple[str, dict]:
    return _check_increments(cfg, level, rough_decision)


def _check_pl(cfg: dict) -> tuple[str, dict]:
    from .claims.pl import pl_run

    ctx = Context(seed=derived_seed("pl", sorted(cfg.items())) % 10_000)
    q = max(2 * cfg["input_dim"], 2)
    res = pl_run(ctx, n=cfg["n"], d=cfg["input_dim"], q=q, m=cfg["width"], L=16, R=16, steps=200, lr=0.1,
                 activation=cfg["activation"])
    d = res["details"]
    return res["verdict"], {"retained_pl_fraction": res["estimate"], "ci": list(res["ci"]),
                            "loss_ratio": np.asarray(d.get("loss_ratio", [])).tolist()}


def _check_init(cfg: dict, level: float = 0.95) -> tuple[str, dict]:
    depths = [64, 256, 1024, 4096]
    seed = derived_seed("init", sorted(cfg.items()))
    x = torch.randn(16, 8, generator=member_generator(seed, 0))
    vals = []
    for L in depths:
        net = ResNet(block="res1", depth=L, dim=8, activation=cfg["activation"], beta=cfg["beta"], init=cfg["init"],
                     ensemble=16, seed=seed)
        vals.append(np.maximum(init_ratios(net, x)[0], 1e-300))
    vals = np.array(vals)
    expect = iid_regime(cfg["beta"])
    if not np.all(np.isfinite(vals)):  # overflow: the forward signal exploded
        verdict = "confirmed" if expect == "explodes" else "refuted"
        return verdict, {"statistic": "||h_L - h_0||/||h_0||", "depths": depths, "overflow": True,
                         "predicted_slope_iid": 0.5 - cfg["beta"]}
    fit = scaling_exponent(depths, vals, seed=seed, level=level)
    beta = cfg["beta"]
    # the iid prediction: ratio ~ L^(1/2 - beta); same cell rule as the claim
    verdict = {"ok": "confirmed", "contradicts": "refuted", "unresolved": "inconclusive"}[
        cell_decision(fit.ci, expect)]
    return verdict, {"statistic": "||h_L - h_0||/||h_0|| slope in L", "depths": depths, "slope": fit.estimate,
                     "ci": list(fit.ci), "predicted_slope_iid": 0.5 - beta}


PROBES: dict[str, Probe] = {
    "tied-init-lipschitz": Probe(
        "tied-init-lipschitz",
        # smooth inits need L >> 1/length_scale before increments scale like 1/L: depth 32 with l = 0.3
        scope={"activation": st.sampled_from(SMOOTH_ACTIVATIONS), "init": st.sampled_from(("tied", "smooth(0.3)")),
               "beta": st.just(1.0), "width": st.integers(4, 8), "dim": st.integers(2, 4), "depth": st.just(32)},
        widened={"activation": st.sampled_from(ACTIVATIONS), "init": st.sampled_from(INITS_ALL),
                 "beta": st.sampled_from((1.0, 0.75, 0.5)), "width": st.integers(1, 16), "dim": st.integers(1, 6),
                 "depth": st.integers(4, 32)},
        check=_check_tied),
    "iid-init-rough": Probe(
        "iid-init-rough",
        scope={"activation": st.sampled_from(ACTIVATIONS), "init": st.just("iid"), "beta": st.just(1.0),
               "width": st.integers(4, 8), "dim": st.integers(2, 4), "depth": st.just(16)},
        widened={"activation": st.sampled_from(ACTIVATIONS), "init": st.sampled_from(("iid",) + INITS_ALL),
                 "beta": st.sampled_from((1.0, 0.5)), "width": st.integers(1, 16), "dim": st.integers(1, 6),
                 "depth": st.integers(4, 32)},
        check=_check_iid),
    "pl-overparameterized": Probe(
        "pl-overparameterized",
        scope={"activation": st.just("tanh"), "n": st.integers(4, 8), "input_dim": st.integers(10, 16),
               "width": st.integers(32, 64)},
        widened={"activation": st.sampled_from(ACTIVATIONS), "n": st.integers(4, 40), "input_dim": st.integers(2, 16),
                 "width": st.integers(1, 64)},
        check=_check_pl),
    "init-scaling-regimes": Probe(
        "init-scaling-regimes",
        scope={"activation": st.sampled_from(("tanh",)), "init": st.just("iid"),
               "beta": st.sampled_from((0.25, 0.5, 0.75, 1.0))},
        widened={"activation": st.sampled_from(ACTIVATIONS),
                 "init": st.sampled_from(("iid", "smooth(0.1)", "fbm(0.2)", "fbm(0.8)")),
                 "beta": st.sampled_from((0.25, 0.5, 0.75, 1.0))},
        check=_check_init),
}


@dataclass(frozen=True)
class Counterexample:
    claim: str
    config: dict | None
    verdict: str | None
    evidence: dict
    examples: int
    widened: tuple[str, ...]

    def replay_command(self) -> str:
        if self.config is None:
            return ""
        return f"odecheck falsify {self.claim} --replay '{json.dumps(self.config, sort_keys=True)}'"


def replay(claim: str, config: dict) -> tuple[str, dict]:
    probe = _probe(claim)
    missing = set(probe.fields) - set(config)
    if missing:
        raise invalid("config", config, f"a configuration with every field of {claim} (it lacks {sorted(missing)})")
    if "init" in config:
        as_init(config["init"])
    return probe.check(config)


def _probe(claim: str) -> Probe:
    if claim not in PROBES:
        raise invalid("claim", claim, f"a claim with a falsification probe: {', '.join(PROBES)}")
    return PROBES[claim]


def falsify(claim: str, widen: tuple[str, ...], *, max_examples: int = 25,
            on_example: Callable[[dict, str], None] | None = None) -> Counterexample:
    """Search the widened fields for a configuration where the claim's verdict is ``refuted``; shrink it."""
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    probe = _probe(claim)
    bad = [f for f in widen if f not in probe.fields]
    if bad:
        raise invalid("widen", bad[0], f"fields of {claim}: {', '.join(probe.fields)}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise invalid("max_examples", max_examples, "a positive integer")
    strategy = st.fixed_dictionaries({f: (probe.widened[f] if f in widen else probe.scope[f]) for f in probe.fields})
    cache: dict[str, tuple[str, dict]] = {}
    count = [0]

    def fails(cfg: dict) -> bool:
        key = json.dumps(cfg, sort_keys=True)
        if key not in cache:
            cache[key] = probe.check(cfg)
            count[0] += 1
            if on_example:
                on_example(cfg, cache[key][0])
        return cache[key][0] == "refuted"

    try:
        cfg = find(strategy, fails, settings=settings(max_examples=max_examples, database=None, derandomize=True,
                                                      deadline=None, suppress_health_check=list(HealthCheck)))
    except NoSuchExample:
        return Counterexample(claim, None, None, {}, count[0], tuple(widen))
    verdict, evidence = cache[json.dumps(cfg, sort_keys=True)]
    return Counterexample(claim, cfg, verdict, evidence, count[0], tuple(widen))
