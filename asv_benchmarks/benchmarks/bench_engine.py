"""Forward pass and training step across depth, ensemble size and device."""

import torch

from .common import DEPTHS, DEVICES, ENSEMBLES, data, device_or_skip, network, sync


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
        from odecheck._kernels import loss_and_grads

        self.dev = device_or_skip(device)
        self.net = network(L, R, self.dev)
        self.x, self.y = data(self.dev)
        net, x, y = self.net, self.x, self.y

        def step():
            _, grads = loss_and_grads(net, x, y, reuse=True)
            for name in net.trainable:
                net._p[name].sub_(grads[name], alpha=1e-2 * L)

        self.step = step
        step()

    def time_train_step(self, L, R, device):
        self.step()
        sync(self.dev)

    def peakmem_train_step(self, L, R, device):
        self.step()

    def track_gpu_peak_memory_mb(self, L, R, device):
        if self.dev.type != "cuda":
            raise NotImplementedError("GPU memory only")
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
