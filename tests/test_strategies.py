import pytest
from hypothesis import given, settings

import odecheck as oc
from odecheck.strategies import architectures, datasets, derived_seed, initializations, weight_paths


@pytest.mark.parametrize("factory,kwargs,name", [
    (architectures, {"min_depth": 5, "max_depth": 2}, "max_depth"),
    (architectures, {"min_depth": 0}, "min_depth"),
    (architectures, {"activations": ("swish",)}, "activations"),
    (initializations, {"max_hurst": 1.5}, "max_hurst"),
    (initializations, {"kinds": ()}, "kinds"),
    (datasets, {"input_dim": 2, "output_dim": 2, "min_n": 0}, "min_n"),
    (weight_paths, {"kinds": ("pink",)}, "kinds"),
])
def test_strategies_validate_eagerly(factory, kwargs, name):
    with pytest.raises(oc.InvalidArgument, match=name):
        factory(**kwargs)


@settings(max_examples=20, deadline=None)
@given(architectures(max_depth=6))
def test_architectures_build(arch):
    oc.ResNet(**arch, init="iid")


def test_derived_seed_is_a_function_of_structure():
    assert derived_seed("a", 1) == derived_seed("a", 1) != derived_seed("a", 2)
