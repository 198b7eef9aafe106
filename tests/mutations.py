"""Deliberate engine bugs for the mutation check (scripts/mutation_check.py).

Set ODECHECK_MUTATION to one of the names below; conftest.py applies it before any test runs.
"""

import numpy as np
import torch


def drop_residual_scaling():
    """alpha_L = 1 instead of L^-beta (drops the 1/L factor)."""
    import odecheck.blocks.base as base

    base.residual_scale = lambda depth, beta: 1.0


def residual_scale_off_by_one():
    """alpha_L = (L + 1)^-beta: every engine comparison against a reference that read the scale
    from the network under test would pass."""
    import odecheck.blocks.base as base

    base.residual_scale = lambda depth, beta: float(depth + 1) ** (-beta)


def shared_member_draws():
    """Every ensemble member gets the same random draw."""
    import odecheck.init as init
    import odecheck.models as models

    def same(seed, member):
        ss = np.random.SeedSequence(int(seed), spawn_key=(0,))
        g = torch.Generator()
        g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1)))
        return g

    init.member_generator = same
    models.member_generator = same


def drop_flow_depth_factor():
    """Block weights move at lr instead of L * lr in the gradient flow."""
    import odecheck.optim as optim

    optim.flow_factor = lambda net, name: 1.0


def _mutate_native(*edits: tuple[str, str]) -> None:
    """Build the fused kernels from an edited copy of their source (its own cache entry)."""
    import tempfile
    from pathlib import Path

    import odecheck._native as native

    if native._SRC.parent.name.startswith("odecheck-mutation-"):
        return  # already applied (both conftest files apply the mutation)
    src = native._SRC.read_text()
    for old, new in edits:
        assert old in src, old
        src = src.replace(old, new)
    path = Path(tempfile.mkdtemp(prefix="odecheck-mutation-")) / "_native.cpp"
    path.write_text(src)
    native._SRC = path


def fused_backward_ignores_derivative():
    """The fused kernels' backward drops sigma'(u), as if every activation were the identity."""
    _mutate_native(("                if constexpr (!identity) x *= load(d + r * M + VL * (j0 + j));\n", ""),
                   ("gu[j] = identity ? c * acc : c * acc * di[j];", "gu[j] = c * acc;"))


MUTATIONS = {"drop_residual_scaling": drop_residual_scaling, "residual_scale_off_by_one": residual_scale_off_by_one, "shared_member_draws": shared_member_draws,
             "drop_flow_depth_factor": drop_flow_depth_factor,
             "fused_backward_ignores_derivative": fused_backward_ignores_derivative}


def apply_from_env():
    import os

    name = os.environ.get("ODECHECK_MUTATION")
    if name:
        MUTATIONS[name]()
