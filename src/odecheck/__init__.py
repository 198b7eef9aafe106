"""odecheck: do deep residual networks approach a neural ODE, an SDE, or nothing?

Public API (re-exports only).
"""

import importlib as _importlib
import sys as _sys
from importlib import abc as _abc
from importlib import util as _util

from odecheck.core import VERSION
from odecheck.core._errors import InvalidArgument, OdecheckError
from odecheck.core.events import Progress
from odecheck.engine import nn
from odecheck.engine.data import Dataset, c21_task, digits, gaussian_task, teacher_task
from odecheck.engine.flow import (
    EngineOptions,
    Trajectory,
    adam,
    discretization_error,
    gradient_flow,
    loss_and_grads,
    sgd,
)
from odecheck.engine.init import Init, fbm_paths, fgn, gp_paths
from odecheck.engine.models import ACTIVATIONS, BLOCKS, Architecture, ResNet
from odecheck.engine.ode import neural_ode, ode_distance
from odecheck.engine.optim import OPTIMIZERS, SGD, Adam, GradientFlow
from odecheck.engine.training import halving_check, train
from odecheck.experiments.analyze import analyze_weights as analyze
from odecheck.experiments.sweeps import sweep
from odecheck.experiments.verification import verify

__version__ = VERSION

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


# ----------------------------------------------------------------------------- the layout's old names
# The modules live in one folder per layer (core, engine, analysis, presentation, experiments; see
# docs/architecture.md). Their old names (odecheck.models, odecheck.claims.transfer, odecheck.nn, ...) keep
# working: each is the same module object as its new name, registered on first import.
_LAYER_OF = {
    **dict.fromkeys(("_errors", "_io", "validation", "layout", "threads", "events"), "core"),
    **dict.fromkeys(("_native", "_kernels", "activations", "blocks", "init", "losses", "models", "nn", "ode",
                     "optim", "training", "flow", "data", "bench", "contention"), "engine"),
    **dict.fromkeys(("estimators", "checkpoints", "planted"), "analysis"),
    **dict.fromkeys(("plot", "render", "report"), "presentation"),
    **dict.fromkeys(("claims", "config", "runner", "sweeps", "reproduce", "falsify", "verification",
                     "parametrizations", "strategies", "verdicts", "analyze"), "experiments"),
}


def _new_name(fullname: str) -> str | None:
    parts = fullname.split(".")
    if len(parts) >= 2 and parts[0] == __name__ and parts[1] in _LAYER_OF:
        return ".".join([__name__, _LAYER_OF[parts[1]], *parts[1:]])
    return None


class _OldNames(_abc.MetaPathFinder, _abc.Loader):
    """Finds ``odecheck.<old name>[.sub]`` as the module of its new name (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        new = _new_name(fullname)
        if new is None:
            return None
        return _util.spec_from_loader(fullname, self, is_package=hasattr(_importlib.import_module(new), "__path__"))

    def create_module(self, spec):
        return _importlib.import_module(_new_name(spec.name))

    def exec_module(self, module):
        pass


def _register_loaded() -> None:
    """Old names for the modules already imported (so that importing one later never rebinds a package
    attribute, as ``odecheck.analyze``, the function, would be by its module)."""
    for name, module in list(_sys.modules.items()):
        parts = name.split(".")
        if len(parts) >= 3 and parts[0] == __name__ and parts[1] in set(_LAYER_OF.values()) \
                and _LAYER_OF.get(parts[2]) == parts[1]:
            _sys.modules.setdefault(".".join([__name__, *parts[2:]]), module)


_sys.meta_path.insert(0, _OldNames())
_register_loaded()


def __getattr__(name: str):
    if name in _LAYER_OF:  # odecheck.claims, odecheck.estimators, ... as attributes of the package
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
