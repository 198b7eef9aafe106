"""Depth parametrizations (standard, Depth-muP, CompleteP) and [CP25]'s laziness statistic: the rules against
their statement, the hidden learning rate and epsilon against hand-written steps, and the laziness against
finite differences on a naive per-layer loop."""

from __future__ import annotations

import math

import pytest
import torch
from odecheck.blocks import REGISTRY
from odecheck.parametrizations import PARAMETRIZATIONS, laziness, parametrization
from odecheck.training import train

import odecheck as oc


@pytest.mark.parametrize("name,alpha,sgd,adam,eps", [
    ("standard", 0.0, 1.0, 1.0, 1.0),
    ("depth-mup", 0.5, 1.0, 4 ** -0.5, 1.0),       # SGD lr flat, Adam lr / sqrt(m_L)
    ("completep", 1.0, 4.0, 1.0, 0.25),            # Adam lr flat, hidden eps / m_L; SGD lr m_L^(2 alpha - 1)
])
def test_each_rule_at_four_times_the_base_depth(name, alpha, sgd, adam, eps):
    p = parametrization(name)
    assert p.alpha == alpha and p.model_options() == {"beta": alpha}
    s = p.optimizer("sgd", lr=0.1, depth=32, base_depth=8, batch_size=4)
    a = p.optimizer("adam", lr=0.1, depth=32, base_depth=8, batch_size=4)
    assert (s.lr, s.hidden_lr) == (0.1, pytest.approx(sgd))
    assert (a.lr, a.hidden_lr, a.hidden_eps) == (0.1, pytest.approx(adam), pytest.approx(eps))
    assert set(PARAMETRIZATIONS) == {"standard", "depth-mup", "completep", "residual-aware"}
    with pytest.raises(oc.InvalidArgument, match="parametrization"):
        parametrization("mup")


def _net(**kw):
    args = dict(block="mlp", depth=6, dim=4, width=5, activation="tanh", init="iid", ensemble=2, seed=0,
                dtype=torch.float64, io_init="gaussian", train_io=True)
    args.update(kw)
    return oc.ResNet(**args)


def test_sgd_hidden_lr_moves_only_the_per_layer_families_faster():
    net, ds = _net(), oc.gaussian_task(4, 4, 4, seed=1, dtype=torch.float64)
    ref = net.clone()
    _, grads = oc.loss_and_grads(ref, ds.x, ds.y)
    train(net, ds, oc.SGD(lr=0.05, batch_size=4, hidden_lr=3.0), steps=1)
    for k, g in grads.items():
        rate = 0.05 * (3.0 if k in ("V", "W") else 1.0)
        torch.testing.assert_close(net.weights[k], ref.weights[k] - rate * g, rtol=1e-12, atol=1e-14)


def test_adam_hidden_eps_scales_epsilon_of_the_per_layer_families_only():
    # first Adam step from zero moments: lr g / (|g| + eps'), with eps' = eps * hidden_eps for V, W
    net, ds = _net(), oc.gaussian_task(4, 4, 4, seed=1, dtype=torch.float64)
    ref = net.clone()
    _, grads = oc.loss_and_grads(ref, ds.x, ds.y)
    train(net, ds, oc.Adam(lr=1e-2, batch_size=4, eps=0.5, hidden_eps=0.1, hidden_lr=2.0), steps=1)
    for k, g in grads.items():
        eps, rate = (0.05, 2e-2) if k in ("V", "W") else (0.5, 1e-2)
        torch.testing.assert_close(net.weights[k], ref.weights[k] - rate * g / (g.abs() + eps), rtol=1e-9, atol=1e-15)


def _laziness_by_differences(cfg: dict, before: dict, after: dict, x: torch.Tensor, eps: float = 1e-4):
    """Hidden states by a naive loop, the linear part by central differences, per member."""
    block = REGISTRY[cfg["block"]]
    L, out = cfg["depth"], []
    extra = {"width_factors": True} if cfg["block"] == "mlp" else {}

    def f(h, z):
        return block.naive_update(h, z, depth=L, beta=cfg["beta"], q=cfg["dim"], m=cfg["width"],
                                  activation=cfg["activation"], **extra)

    for r in range(cfg["ensemble"]):
        h = x @ before["A"][r].T
        lin2 = rest2 = 0.0
        for k in range(L):
            z0 = {g: before[g][r, k] for g in block.families}
            dz = {g: after[g][r, k] - z0[g] for g in block.families}
            plus = f(h, {g: z0[g] + eps * dz[g] for g in z0})
            minus = f(h, {g: z0[g] - eps * dz[g] for g in z0})
            lin = (plus - minus) / (2 * eps)
            rest = f(h, {g: z0[g] + dz[g] for g in z0}) - f(h, z0) - lin
            lin2, rest2 = lin2 + float((lin * lin).sum()), rest2 + float((rest * rest).sum())
            h = h + f(h, z0)
        out.append(math.sqrt(rest2 / lin2))
    return out


