"""torch.save files (zip or legacy pickle): ``weights_only=True`` with torch's allow-list for what training
scripts save beside a state_dict; tensors only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from odecheck.analysis.checkpoints.refs import WRAPPERS, TensorRef
from odecheck.core._errors import InvalidArgument


def _torch_extras() -> list:
    """What training scripts save beside a state_dict and ``weights_only`` may rebuild (torch's allow-list):
    numpy scalars and their dtypes (an epoch, a best accuracy) and an argparse Namespace (the run's
    arguments). Nothing else is unpickled."""
    import argparse

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return [scalar, np.dtype, *dtypes, argparse.Namespace]


def read_torch(path: Path) -> list[TensorRef]:
    import torch

    f = str(path)
    try:
        with torch.serialization.safe_globals(_torch_extras()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged pickle's protocol warnings: the refusal below says it
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) checkpoints cannot be memory-mapped
                sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file for the user
        raise InvalidArgument(f"{f}: unreadable or corrupt PyTorch checkpoint ({type(e).__name__}); only "
                              "tensors are loaded (weights_only=True)") from None
    for wrapper in WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise InvalidArgument(f"{f}: expected a state_dict (a dict of tensors), got {type(sd).__name__}")
    return [_torch_ref(f, str(name), t) for name, t in sd.items() if isinstance(t, torch.Tensor)]


def _torch_ref(f: str, name: str, t) -> TensorRef:
    """One tensor of a state_dict (keys of any type named by their text; a Parameter read without its
    gradient), or left out with the reason: sparse or meta tensors have no dense data to read."""
    shape, dtype = tuple(t.shape), str(t.dtype)
    why = ("a sparse tensor: not a dense weight" if t.layout != __import__("torch").strided else
           "a meta tensor: no data was saved" if t.is_meta else
           "" if t.is_floating_point() else f"dtype {dtype.replace('torch.', '')}: not a floating-point weight")
    return TensorRef(f, name, shape, dtype, None, why) if why else TensorRef(f, name, shape, dtype, t.detach())
