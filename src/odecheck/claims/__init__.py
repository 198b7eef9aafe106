"""The claims registry: the eight claims of SCIENCE.md, in order."""

from .base import BUDGETS, Claim, Context, Verdict
from .init_scaling import INIT_SCALING
from .pl import PL
from .rates import ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE
from .roughness import IID_ROUGH, RELU_COUNTEREXAMPLE, TRAINED_REGIMES

REGISTRY: dict[str, Claim] = {c.id: c for c in (ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE, IID_ROUGH, PL,
                                                RELU_COUNTEREXAMPLE, INIT_SCALING, TRAINED_REGIMES)}

__all__ = ["BUDGETS", "REGISTRY", "Claim", "Context", "Verdict"]
