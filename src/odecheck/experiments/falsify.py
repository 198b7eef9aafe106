"""Counterexample search outside each claim's proven scope (needs hypothesis).

A *probe* runs a claim's own experiment (the function ``verify`` runs) on a small preset of the
claim's frozen config, with an in-scope strategy and a widened strategy for each searchable field
of that config. :func:`falsify` widens the chosen fields, lets Hypothesis search for a configuration
whose verdict is ``refuted`` and shrinks it to a minimal one. Seeds of the statistical samples are
derived from the configuration, never drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from odecheck.analysis.estimators.decisions import BETAS
from odecheck.core._errors import invalid
from odecheck.engine.activations import ACTIVATIONS, SMOOTH_ACTIVATIONS
from odecheck.experiments.claims import REGISTRY
from odecheck.experiments.claims.base import Evidence, ExperimentConfig
from odecheck.experiments.claims.discretization import DiscretizationConfig
from odecheck.experiments.claims.init_scaling import InitScalingConfig
from odecheck.experiments.claims.mean_ode import MeanOdeConfig
from odecheck.experiments.claims.pl import PLConfig
from odecheck.experiments.claims.rates import TrainingConfig
from odecheck.experiments.claims.transfer import TransferConfig
from odecheck.experiments.strategies import derived_seed

INITS_ALL = ("tied", "smooth(0.3)", "iid", "fbm(0.3)", "fbm(0.8)", "zero")


def _quadruple(L: int) -> tuple[int, int]:
    return (L, 4 * L)


@dataclass(frozen=True)
class Probe:
    """A claim's experiment at a small budget (``base``, a preset of the claim's config) with, for each
    searchable config field, an in-scope strategy (``scope``) and a widened one (``widened``)."""

    claim: str
    base: ExperimentConfig
    scope: dict[str, Any]
    widened: dict[str, Any]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.scope)

    def config(self, values: dict) -> ExperimentConfig:
        """The base config with ``values`` (one per searchable field) applied; the seed of every
        statistical sample is a fixed function of those values, never drawn."""
        seed = derived_seed(self.claim, json.dumps(values, sort_keys=True, default=str))
        return self.base.replace(**values, seed=seed)

    def check(self, values: dict) -> Evidence:
        return REGISTRY[self.claim].evidence(self.config(values))


# The falsification budget of the increment claims: depths L and 4L, 8 members, float64 gradient flow
# on 10 Gaussian pairs (200 Euler steps of 0.05).
_INCREMENTS = TrainingConfig(depths=(32, 128), ensemble=8, steps=200, lr=0.05, samples=10, dtype="float64")
_DEPTHS_WIDE = st.integers(4, 32).map(_quadruple)

PROBES: dict[str, Probe] = {
    "tied-init-lipschitz": Probe(
        "tied-init-lipschitz", _INCREMENTS,
        # smooth inits need L >> 1/length_scale before increments scale like 1/L: depth 32 with l = 0.3
        scope={"activation": st.sampled_from(SMOOTH_ACTIVATIONS), "init": st.sampled_from(("tied", "smooth(0.3)")),
               "beta": st.just(1.0), "width": st.integers(4, 8), "dim": st.integers(2, 4),
               "depths": st.just((32, 128))},
        widened={"activation": st.sampled_from(ACTIVATIONS), "init": st.sampled_from(INITS_ALL),
                 "beta": st.sampled_from((1.0, 0.75, 0.5)), "width": st.integers(1, 16), "dim": st.integers(1, 6),
                 "depths": _DEPTHS_WIDE}),
    "iid-init-rough": Probe(
        "iid-init-rough", _INCREMENTS.replace(init="iid", depths=(16, 64)),
        scope={"activation": st.sampled_from(ACTIVATIONS), "init": st.just("iid"), "beta": st.just(1.0),
               "width": st.integers(4, 8), "dim": st.integers(2, 4), "depths": st.just((16, 64))},
        widened={"activation": st.sampled_from(ACTIVATIONS), "init": st.sampled_from(("iid",) + INITS_ALL),
                 "beta": st.sampled_from((1.0, 0.5)), "width": st.integers(1, 16), "dim": st.integers(1, 6),
                 "depths": _DEPTHS_WIDE}),
    "pl-overparameterized": Probe(
        "pl-overparameterized", PLConfig(depth=16, ensemble=16, steps=200, lr=0.1),
        scope={"activation": st.just("tanh"), "samples": st.integers(4, 8), "input_dim": st.integers(10, 16),
               "width": st.integers(32, 64)},
        widened={"activation": st.sampled_from(ACTIVATIONS), "samples": st.integers(4, 40),
                 "input_dim": st.integers(2, 16), "width": st.integers(1, 64)}),
    "init-scaling-regimes": Probe(
        "init-scaling-regimes",
        # one cell per example: the iid prediction at one beta, no smooth control
        InitScalingConfig(depths=(64, 256, 1024, 4096), ensemble=16, dim=8, samples=16, smooth_controls=()),
        scope={"activation": st.sampled_from(("tanh",)), "init": st.just("iid"),
               "betas": st.sampled_from(BETAS).map(lambda b: (b,))},
        widened={"activation": st.sampled_from(ACTIVATIONS),
                 "init": st.sampled_from(("iid", "smooth(0.1)", "fbm(0.2)", "fbm(0.8)")),
                 "betas": st.sampled_from(BETAS).map(lambda b: (b,))}),
    "depth-transfer": Probe(
        # depths 8..32, 8 seeds, learning rates 2^-5..2^1 (past the optimum on both sides for the three rules)
        "depth-transfer", TransferConfig(depths=(8, 16, 32), ensemble=8, log2_lrs=tuple(float(x) for x in range(-5, 2))),
        scope={"parametrization": st.just("completep"), "method": st.just("adam"),
               "block": st.sampled_from(("mlp", "res1")), "activation": st.sampled_from(("gelu", "tanh")),
               "width": st.integers(8, 16)},
        widened={"parametrization": st.sampled_from(("completep", "depth-mup", "standard")),
                 "method": st.sampled_from(("adam", "sgd")), "block": st.sampled_from(("mlp", "res1", "single")),
                 "activation": st.sampled_from(ACTIVATIONS), "width": st.integers(2, 32)}),
    "mean-ode-rate": Probe(
        # depths 4..32, 512 members: the spread is resolved, the bias may be declined (more members)
        "mean-ode-rate", MeanOdeConfig(depths=(4, 8, 16, 32), ensemble=512),
        scope={"activation": st.just("tanh"), "eta": st.sampled_from((0.05, 0.1)), "width": st.sampled_from((12, 16)),
               "dim": st.just(16), "method": st.just("gradient_flow")},
        widened={"activation": st.sampled_from(ACTIVATIONS), "eta": st.sampled_from((0.05, 0.1, 0.3, 1.0)),
                 "width": st.integers(1, 64), "dim": st.integers(10, 32),
                 "method": st.sampled_from(("gradient_flow", "adam"))}),
    "ode-discretization": Probe(
        # depths 16..128, 6 members: Lipschitz smooth activations and smooth weight paths in scope; widened,
        # non-differentiable relu, rough fbm(0.3) or tied weights as the 'smooth' family, wide length scales
        "ode-discretization", DiscretizationConfig(depths=(16, 32, 64, 128), steps=100),
        scope={"block": st.sampled_from(("mlp", "res1")), "activation": st.sampled_from(("tanh", "gelu", "softplus")),
               "smooth": st.sampled_from(("smooth(0.2)", "smooth(0.3)")), "width": st.integers(4, 12)},
        widened={"block": st.sampled_from(("mlp", "res1")), "activation": st.sampled_from(ACTIVATIONS),
                 "smooth": st.sampled_from(("smooth(0.05)", "smooth(0.3)", "fbm(0.3)", "fbm(0.8)", "tied")),
                 "width": st.integers(1, 32)}),
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

    def to_json(self) -> dict:
        return {"claim": self.claim, "widened": list(self.widened), "examples": self.examples,
                "found": self.config is not None, "config": self.config, "verdict": self.verdict,
                "evidence": self.evidence, "replay": self.replay_command()}

    def text(self) -> str:
        """What the search found, in a few lines."""
        if self.config is None:
            return f"no counterexample to {self.claim} in {self.examples} configurations with {list(self.widened)} widened"
        return "\n".join([f"counterexample to {self.claim} (verdict {self.verdict}) after {self.examples} configurations:",
                          "  config:   " + json.dumps(self.config, sort_keys=True),
                          "  evidence: " + json.dumps(_brief(self.evidence), default=float),
                          "  replay:   " + self.replay_command()])


def replay(claim: str, config: dict | str) -> Evidence:
    """Re-run ``claim``'s probe on ``config`` (the searchable fields, as ``falsify`` reports them; a dict or its
    JSON text)."""
    probe = _probe(claim)
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise invalid("config", config, "valid JSON") from None
    if not isinstance(config, dict):
        raise invalid("config", config, "a JSON object of field values")
    missing = set(probe.fields) - set(config)
    if missing:
        raise invalid("config", config, f"a configuration with every field of {claim} (it lacks {sorted(missing)})")
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
    cache: dict[str, Evidence] = {}
    count = [0]

    def fails(cfg: dict) -> bool:
        key = json.dumps(cfg, sort_keys=True)
        if key not in cache:
            cache[key] = probe.check(cfg)
            count[0] += 1
            if on_example:
                on_example(cfg, cache[key].verdict)
        return cache[key].verdict == "refuted"

    try:
        cfg = find(strategy, fails, settings=settings(max_examples=max_examples, database=None, derandomize=True,
                                                      deadline=None, suppress_health_check=list(HealthCheck)))
    except NoSuchExample:
        return Counterexample(claim, None, None, {}, count[0], tuple(widen))
    ev = cache[json.dumps(cfg, sort_keys=True)]
    return Counterexample(claim, _plain(cfg), ev.verdict, ev.to_json(), count[0], tuple(widen))


def _brief(evidence: dict) -> dict:
    """The evidence with its details' scalars only (the per-depth arrays stay in the JSON output)."""
    details = {k: v for k, v in (evidence.get("details") or {}).items()
               if isinstance(v, (str, int, float, bool)) or v is None}
    return {**{k: v for k, v in evidence.items() if k != "details"}, "details": details}


def _plain(cfg: dict) -> dict:
    """Field values as JSON has them (tuples as lists), so that replay gets back what it printed."""
    return json.loads(json.dumps(cfg))
