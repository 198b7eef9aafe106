"""Forward pass and training step across depth, ensemble size and device."""

import torch

from .common import (
    DEPTHS,
    DEVICES,
    ENSEMBLES,
    data,
    device_or_skip,
    engine_path,
    fused_build,
    network,
    sync,
    train_step,
)


class Forward:
    params = (DEPTHS, ENSEMBLES, DEVICES)
    param_names = ["depth", "ensemble", "device"]

    def setup(self, L, R, device):
        self.dev = device_or_skip(device)
        self.net = network(L, R, self.dev)
        self.x, _ = data(self.dev)

    def time_forward(self, L, R, device):
        self.net(self.x)
        sync(self.dev)


class TrainStep:
    params = (DEPTHS, ENSEMBLES, DEVICES)
    param_names = ["depth", "ensemble", "device"]
    timeout = 300

    def setup(self, L, R, device):
        self.dev = device_or_skip(device)
        self.step = train_step(L, R, self.dev)

    def time_train_step(self, L, R, device):
        self.step()
        sync(self.dev)

    def peakmem_train_step(self, L, R, device):
        self.step()


class BatchedTrainStep:
    """The training step on the batched torch path (what non-mlp blocks, float64 and CUDA use),
    tracked next to the default (fused on CPU) path so that a regression in either shows."""

    params = ([64, 256, 1024], [16])
    param_names = ["depth", "ensemble"]
    timeout = 300

    def setup(self, L, R):
        self.path = engine_path("batched")
        self.step = train_step(L, R, torch.device("cpu"))

    def teardown(self, L, R):
        if hasattr(self, "path"):
            self.path.close()

    def time_batched_train_step(self, L, R):
        self.step()


class FusedBuilds:
    """The fused kernels of each instruction-set build, forced on, next to the batched path: native
    (what -march=native gives this machine) and AVX2 (what most laptops and cloud CPUs run; buildable
    and runnable on an AVX-512 machine). A build the CPU cannot run, or a checkout without builds,
    is skipped in setup. ``track_native_lanes`` records which instruction set the native build
    targeted (16 float32 lanes: AVX-512, 8: AVX2, 4: SSE2/NEON, 1: scalar)."""

    params = ([64, 256, 1024], [16], ["native", "avx2"])
    param_names = ["depth", "ensemble", "isa"]
    timeout = 300

    def setup(self, L, R, isa):
        self.path = fused_build(isa)
        self.step = train_step(L, R, torch.device("cpu"))

    def teardown(self, L, R, isa):
        if hasattr(self, "path"):  # asv tears down after a skipping setup too
            self.path.close()

    def time_fused_build_train_step(self, L, R, isa):
        self.step()


class ModuleTrainStep:
    """odecheck.nn.StackedResNet: forward, the engine's backward through autograd, and an SGD step
    with the flow's rates (the same step as TrainStep, through the torch.nn.Module face)."""

    params = ([64, 256, 1024], [16])
    param_names = ["depth", "ensemble"]
    timeout = 300

    def setup(self, L, R):
        try:
            from odecheck.bench import module_step_fn
        except ImportError:
            raise NotImplementedError("this checkout has no odecheck.nn") from None
        x, y = data(torch.device("cpu"))
        self.step = module_step_fn(L, R, x, y)
        self.step()

    def time_module_train_step(self, L, R):
        self.step()


class KernelBuild:
    """Which instruction set the native fused-kernel build targets on the machine that ran the suite."""

    def setup(self):
        from odecheck import _native

        if not hasattr(_native, "status") or not isinstance(_native.status(), dict):
            raise NotImplementedError("this checkout does not record the kernels' instruction set")
        self.status = _native.status()
        if self.status.get("state") != "available":
            raise NotImplementedError("fused CPU kernels unavailable")

    def track_native_lanes(self):
        return self.status["lanes"]

    track_native_lanes.unit = "float32 lanes"


class SmallLayers:
    """Falsification-probe-sized layers (q = 4, m = 8, n = 10, R = 8, float64): the plain-loop
    kernels against the batched path, whose per-operation overhead dominates at this size."""

    params = ([32, 128, 512], ["fused", "batched"])
    param_names = ["depth", "path"]

    def setup(self, L, path):
        import odecheck as oc
        from odecheck._kernels import loss_and_grads

        self.path = engine_path(path)
        net = oc.ResNet(block="mlp", depth=L, dim=4, width=8, activation="tanh", init="tied", ensemble=8, seed=0,
                        dtype=torch.float64)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(10, 4, generator=g, dtype=torch.float64)
        y = torch.randn(10, 4, generator=g, dtype=torch.float64)
        self.step = lambda: loss_and_grads(net, x, y, reuse=True)
        self.step()

    def teardown(self, L, path):
        if hasattr(self, "path"):
            self.path.close()

    def time_small_layers_step(self, L, path):
        self.step()


class GPUMemory:
    """Peak GPU memory of one training step (CUDA only; skipped in setup elsewhere)."""

    params = (DEPTHS, ENSEMBLES)
    param_names = ["depth", "ensemble"]
    timeout = 300

    def setup(self, L, R):
        self.dev = device_or_skip("cuda")
        self.step = train_step(L, R, self.dev)

    def track_gpu_peak_memory_mb(self, L, R):
        torch.cuda.reset_peak_memory_stats()
        self.step()
        sync(self.dev)
        return torch.cuda.max_memory_allocated() / 2**20

    track_gpu_peak_memory_mb.unit = "MiB"


class ODESolve:
    params = ([16, 64, 256], DEVICES)
    param_names = ["depth", "device"]

    def setup(self, L, device):
        self.dev = device_or_skip(device)
        self.net = network(L, 4, self.dev, init="smooth(0.1)")
        self.x, _ = data(self.dev)
        self.x = self.x[:16]

    def time_neural_ode(self, L, device):
        import odecheck as oc

        oc.neural_ode(self.net, self.x, rtol=1e-6, atol=1e-8)
        sync(self.dev)
