"""Hypothesis profiles: dev (default), ci (derandomized, sized for 2 cores), thorough (nightly).

Choose with HYPOTHESIS_PROFILE=dev|ci|thorough.
"""

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("ci", max_examples=8, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=200, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def examples() -> int:
    """Examples per property under the active profile (for the Bonferroni bounds)."""
    return settings.default.max_examples

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mutations import apply_from_env  # noqa: E402

apply_from_env()
