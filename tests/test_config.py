"""Run configurations: every field of [model] is validated when the config is read."""

from __future__ import annotations

import pytest

from odecheck._errors import InvalidArgument
from odecheck.config import RunConfig


@pytest.mark.parametrize("field,value", [("dtype", "float16"), ("block", "conv9"), ("activation", "swish"),
                                         ("depth", 0), ("width", 2.5), ("beta", -1.0), ("init", "fbm(2)"),
                                         ("io_init", "ones"), ("train_io", "yes"), ("delta", "free"),
                                         ("ensemble", 0), ("seed", -3)])
def test_a_bad_model_field_is_named(field, value):
    with pytest.raises(InvalidArgument, match=f"model.{field}"):
        RunConfig.from_dict({"model": {field: value}})


def test_the_default_config_is_valid_and_round_trips():
    cfg = RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_dict({"model": {"dtype": "float64", "init": "smooth(0.2)"}}).model.dtype == "float64"
