"""The claims registry: the claims of docs/theory.md, in order.

Each claim has one experiment, ``claim.evidence(config) -> Evidence``, run on a frozen config:
``claim.config("quick")`` (the budgets are presets), or a widened one (``config.replace(...)``, as
``odecheck falsify`` does). ``verify``, ``falsify`` and the property tests all call it.
"""

from odecheck.experiments.claims.base import BUDGETS, Claim, Context, Evidence, ExperimentConfig, Verdict
from odecheck.experiments.claims.discretization import DISCRETIZATION, DiscretizationConfig
from odecheck.experiments.claims.features import FEATURES, FeatureConfig
from odecheck.experiments.claims.init_scaling import INIT_SCALING, InitScalingConfig
from odecheck.experiments.claims.lr_law import LR_DEPTH_LAW, LawConfig
from odecheck.experiments.claims.mean_ode import MEAN_ODE_RATE, MeanOdeConfig
from odecheck.experiments.claims.pl import PL, PLConfig
from odecheck.experiments.claims.rates import ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE, OdeRateConfig, TrainingConfig
from odecheck.experiments.claims.roughness import (
                                                IID_ROUGH,
                                                RELU_COUNTEREXAMPLE,
                                                TRAINED_REGIMES,
                                                RegimesConfig,
                                                ReluConfig,
)
from odecheck.experiments.claims.transfer import DEPTH_TRANSFER, TransferConfig

REGISTRY: dict[str, Claim] = {c.id: c for c in (ODE_RATE, TIED_LIPSCHITZ, TRAINED_ODE, IID_ROUGH, PL,
                                                RELU_COUNTEREXAMPLE, INIT_SCALING, TRAINED_REGIMES, FEATURES,
                                                DEPTH_TRANSFER, MEAN_ODE_RATE, DISCRETIZATION,
                                                LR_DEPTH_LAW)}

__all__ = ["BUDGETS", "REGISTRY", "Claim", "Context", "DiscretizationConfig", "Evidence", "ExperimentConfig", "FeatureConfig", "InitScalingConfig", "LawConfig", "MeanOdeConfig",
           "OdeRateConfig", "PLConfig", "RegimesConfig", "ReluConfig", "TrainingConfig", "TransferConfig", "Verdict"]
