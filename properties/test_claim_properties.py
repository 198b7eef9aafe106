"""The claims, inside each claim's scope. Hypothesis draws the structure; every statistical sample's
seed is derived from that structure. Each property states its family-wise error bound (FWER) over
the k examples of the active profile."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from odecheck.activations import SMOOTH_ACTIVATIONS
from odecheck.claims import REGISTRY
from odecheck.falsify import PROBES
from odecheck.strategies import derived_seed

import odecheck as oc

from .conftest import examples

ALPHA = 0.05


def _alpha() -> float:
    return ALPHA / examples()  # Bonferroni: FWER <= ALPHA


def _evidence(claim: str, alpha: float | None = None, **fields):
    """The claim's own experiment (the one verify runs) on its falsification preset with ``fields``;
    the sample's seed is derived from the fields."""
    probe = PROBES[claim]
    cfg = probe.config(fields)
    if alpha is not None:
        cfg = cfg.replace(alpha=alpha)
    return REGISTRY[claim].evidence(cfg)


@given(st.sampled_from(SMOOTH_ACTIVATIONS), st.integers(4, 8), st.integers(2, 4))
def test_tied_init_lipschitz_in_scope(act, width, dim):
    # FWER <= 0.05: a refutation needs the whole (1 - 0.05/k) interval above -0.85
    ev = _evidence("tied-init-lipschitz", _alpha(), activation=act, init="tied", beta=1.0, width=width, dim=dim,
                   depths=(32, 128))
    assert ev.verdict != "refuted", ev
    assert ev.estimate < -0.85, ev


@given(st.sampled_from(("tanh", "gelu", "softplus")), st.integers(4, 8), st.integers(2, 4))
def test_trained_ode_limit_in_scope(act, width, dim):
    # deterministic given the derived seed: the trained network's ODE gap shrinks from L to 4L at least
    # as fast as L^-0.85 (the project's rate boundary; the theory says L^-1)
    seed = derived_seed(act, width, dim)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, dim, generator=g, dtype=torch.float64)
    y = torch.randn(8, dim, generator=g, dtype=torch.float64)
    gaps = []
    for L in (16, 64):
        net = oc.ResNet(depth=L, dim=dim, width=width, activation=act, init="tied", ensemble=2, seed=seed,
                        dtype=torch.float64)
        oc.gradient_flow(net, x, y, steps=100, lr=0.05)
        gaps.append(oc.ode_distance(net, x, rtol=1e-8, atol=1e-10).numpy())
    assert np.all(gaps[1] < 4**-0.85 * gaps[0]), gaps


@given(st.sampled_from(oc.ACTIVATIONS), st.integers(4, 8), st.integers(2, 4))
def test_iid_init_rough_in_scope(act, width, dim):
    # FWER <= 0.05 (Bonferroni over k examples)
    ev = _evidence("iid-init-rough", _alpha(), activation=act, init="iid", beta=1.0, width=width, dim=dim,
                   depths=(16, 64))
    assert ev.verdict == "confirmed", ev


@given(st.integers(4, 8), st.integers(10, 16), st.integers(32, 64))
def test_pl_overparameterized_in_scope(n, d, m):
    # FWER <= k * 0.02: the median interval of 16 members has coverage >= 0.98 per example
    ev = _evidence("pl-overparameterized", activation="tanh", samples=n, input_dim=d, width=m)
    assert ev.verdict == "confirmed", ev


@given(st.integers(2, 24), st.floats(1.2, 4.0))
def test_relu_counterexample(L, C):
    # exact (deterministic) property
    net = oc.ResNet(block="single", depth=2 * L, dim=1, activation="relu", init="counterexample", bias=False,
                    dtype=torch.float64)
    w0 = net.weights["W"][0, :, 0, 0].clone()
    x = torch.ones(1, 1, dtype=torch.float64)
    oc.gradient_flow(net, x, C * x, steps=600, lr=0.05)
    w = net.weights["W"][0, :, 0, 0]
    assert torch.equal(w[0::2], w0[0::2])
    wstar = 2 * L * (C ** (1 / L) - 1)
    assert float((w[1::2] - wstar).abs().max()) < 1e-4
    assert float((w[1:] - w[:-1]).abs().max()) >= wstar  # Omega(1): at least w* ~ 2 log C, whatever L


@given(st.sampled_from((0.25, 0.5, 0.75, 1.0)), st.sampled_from(("tanh", "softplus", "identity")))
def test_init_scaling_regimes_in_scope(beta, act):
    # FWER <= 0.05 (Bonferroni over k examples)
    ev = _evidence("init-scaling-regimes", _alpha(), activation=act, init="iid", betas=(beta,))
    assert ev.verdict != "refuted", ev
    if act == "tanh":  # power: with tanh every regime is resolved at these depths
        assert ev.verdict == "confirmed", ev


@given(st.sampled_from(("mlp", "res1")), st.sampled_from(("gelu", "tanh")), st.integers(8, 16))
def test_depth_transfer_in_scope(block, act, width):
    # FWER <= 0.05 (Bonferroni over k examples): CompleteP with Adam is not refuted, and its blocks are not
    # lazier than alpha = 1 predicts
    ev = _evidence("depth-transfer", _alpha(), parametrization="completep", method="adam", block=block,
                   activation=act, width=width)
    assert ev.verdict != "refuted", ev
    assert ev.details["laziness_call"] != "contradicts", ev.details["laziness_call"]


@given(st.sampled_from((0.05, 0.1)), st.sampled_from((12, 16)))
def test_mean_ode_rate_in_scope(eta, width):
    # FWER <= 0.05 (Bonferroni over k examples): tanh mean-field blocks with a small step are not refuted, and
    # the run-to-run spread (resolved at 512 members) is never called contradicting L^-1/2
    ev = _evidence("mean-ode-rate", _alpha(), activation="tanh", eta=eta, width=width, dim=16, method="gradient_flow")
    assert ev.verdict != "refuted", ev
    assert ev.details["spread_call"] != "contradicts", ev.details


@given(st.sampled_from(("mlp", "res1")), st.sampled_from(("tanh", "gelu", "softplus")), st.integers(4, 12))
def test_ode_discretization_in_scope(block, act, width):
    # FWER <= 0.05 (Bonferroni over k examples; inside, over the claim's 7 cells): Lipschitz smooth blocks on
    # smooth weight paths are never refuted - no cell's interval shows the opposite of its prediction
    ev = _evidence("ode-discretization", _alpha(), block=block, activation=act, smooth="smooth(0.3)", width=width)
    assert ev.verdict != "refuted", [(c["label"], c["ci"]) for c in ev.details["cells"]]
