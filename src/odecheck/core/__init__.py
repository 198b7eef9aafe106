"""The base layer: errors, file writing, argument checks, the weights' layout, the thread policy and the one
progress protocol. Imports nothing else of odecheck."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("odecheck")
except PackageNotFoundError:  # pragma: no cover
    VERSION = "0.0.0"
