import json

from typer.testing import CliRunner

from odecheck.cli import app

runner = CliRunner()


def test_replay_reproduces_a_relu_counterexample(tmp_path):
    cfg = {"activation": "relu", "beta": 1.0, "depths": [9, 36], "dim": 2, "init": "tied", "width": 4}
    res = runner.invoke(app, ["falsify", "tied-init-lipschitz", "--replay", json.dumps(cfg)])
    assert res.exit_code == 0, res.output
    assert ": refuted" in res.output


def test_search_with_nothing_widened_stays_in_scope(tmp_path):
    res = runner.invoke(app, ["falsify", "init-scaling-regimes", "--max-examples", "3",
                              "--json", str(tmp_path / "f.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "f.json").read_text())
    assert out["found"] is False and out["examples"] >= 1


def test_bad_arguments_exit_2():
    for args, needle in ((["nope"], "nope"), (["tied-init-lipschitz", "--widen", "colour"], "colour"),
                         (["tied-init-lipschitz", "--replay", "{not json"], "JSON"),
                         (["tied-init-lipschitz", "--replay", "{}"], "lacks")):
        res = runner.invoke(app, ["falsify", *args])
        assert res.exit_code == 2 and needle in res.output, (args, res.output)


def test_library_errors_name_arguments_and_the_cli_names_flags():
    import pytest
    from odecheck._errors import InvalidArgument
    from odecheck.falsify import falsify, replay

    with pytest.raises(InvalidArgument, match=r"^widen='colour'") as e:
        falsify("tied-init-lipschitz", ("colour",))
    assert e.value.argument == "widen"
    with pytest.raises(InvalidArgument, match=r"^max_examples=0"):
        falsify("tied-init-lipschitz", (), max_examples=0)
    with pytest.raises(InvalidArgument, match=r"^config="):
        replay("tied-init-lipschitz", {})
    res = runner.invoke(app, ["falsify", "tied-init-lipschitz", "--widen", "colour"])
    assert res.exit_code == 2 and "--widen 'colour'" in res.output
    res = runner.invoke(app, ["falsify", "tied-init-lipschitz", "--max-examples", "0"])
    assert res.exit_code == 2 and "--max-examples 0" in res.output


def test_the_standard_parametrization_is_a_counterexample_to_depth_transfer():
    # outside the scope: no residual scaling and one learning rate; its optimum drifts with depth or its
    # laziness contradicts alpha - 1 (either refutes)
    import torch
    from odecheck.falsify import replay

    torch.set_num_threads(1)
    ev = replay("depth-transfer", {"parametrization": "standard", "method": "adam", "block": "mlp",
                                   "activation": "gelu", "width": 16})
    assert ev.verdict == "refuted", ev.details["reason"]
