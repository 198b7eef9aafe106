"""odecheck: do deep residual networks approach a neural ODE, an SDE, or nothing?

Public API (re-exports only).
"""

from importlib.metadata import PackageNotFoundError, version

from . import nn
from ._errors import InvalidArgument, OdecheckError
from .analyze import analyze_weights as analyze
from .data import Dataset, c21_task, digits, gaussian_task, teacher_task
from .events import Progress
from .flow import EngineOptions, Trajectory, adam, discretization_error, gradient_flow, loss_and_grads, sgd
from .init import Init, fbm_paths, fgn, gp_paths
from .models import ACTIVATIONS, BLOCKS, Architecture, ResNet
from .ode import neural_ode, ode_distance
from .optim import OPTIMIZERS, SGD, Adam, GradientFlow
from .sweeps import sweep
from .training import halving_check, train
from .verification import verify

try:
    __version__ = version("odecheck")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "Architecture",
    "Dataset",
    "EngineOptions",
    "GradientFlow",
    "Init",
    "InvalidArgument",
    "OdecheckError",
    "Progress",
    "ResNet",
    "Trajectory",
    "__version__",
    "adam",
    "analyze",
    "c21_task",
    "digits",
    "discretization_error",
    "fbm_paths",
    "fgn",
    "gaussian_task",
    "gp_paths",
    "gradient_flow",
    "halving_check",
    "loss_and_grads",
    "neural_ode",
    "nn",
    "ode_distance",
    "sgd",
    "sweep",
    "teacher_task",
    "train",
    "verify",
]
