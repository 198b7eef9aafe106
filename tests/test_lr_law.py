"""Claim 13's pieces: the law call at its band edges, the bisection for the largest stable learning rate against
a direct scan, the one-step update energy against a plain autograd loop, and the residual-aware initialization."""

import numpy as np
import pytest
import torch
from odecheck.estimators.decisions import law_call
from odecheck.models import ResNet

from odecheck.experiments.claims.lr_law import BISECTIONS, LawConfig, effective_depth, max_stable_log2_lr, update_energy
from odecheck.experiments.parametrizations import parametrization


@pytest.mark.parametrize("ci,call", [((-1.59, -1.41), "confirmed"), ((-1.6, -1.41), "inconclusive"),
                                     ((-1.59, -1.4), "inconclusive"), ((-1.39, -0.9), "refuted"),
                                     ((-2.0, -1.61), "refuted"), ((-1.7, -1.3), "inconclusive")])
def test_law_call_at_its_band_edges(ci, call):
    # band 0.1 around -3/2: strictly inside confirms, strictly outside refutes, touching an edge decides nothing
    assert law_call(ci, -1.5, 0.1) == call


def test_residual_aware_init_scales_the_last_branch_layer_only():
    p = parametrization("residual-aware")
    kw = dict(block="mlp", depth=16, dim=4, width=6, init="iid", ensemble=2, seed=3, beta=p.alpha)
    plain, scaled = ResNet(**kw), p.initialize(ResNet(**kw))
    torch.testing.assert_close(scaled.weights["V"], plain.weights["V"] / 4.0)  # std L^-1/2: Var = 1 / (L fan-in)
    torch.testing.assert_close(scaled.weights["W"], plain.weights["W"])
    assert p.alpha == 0.0 and effective_depth(16) == 18
    # res1 has no fan-in factor in the block: the init carries it (Var = 1 / (L q))
    kw1 = dict(block="res1", depth=16, dim=9, init="iid", ensemble=2, seed=3, beta=0.0)
    torch.testing.assert_close(p.initialize(ResNet(**kw1)).weights["V"], ResNet(**kw1).weights["V"] / 12.0)


def test_bisection_finds_the_stable_edge_a_scan_finds():
    cfg = LawConfig(depths=(4, 8, 16), ensemble=2, lazy_members=2, steps=10, controls=())
    edge = max_stable_log2_lr(cfg, 8)
    lo, hi = cfg.log2_lrs[0], cfg.log2_lrs[-1]
    resolution = (hi - lo) / 2**BISECTIONS
    # a scan at the resolution, each member on its own: stable means finite and not above the start
    from odecheck.data import teacher_task
    from odecheck.training import train

    p = parametrization(cfg.parametrization)
    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed)
    seeds = p.initialize(ResNet(block="mlp", depth=8, dim=cfg.dim, width=cfg.width, activation=cfg.activation,
                                init="iid", ensemble=2, seed=cfg.seed, beta=0.0))
    grid = np.arange(lo, hi + 1e-9, resolution / 2)
    for r in range(2):
        net = ResNet.from_weights(block="mlp", V=seeds.weights["V"][r:r + 1].double().numpy(),
                                  W=seeds.weights["W"][r:r + 1].double().numpy(), activation=cfg.activation,
                                  beta=0.0, dtype=torch.float32)
        from odecheck.optim import optimizer

        opt = optimizer("sgd", lr=1.0, batch_size=cfg.samples, member_lr=tuple(float(2.0**x) for x in grid))
        big = ResNet.from_weights(block="mlp", V=np.repeat(net.weights["V"].double().numpy(), len(grid), 0),
                                  W=np.repeat(net.weights["W"].double().numpy(), len(grid), 0),
                                  activation=cfg.activation, beta=0.0, dtype=torch.float32)
        loss = train(big, data, opt, steps=cfg.steps).loss
        ok = np.isfinite(loss[-1]) & (loss[-1] <= loss[0])
        first_bad = grid[np.argmin(ok)] if not ok.all() else np.inf
        assert abs(edge[r] - first_bad) <= resolution, (edge[r], first_bad)


def test_update_energy_is_the_first_order_change_of_a_plain_loop():
    cfg = LawConfig(depths=(4, 8, 16), block="res1", ensemble=2, lazy_members=2, energy_members=2, controls=(),
                    dim=4, samples=6)
    E = update_energy(cfg, 8)
    from odecheck.data import teacher_task

    p = parametrization("residual-aware")
    data = teacher_task(cfg.samples, cfg.dim, seed=cfg.seed, dtype=torch.float64)
    net = p.initialize(ResNet(block="res1", depth=8, dim=4, activation=cfg.activation, init="iid", ensemble=2,
                              seed=cfg.seed, dtype=torch.float64, beta=0.0))
    from odecheck.activations import activate

    for r in range(2):
        V = net.weights["V"][r].clone().requires_grad_(True)  # (L, q, q); A = B = I, not trained

        def states(V):
            h, hs = data.x, []
            for k in range(8):
                h = h + activate(cfg.activation, h) @ V[k].T
                hs.append(h)
            return torch.stack(hs)

        loss = ((states(V)[-1] - data.y) ** 2).sum(-1).mean()
        (g,) = torch.autograd.grad(loss, V)
        _, dh = torch.func.jvp(states, (V.detach(),), (-g,))  # d h_k / d lr at lr = 0
        assert E[r] == pytest.approx(float((dh**2).mean(dim=(1, 2)).sum()), rel=1e-4)


def test_conv_blocks_take_the_residual_aware_init_and_need_a_square_map():
    from odecheck._errors import InvalidArgument

    p = parametrization("residual-aware")
    kw = dict(block="conv", depth=9, dim=64, width=4, init="iid", ensemble=2, seed=1, beta=0.0)
    plain, scaled = ResNet(**kw), p.initialize(ResNet(**kw))
    torch.testing.assert_close(scaled.weights["V"], plain.weights["V"] / 3.0)  # the block's 1/sqrt(9c) is its fan-in
    torch.testing.assert_close(scaled.weights["W"], plain.weights["W"])
    with pytest.raises(InvalidArgument) as e:
        LawConfig(block="conv", dim=60, width=4)
    assert e.value.argument == "dim"
    assert LawConfig(block="conv", dim=64, width=4).block == "conv"


def test_further_blocks_are_validated_configs_without_controls():
    from odecheck._errors import InvalidArgument

    cfg = LawConfig(controls=("completep",), also=({"block": "conv", "dim": 16, "width": 4, "depths": [4, 8, 16]},))
    conv = cfg.further(cfg.also[0])
    assert conv.block == "conv" and conv.depths == (4, 8, 16) and conv.controls == () and conv.also == ()
    assert conv.steps == cfg.steps and conv.parametrization == cfg.parametrization  # the rest as the first block's
    cases = [(({"block": "conv", "dim": 60, "width": 4},), "dim"), (({"blocks": "conv"},), "config"),
             ("conv", "also"), (({"also": ()},), "also"), ([{"block": "nope"}], "block")]
    for bad, field in cases:
        with pytest.raises(InvalidArgument) as e:
            LawConfig(also=bad)
        assert e.value.argument == field, (bad, e.value)
