"""How long each claim takes on each budget on the reference machine, for the progress meters' time left.

Measured wall seconds of ``odecheck verify`` (medians of the runs named below) on a 2-core AMD EPYC (Zen 5,
AVX-512), torch 2.13.0 CPU build, quiet machine, 2026-12-07. A claim or budget not measured gets no
reference (None): the meters then estimate from the run's own pace.
"""

from __future__ import annotations

REFERENCE_MACHINE = "2-core AMD EPYC (Zen 5, AVX-512), torch 2.13.0 CPU, quiet, 2026-12-07"

REFERENCE_SECONDS: dict[str, dict[str, float]] = {
    "quick": {  # one quiet run (27.2 s wall in all)
        "ode-rate-fixed-weights": 2.2, "tied-init-lipschitz": 2.1, "trained-ode-limit": 1.6, "iid-init-rough": 0.5,
        "pl-overparameterized": 2.9, "relu-counterexample": 0.9, "init-scaling-regimes": 0.6,
        "trained-scaling-regimes": 5.1, "feature-regularity": 0.2, "depth-transfer": 2.5, "mean-ode-rate": 4.4,
        "ode-discretization": 1.4, "lr-depth-law": 4.0},  # claims 12-13: quiet runs, 2026-12-07
    "standard": {  # medians of 3 interleaved quiet runs, docs/performance.md "A busy machine"
        "ode-rate-fixed-weights": 2.9, "tied-init-lipschitz": 14.5, "trained-ode-limit": 7.0, "iid-init-rough": 3.5,
        "pl-overparameterized": 12.2, "relu-counterexample": 2.6, "init-scaling-regimes": 2.2,
        "trained-scaling-regimes": 12.3, "feature-regularity": 0.6, "depth-transfer": 5.0, "mean-ode-rate": 8.3,
        "ode-discretization": 3.9, "lr-depth-law": 9.6},  # claims 12-13: medians of 3 quiet runs, 2026-12-07 (mlp and conv)
}

FALLBACK_SECONDS = 10.0  # a claim without a reference counts as this much in the overall time left


def reference_seconds(claim: str, budget: str) -> float | None:
    """The claim's measured seconds on ``budget`` on the reference machine, or None."""
    return REFERENCE_SECONDS.get(budget, {}).get(claim)


__all__ = ["FALLBACK_SECONDS", "REFERENCE_MACHINE", "REFERENCE_SECONDS", "reference_seconds"]
