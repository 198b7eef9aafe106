"""Seeded data and helpers shared by the benchmarks ([M24] finite-time workload)."""

import os

import torch

N, Q, M = 100, 16, 32
# a history run over many commits may narrow the grid: ODECHECK_ASV_DEPTHS=64,256,1024 ODECHECK_ASV_ENSEMBLES=16
DEPTHS = [int(v) for v in os.environ.get("ODECHECK_ASV_DEPTHS", "16,64,256,1024,4096").split(",")]
ENSEMBLES = [int(v) for v in os.environ.get("ODECHECK_ASV_ENSEMBLES", "1,16").split(",")]
DEVICES = ["cpu", "cuda"]


def device_or_skip(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    return torch.device(device)


def engine_path(path: str):
    """A context to hold open from setup to teardown: ``"batched"`` forces the batched torch path,
    ``"fused"`` keeps the default (and needs the kernels: skipped where they are unavailable)."""
    from contextlib import ExitStack

    from odecheck import _native

    stack = ExitStack()
    if path == "batched":
        if not hasattr(_native, "disabled"):
            raise NotImplementedError("this checkout cannot switch the fused kernels off")
        stack.enter_context(_native.disabled())
    elif _native.library() is None:
        raise NotImplementedError("fused CPU kernels unavailable")
    return stack


def fused_build(isa: str):
    """A context to hold open from setup to teardown: the fused kernels of build ``isa`` run wherever
    they apply (skipped where the checkout has no builds, the CPU cannot run it, or no kernels)."""
    from contextlib import ExitStack

    from odecheck import _native

    if not hasattr(_native, "using"):
        raise NotImplementedError("this checkout has one kernel build only")
    if isa not in _native.runnable_variants():
        raise NotImplementedError(f"this CPU cannot run the {isa} build")
    stack = ExitStack()
    stack.enter_context(_native.using(isa))
    stack.enter_context(_native.forcing())
    if _native.library() is None:
        stack.close()
        raise NotImplementedError("fused CPU kernels unavailable")
    return stack


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def data(device: torch.device):
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, Q, generator=g).to(device), torch.randn(N, Q, generator=g).to(device)


def network(L: int, R: int, device: torch.device, init: str = "iid"):
    import odecheck as oc

    return oc.ResNet(block="mlp", depth=L, dim=Q, width=M, activation="gelu", init=init, ensemble=R, seed=0,
                     device=device)


def train_step(L: int, R: int, device: torch.device):
    """One full-batch gradient-flow step of the engine (forward, hand-written backward, update)."""
    from odecheck._kernels import loss_and_grads

    net = network(L, R, device)
    x, y = data(device)

    def step():
        _, grads = loss_and_grads(net, x, y, reuse=True)
        if hasattr(net, "update_"):  # the public update (older checkouts: in place on the engine's tensors)
            net.update_(net.public({k: grads[k] for k in net.trainable}), 1e-2, flow=True)
        else:
            for name in net.trainable:
                net._p[name].sub_(grads[name], alpha=1e-2 * L)

    step()
    return step
