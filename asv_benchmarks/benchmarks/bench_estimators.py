"""Estimator speed, and estimator accuracy on planted paths (track_)."""

import numpy as np

from odecheck.estimators import hurst, scaling_exponent
from odecheck.init import fbm_paths, member_generator


class Hurst:
    params = ([64, 256, 1024, 4096],)
    param_names = ["depth"]

    def setup(self, L):
        self.path = fbm_paths(16, L, 0.5, member_generator(0, 0)).T.numpy()

    def time_hurst_with_bootstrap(self, L):
        hurst(self.path)

    def track_hurst_abs_error_H07(self, L):
        errs = [abs(hurst(fbm_paths(16, L, 0.7, member_generator(1, r)).T.numpy(), n_boot=1).estimate - 0.7)
                for r in range(10)]
        return float(np.mean(errs))

    track_hurst_abs_error_H07.unit = "abs error"


class Scaling:
    def setup(self):
        rng = np.random.default_rng(0)
        self.depths = np.array([16, 32, 64, 128, 256, 512])
        self.vals = self.depths[:, None] ** -1.0 * np.exp(0.2 * rng.standard_normal((6, 16)))

    def time_scaling_exponent_members(self):
        scaling_exponent(self.depths, self.vals)

    def time_scaling_exponent_bootstrap(self):
        scaling_exponent(self.depths, self.vals, method="bootstrap")

    def track_scaling_exponent_error(self):
        return abs(scaling_exponent(self.depths, self.vals).estimate + 1.0)

    track_scaling_exponent_error.unit = "abs error"


class CheckpointPath:
    """odecheck analyze on one path of a published-style checkpoint (bf16 safetensors, L = 32), read a
    column chunk at a time: time and peak memory against the number of entries per layer. The
    in-memory `hurst` on the same path as float64 is the baseline of the same run."""

    params = ([256, 1024, 2048],)
    param_names = ["width"]
    timeout = 300

    def setup(self, n):
        import tempfile
        from pathlib import Path

        import torch
        from safetensors.torch import save_file

        from odecheck.checkpoints import group_paths, list_tensors

        self.dir = tempfile.TemporaryDirectory()
        f = Path(self.dir.name) / "path.safetensors"
        g = torch.Generator().manual_seed(0)
        layers = {f"layers.{k}.w": torch.randn(n, n, generator=g).to(torch.bfloat16) for k in range(32)}
        save_file(layers, str(f))
        (self.path,), _ = group_paths(list_tensors(f))
        self.dense = torch.stack([layers[f"layers.{k}.w"] for k in range(32)]).double().reshape(32, -1).numpy()

    def teardown(self, n):
        self.dir.cleanup()

    def time_checkpoint_path_statistics(self, n):
        from odecheck.checkpoints import path_statistics

        path_statistics(self.path)

    def time_in_memory_hurst(self, n):
        hurst(self.dense)

    def peakmem_checkpoint_path_statistics(self, n):
        from odecheck.checkpoints import path_statistics

        path_statistics(self.path)
