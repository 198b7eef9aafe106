"""The claims registry: the claims of docs/theory.md, in order.

Each claim has one experiment, ``claim.evidence(config) -> Evidence``, run on a frozen config:
``claim.config("quick")`` (the budgets are presets), or a widened one (``config.replace(...)``, as
``odecheck falsify`` does). ``verify``, ``falsify`` and the property tests all call it.
"""

from .base import BUDGETS, Claim, Context, Evidence, ExperimentConfig, Verdict
from .features import FEATURES, FeatureConfig
from .init_scaling import INIT_SCALING, InitScalingConfig
from .mean_ode import MEAN_ODE_RATE, MeanOdeConfig
from .pl import PL, PLConfig
from .rates import ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE, OdeRateConfig, TrainingConfig
from .roughness import IID_ROUGH, RELU_COUNTEREXAMPLE, TRAINED_REGIMES, RegimesConfig, ReluConfig
from .transfer import DEPTH_TRANSFER, TransferConfig

REGISTRY: dict[str, Claim] = {c.id: c for c in (ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE, IID_ROUGH, PL,
                                                RELU_COUNTEREXAMPLE, INIT_SCALING, TRAINED_REGIMES, FEATURES,
                                                DEPTH_TRANSFER, MEAN_ODE_RATE)}

__all__ = ["BUDGETS", "REGISTRY", "Claim", "Context", "Evidence", "ExperimentConfig", "FeatureConfig", "InitScalingConfig", "MeanOdeConfig",
           "OdeRateConfig", "PLConfig", "RegimesConfig", "ReluConfig", "TrainingConfig", "TransferConfig", "Verdict"]
