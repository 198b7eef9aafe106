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
