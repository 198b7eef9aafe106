"""Each claim: one frozen config (budgets are presets of it), one experiment returning typed
Evidence, called by verify, falsify and the properties alike."""

import dataclasses
import json

import numpy as np
import pytest
from odecheck._errors import InvalidArgument
from odecheck.claims import BUDGETS, REGISTRY, Claim, Context, Evidence, ExperimentConfig, TrainingConfig


@pytest.mark.parametrize("cid", list(REGISTRY))
def test_every_budget_is_a_preset_of_the_claims_one_frozen_config(cid):
    claim = REGISTRY[cid]
    assert tuple(claim.presets) == BUDGETS
    kinds = {type(claim.presets[b]) for b in BUDGETS}
    assert len(kinds) == 1 and issubclass(kinds.pop(), ExperimentConfig)
    cfg = claim.config("quick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    assert claim.config("quick", seed=7).seed == 7 and cfg.seed == 0  # replace copies
    # a config is JSON: what the report records round-trips into the same config
    again = type(cfg)(**json.loads(json.dumps(cfg.to_json())))
    assert again == cfg


def test_config_fields_are_validated_and_errors_name_the_field():
    cfg = REGISTRY["tied-init-lipschitz"].config("quick")
    for change, name in (({"colour": 1}, "config"), ({"depths": (16,)}, "depths"), ({"depths": (16, -2)}, "depths"),
                         ({"ensemble": 0}, "ensemble"), ({"lr": -1.0}, "lr"), ({"activation": "swish"}, "activation"),
                         ({"init": "gaussian"}, "init"), ({"dtype": "float16"}, "dtype"), ({"alpha": 1.5}, "alpha"),
                         ({"seed": -1}, "seed")):
        with pytest.raises(InvalidArgument) as e:
            cfg.replace(**change)
        assert e.value.argument == name, (change, e.value)
    assert cfg.replace(depths=[8, 16]).depths == (8, 16)  # lists from JSON become tuples
    with pytest.raises(InvalidArgument, match="^depths="):
        REGISTRY["relu-counterexample"].evidence(REGISTRY["relu-counterexample"].config("quick", depths=(15, 16)))
    with pytest.raises(InvalidArgument, match="^config="):  # another claim's config
        REGISTRY["relu-counterexample"].evidence(REGISTRY["tied-init-lipschitz"].config("quick"))
    with pytest.raises(InvalidArgument, match="^budget="):
        REGISTRY["relu-counterexample"].config("huge")


def test_diverged_evidence_has_no_estimate_and_verify_reports_it():
    ev = Evidence.diverged(depths=[4, 8])
    assert ev.verdict == "diverged" and np.isnan(ev.estimate) and all(np.isnan(ev.ci)) and ev.n == 0
    assert ev.figure is None and ev.details == {"depths": [4, 8]}
    assert ev.to_json()["estimate"] is None
    # a step far beyond stability: gradient flow leaves the finite numbers at every depth
    claim = REGISTRY["tied-init-lipschitz"]
    cfg = claim.config("quick", depths=(4, 8), ensemble=2, steps=30, lr=1e4, samples=8, dim=2, width=4)
    assert claim.evidence(cfg).verdict == "diverged"


def test_verify_falsify_and_properties_call_the_same_experiment(monkeypatch, tmp_path):
    calls = []
    original = Claim.evidence

    def spy(self, config, progress=lambda f: None):
        calls.append((self.id, config))
        return original(self, config, progress)

    monkeypatch.setattr(Claim, "evidence", spy)
    from odecheck.falsify import PROBES, replay
    from odecheck.verification import verify

    rep = verify(["init-scaling-regimes"], budget="quick", device="cpu", out=tmp_path, resume=False)
    assert calls[-1] == ("init-scaling-regimes", REGISTRY["init-scaling-regimes"].config("quick"))
    assert rep["claims"][0]["config"] == REGISTRY["init-scaling-regimes"].config("quick").to_json()
    values = {"activation": "tanh", "init": "iid", "betas": [0.75]}
    ev = replay("init-scaling-regimes", values)
    cid, cfg = calls[-1]
    assert cid == "init-scaling-regimes" and cfg == PROBES[cid].config(values)
    assert cfg.betas == (0.75,) and cfg.smooth_controls == ()  # falsify widened fields of the config
    assert ev.verdict == "confirmed" and ev.details["cells"][0]["expected"] == "identity"


def test_falsify_probes_search_fields_of_their_claims_config():
    from odecheck.falsify import PROBES

    for cid, probe in PROBES.items():
        names = {f.name for f in dataclasses.fields(probe.base)}
        assert isinstance(probe.base, type(REGISTRY[cid].presets["standard"]))
        assert set(probe.scope) == set(probe.widened) and set(probe.scope) <= names, cid
    # the seed of the sample is a function of the searched values, not drawn
    p = PROBES["tied-init-lipschitz"]
    v = {"activation": "tanh", "init": "tied", "beta": 1.0, "width": 4, "dim": 2, "depths": (32, 128)}
    assert p.config(v).seed == p.config(dict(v)).seed != p.config({**v, "width": 5}).seed


def test_training_config_defaults_are_the_standard_preset_of_tied_init_lipschitz():
    assert REGISTRY["tied-init-lipschitz"].presets["standard"] == TrainingConfig()


def test_verdict_json_records_figure_kind_and_config():
    v = REGISTRY["relu-counterexample"].run(Context(budget="quick"))
    j = v.to_json()
    assert v.figure == "loglog" and j["details"]["plot"] == "loglog"
    assert j["config"]["depths"] == [16, 32, 64] and j["config"]["alpha"] == v.alpha
