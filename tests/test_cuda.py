"""CUDA paths: run on a GPU (the `cuda` tox environment), skipped cleanly where none is visible."""

from __future__ import annotations

import pytest
import torch
from helpers import rounding_bound
from odecheck._errors import InvalidArgument
from odecheck.bench import engine_path, path_difference
from odecheck.flow import EngineOptions, gradient_flow
from odecheck.models import ResNet

from odecheck import _kernels as K

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def _net(device, block="mlp", **kw):
    return ResNet(block=block, depth=kw.pop("depth", 12), dim=16, width=32, activation="gelu", init="iid",
                  ensemble=kw.pop("ensemble", 3), seed=0, device=device, **kw)


def test_cuda_graph_needs_a_cuda_device():
    net = _net("cpu")
    x, y = torch.randn(10, 16), torch.randn(10, 16)
    with pytest.raises(InvalidArgument, match="device"):
        K.GraphedLossAndGrads(net, x, y)
    with pytest.raises(InvalidArgument, match="engine.cuda_graph"):
        gradient_flow(net, x, y, steps=1, lr=1e-2, engine=EngineOptions(cuda_graph=True))


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("block", ["mlp", "single", "res1"])
def test_graph_replay_equals_eager_step_after_in_place_updates(block):
    net = _net("cuda", block=block)
    eager = net.clone()
    x, y = torch.randn(10, 16, device="cuda"), torch.randn(10, 16, device="cuda")
    graphed = K.GraphedLossAndGrads(net, x, y)
    for _ in range(3):
        loss, grads = graphed()
        loss_e, grads_e = K.loss_and_grads(eager, x, y)
        # the same kernels replayed: equal up to a change of cuBLAS algorithm, within the rounding bound
        tol = 2 * rounding_bound(12, 16, 32, 10)
        torch.testing.assert_close(loss, loss_e, rtol=tol, atol=0)
        for name in net.trainable:
            torch.testing.assert_close(grads[name], grads_e[name], rtol=tol, atol=tol * grads_e[name].abs().max().item())
        net.update_(net.public({k: grads[k] for k in net.trainable}), 0.1)  # in place: the graph's storage stays
        eager.update_(eager.public({k: grads_e[k] for k in eager.trainable}), 0.1)


@pytest.mark.cuda
@cuda
def test_graph_refuses_reallocated_weights():
    net = _net("cuda")
    x, y = torch.randn(10, 16, device="cuda"), torch.randn(10, 16, device="cuda")
    graphed = K.GraphedLossAndGrads(net, x, y)
    net._p["V"] = net._p["V"].clone()
    with pytest.raises(InvalidArgument, match="reallocated"):
        graphed()


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("recompute", [None, 5])
def test_gradient_flow_with_cuda_graph_matches_eager(recompute):
    x, y = torch.randn(20, 16, device="cuda"), torch.randn(20, 16, device="cuda")
    a, b = _net("cuda", depth=16), _net("cuda", depth=16)
    ta = gradient_flow(a, x, y, steps=5, lr=1e-2, engine=EngineOptions(cuda_graph=True, recompute=recompute))
    tb = gradient_flow(b, x, y, steps=5, lr=1e-2, engine=EngineOptions(recompute=recompute))
    tol = 5 * 2 * rounding_bound(16, 16, 32, 20)  # 5 steps, each within twice the bound of one pass
    assert ta.loss == pytest.approx(tb.loss, rel=tol)
    for name in a.trainable:
        torch.testing.assert_close(a.weights[name], b.weights[name], rtol=tol,
                                   atol=tol * b.weights[name].abs().max().item())


@pytest.mark.cuda
@cuda
def test_bench_cuda_path_agrees_with_eager():
    x, y = torch.randn(100, 16, device="cuda"), torch.randn(100, 16, device="cuda")
    assert engine_path(torch.device("cuda")) == "cuda-graph"
    assert path_difference(32, 4, x, y, "cuda-graph") < 2 * rounding_bound(32, 16, 32, 100)


@pytest.mark.cuda
@cuda
def test_sweep_and_reproduce_run_their_cells_on_the_gpu(tmp_path):
    """float64 cells on the GPU agree with the CPU's to rounding; the report names the device."""
    import odecheck as oc

    pytest.importorskip("pandas")
    s = {"model": {"dim": 4, "width": 8, "ensemble": 2, "dtype": "float64"}, "data": {"n": 10},
         "train": {"steps": 20, "snapshots": [0, 20], "checkpoint_every": 5},
         "sweep": {"model.init": ["tied", "iid"], "model.depth": [4, 8]}}
    cpu = oc.sweep(s, tmp_path / "cpu")
    gpu = oc.sweep(s, tmp_path / "gpu", device="cuda")
    for col in ("final_loss", "max_increment", "init_ratio", "init_grad_ratio"):
        torch.testing.assert_close(torch.tensor(gpu[col].to_numpy()), torch.tensor(cpu[col].to_numpy()),
                                   rtol=1e-9, atol=1e-12, msg=col)
    from odecheck.reproduce import reproduce

    rep = reproduce("m25-init", scale="smoke", out=tmp_path / "r", device="cuda")
    assert rep["device"] == "cuda" and all(r["verdict"] == "confirmed" for r in rep["results"])


@pytest.mark.cuda
@cuda
def test_c21_cifar_trains_on_cuda_as_on_the_cpu():
    """reproduce c21-cifar --device cuda (its paper scale's path): one short run, the same kernel statistics
    as on the CPU up to float32 reductions in another order."""
    from odecheck.reproduce.c21_cifar import digits_images, train_one

    data = digits_images(32, 64)
    settings = {"widths": [4, 4, 8, 8], "epochs": 1}
    cpu, gpu = train_one(8, 0, settings, data, "cpu"), train_one(8, 0, settings, data, "cuda")
    assert gpu["status"] == cpu["status"] == "done"
    for fam in ("A", "C"):
        assert gpu["kernels"][fam] == pytest.approx(cpu["kernels"][fam], rel=1e-3)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dim,width", [(16, 4), (128, 2)])  # dense matrices (q <= 64) and grouped convolutions
def test_conv_block_on_cuda_equals_cpu(dim, width):
    # the conv block's kernel positions (index tensors) follow the kernels to the device
    cpu = ResNet(block="conv", depth=6, dim=dim, width=width, activation="tanh", init="iid", ensemble=2, seed=0,
                 dtype=torch.float64)
    gpu = cpu.clone().to(device="cuda")
    x, y = torch.randn(7, dim, dtype=torch.float64), torch.randn(7, dim, dtype=torch.float64)
    lc, gc = K.loss_and_grads(cpu, x, y)
    lg, gg = K.loss_and_grads(gpu, x.cuda(), y.cuda())
    torch.testing.assert_close(lg.cpu(), lc, rtol=1e-10, atol=1e-12)
    for k in gc:
        torch.testing.assert_close(gg[k].cpu(), gc[k], rtol=1e-9, atol=1e-12, msg=k)
