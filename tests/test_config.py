"""Run configurations: every field of [model] is validated when the config is read."""

from __future__ import annotations

import pytest
from odecheck._errors import InvalidArgument
from odecheck.config import RunConfig


@pytest.mark.parametrize("field,value", [("dtype", "float16"), ("block", "conv9"), ("activation", "swish"),
                                         ("depth", 0), ("width", 2.5), ("beta", -1.0), ("init", "fbm(2)"),
                                         ("io_init", "ones"), ("train_io", "yes"), ("delta", "free"),
                                         ("ensemble", 0), ("seed", -3), ("init_scale", 0.0),
                                         ("init_scale", -1.0), ("init_scale", "big")])
def test_a_bad_model_field_is_named(field, value):
    with pytest.raises(InvalidArgument, match=f"model.{field}"):
        RunConfig.from_dict({"model": {field: value}})


def test_the_default_config_is_valid_and_round_trips():
    cfg = RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_dict({"model": {"dtype": "float64", "init": "smooth(0.2)"}}).model.dtype == "float64"


def test_init_scale_scales_every_entry_and_is_written_only_when_set():
    """model.init_scale = s: the block weights are s times those of the unit-scale init with the same
    seed (fbm and iid); a config without it dumps as before, so sweep cell ids do not change."""
    import numpy as np
    import torch
    from odecheck.runner import build_data, build_model

    assert "init_scale" not in RunConfig().dumps()
    for init in ("iid", "fbm(0.3)"):
        base = {"model": {"block": "res1", "dim": 5, "depth": 12, "init": init, "dtype": "float64"}, "data": {"n": 4}}
        scaled = {**base, "model": {**base["model"], "init_scale": 0.25}}
        cfg1, cfg2 = RunConfig.from_dict(base), RunConfig.from_dict(scaled)
        assert "init_scale = 0.25" in cfg2.dumps() and RunConfig.from_dict(cfg2.to_dict()) == cfg2
        data = build_data(cfg1, torch.float64)
        w1 = build_model(cfg1, data).numpy_weights()["V"]
        w2 = build_model(cfg2, data).numpy_weights()["V"]
        np.testing.assert_array_equal(w2, 0.25 * w1)
