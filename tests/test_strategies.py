import pytest
import torch
from helpers import naive_forward
from hypothesis import given, settings
from odecheck.strategies import architectures, datasets, derived_seed, initializations, weight_paths

import odecheck as oc


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
    """Every drawn architecture is a network of the drawn shape whose forward pass is the naive loop's."""
    net = oc.ResNet(**arch, init="iid", dtype=torch.float64)
    assert (net.depth, net.ensemble, net.dim) == (arch["depth"], arch["ensemble"], arch["dim"])
    x = torch.randn(3, arch["input_dim"], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = net(x)
    assert out.shape == (arch["ensemble"], 3, arch["output_dim"])
    torch.testing.assert_close(out, naive_forward(net, x), rtol=1e-12, atol=1e-12)


def test_derived_seed_is_a_function_of_structure():
    assert derived_seed("a", 1) == derived_seed("a", 1) != derived_seed("a", 2)
