"""The claims' decision rules and alpha live in :mod:`odecheck.estimators.decisions`, below the claims, so that
analysis (the family limit) and the reproductions use them without importing the claims. This name is the
same module, kept for code that imports it from here."""

import sys

from odecheck.analysis.estimators import decisions as _rules

sys.modules[__name__] = _rules