@pytest.mark.parametrize("block", ["mlp", "single"])
def test_laziness_against_central_differences(block):
    net, ds = _net(block=block, train_io=False, io_init="identity"), oc.gaussian_task(6, 4, 4, seed=2,
                                                                                         dtype=torch.float64)
    before = {k: v.clone() for k, v in net.weights.items()}
    train(net, ds, oc.SGD(lr=0.5, batch_size=6), steps=1)
    ours = laziness(net, ds.x, before)
    ref = _laziness_by_differences(net.config(), before, {k: v.clone() for k, v in net.weights.items()}, ds.x)
    assert ours.tolist() == pytest.approx(ref, rel=1e-5)
    assert all(v > 0 for v in ref)


def test_a_block_linear_in_its_weights_is_fully_lazy():
    # res1: f = c V sigma(h) is linear in V, so the change is all linear part
    net, ds = _net(block="res1", train_io=False, io_init="identity"), oc.gaussian_task(6, 4, 4, seed=2,
                                                                                         dtype=torch.float64)
    before = {k: v.clone() for k, v in net.weights.items()}
    train(net, ds, oc.SGD(lr=0.5, batch_size=6), steps=1)
    assert laziness(net, ds.x, before).max() < 1e-12


def test_laziness_refuses_blocks_it_does_not_cover():
    net = oc.ResNet(block="conv", depth=2, dim=2 * 4 * 4, width=2, ensemble=1)
    with pytest.raises(oc.InvalidArgument, match="net"):
        laziness(net, torch.zeros(1, 32), dict(net.weights))


def test_the_transfer_grid_trains_each_cell_as_a_direct_call_would():
    # the grid trains each depth's learning rates as one ensemble (per-member factors on the step); each of
    # its cells must equal a direct run of the rule's optimizer at that learning rate on the same seeds
    import numpy as np
    from odecheck.claims import TransferConfig
    from odecheck.parametrizations import final_losses

    cfg = TransferConfig(parametrization="depth-mup", depths=(2, 4, 8), log2_lrs=(-6.0, -4.0, -2.0), steps=3,
                         ensemble=2, lazy_members=2, samples=8, dim=3, width=4, dtype="float64")
    seen = []
    losses = final_losses(cfg, progress=lambda e: seen.append((e.done, e.total)))
    assert losses.shape == (3, 3, 2) and seen[-1] == (3, 3)
    data = oc.teacher_task(8, 3, seed=0, dtype=torch.float64)
    for d, L, g, hidden in ((2, 8, 1, (8 / 8) ** -0.5), (0, 2, 0, 2.0), (1, 4, 2, 2 ** 0.5)):
        # depth L, lr 2^log2_lrs[g]: Adam with hidden lr (L / 8)^-1/2 (twice the base lr at L = 2)
        net = oc.ResNet(block="mlp", depth=L, dim=3, width=4, activation="gelu", init="iid", ensemble=2, seed=0,
                        dtype=torch.float64, beta=0.5)
        ref = train(net, data, oc.Adam(lr=2.0 ** cfg.log2_lrs[g], batch_size=8, hidden_lr=hidden), steps=3).loss[-1]
        np.testing.assert_allclose(losses[d, g], ref, rtol=1e-12)
    with pytest.raises(oc.InvalidArgument, match="depths"):
        TransferConfig(parametrization="standard", depths=(8, 16))
    with pytest.raises(oc.InvalidArgument, match="log2_lrs"):
        TransferConfig(log2_lrs=(0.0, -1.0, 1.0))
    with pytest.raises(oc.InvalidArgument, match="parametrization"):
        TransferConfig(parametrization="mup")


def test_laziness_by_depth_is_the_laziness_of_one_step_of_the_rule():
    import numpy as np
    from odecheck.claims import TransferConfig
    from odecheck.parametrizations import laziness_by_depth

    cfg = TransferConfig(depths=(2, 4, 8), ensemble=3, lazy_members=2, samples=8, dim=3, width=4, lazy_log2_lr=-3.0)
    got = laziness_by_depth(cfg)
    data = oc.teacher_task(8, 3, seed=0, dtype=torch.float64)
    net = oc.ResNet(block="mlp", depth=4, dim=3, width=4, activation="gelu", init="iid", ensemble=2, seed=0,
                    dtype=torch.float64, beta=1.0)
    before = {k: v.clone() for k, v in net.weights.items()}
    train(net, data, oc.Adam(lr=2.0 ** -3, batch_size=8, hidden_eps=2.0), steps=1)  # CompleteP, m_L = 4 / 8: eps / m_L
    np.testing.assert_allclose(got[1], laziness(net, data.x, before).numpy(), rtol=1e-12)
