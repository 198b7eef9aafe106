"""The mlp block without its width factors, h + alpha_L V sigma(W h) ([M24]'s public script for Fig. 2),
against the script's computation written out plainly: a per-layer loop with autograd and SGD."""

from __future__ import annotations

import pytest
import torch
from odecheck._errors import InvalidArgument
from odecheck.blocks.mlp import MLP

import odecheck as oc


def _net(**kw):
    base = dict(block="mlp", depth=6, dim=4, width=7, activation="gelu", init="tied", ensemble=2, seed=3,
                dtype=torch.float64, width_factors=False)
    return oc.ResNet(**{**base, **kw})


def test_forward_is_the_plain_loop_without_width_factors():
    net = _net(init="iid")
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = net.numpy_weights()
    for r in range(2):
        h = x.clone()
        for k in range(6):
            V, W = torch.tensor(w["V"][r, k]), torch.tensor(w["W"][r, k])
            h = h + torch.nn.functional.gelu(h @ W.T) @ V.T / 6  # x + sigma(x W) V / N, N = L
        torch.testing.assert_close(net(x)[r], h, rtol=1e-12, atol=1e-12)
    # and it differs from the normalized block by exactly the factors
    normalized = oc.ResNet.from_weights(block="mlp", V=w["V"], W=w["W"], dtype=torch.float64)
    scaled = oc.ResNet.from_weights(block="mlp", V=w["V"] * 7**0.5, W=w["W"] * 4**0.5, dtype=torch.float64)
    torch.testing.assert_close(scaled(x), net(x), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(normalized(x), net(x))
    z = {"V": torch.tensor(w["V"][0, 0]), "W": torch.tensor(w["W"][0, 0])}
    ref = torch.nn.functional.gelu(x @ z["W"].T) @ z["V"].T / 6
    torch.testing.assert_close(MLP.naive_update(x, z, depth=6, beta=1.0, q=4, m=7, activation="gelu",
                                                width_factors=False), ref)


def test_gradient_flow_is_the_scripts_sgd():
    # the script: loss = mean over n x d of (F(x) - y)^2, full-batch SGD with lr_s on every V_k, W_k.
    # odecheck's loss is (1/n) sum ||F - y||^2 = d x that, and block weights move by L * lr * grad, so
    # lr = lr_s / (L d) is the same update
    L, d, m, n, lr_s, steps = 6, 4, 7, 9, 0.32, 5
    net = _net(depth=L, dim=d, width=m, ensemble=1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    w0 = net.numpy_weights()
    assert (w0["V"] == 0).all() and (w0["W"] == w0["W"][:, :1]).all()  # V = 0, W_k = W_0 tied
    V = [torch.tensor(w0["V"][0, k], requires_grad=True) for k in range(L)]
    W = [torch.tensor(w0["W"][0, k], requires_grad=True) for k in range(L)]
    for _ in range(steps):
        h = x
        for k in range(L):
            h = h + torch.nn.functional.gelu(h @ W[k].T) @ V[k].T / L
        loss = ((h - y) ** 2).mean()
        grads = torch.autograd.grad(loss, V + W)
        with torch.no_grad():
            for p, gp in zip(V + W, grads, strict=True):
                p -= lr_s * gp
    traj = oc.gradient_flow(net, x, y, steps=steps, lr=lr_s / (L * d))
    w = net.numpy_weights()
    for k in range(L):
        torch.testing.assert_close(torch.tensor(w["V"][0, k]), V[k].detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.tensor(w["W"][0, k]), W[k].detach(), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        h = x
        for k in range(L):
            h = h + torch.nn.functional.gelu(h @ W[k].T) @ V[k].T / L
        final = float(((h - y) ** 2).mean())
    assert traj.loss[-1, 0] == pytest.approx(d * final, rel=1e-10)  # odecheck's loss is d x the script's


def test_only_the_mlp_block_drops_its_width_factors():
    with pytest.raises(InvalidArgument, match="^width_factors=False: expected True unless block='mlp'"):
        oc.ResNet(block="res1", depth=4, dim=3, width_factors=False)
    with pytest.raises(InvalidArgument, match="^width_factors="):
        oc.ResNet(block="mlp", depth=4, dim=3, width_factors="no")
    from odecheck.config import ModelConfig

    with pytest.raises(InvalidArgument, match="^model.width_factors"):
        ModelConfig(block="single", width_factors=False)
    assert ModelConfig(width_factors=False).width_factors is False
    assert _net().config()["width_factors"] is False


def test_cell_ids_of_configs_without_the_option_are_unchanged():
    from odecheck.config import ModelConfig, RunConfig
    from odecheck.sweeps import cell_id

    # the id a default config had before width_factors existed (main at 6d4ab3d)
    assert cell_id(RunConfig()) == "8b23a32754bd"
    cfg = RunConfig(model=ModelConfig(width_factors=False))
    assert cell_id(cfg) != "8b23a32754bd" and RunConfig.from_dict(cfg.to_dict()).model.width_factors is False
