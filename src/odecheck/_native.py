"""Fused CPU kernels for the mlp block (``_native.cpp``), compiled on first use and loaded with ctypes.

The library is built once per source, compiler and CPU into ``$ODECHECK_CACHE`` (default
``~/.cache/odecheck``) with the system C++ compiler (``$CXX``, else ``c++``/``g++``); it needs no
torch headers and builds in a few seconds. Without a compiler the engine keeps its batched
torch path, with one warning.

``ODECHECK_NATIVE=0`` disables the kernels; ``ODECHECK_NATIVE=1`` makes a failed build an error.
Threads: the kernels split the ensemble members over ``torch.get_num_threads()`` OpenMP threads.
The library links ``libgomp.so.1``, the runtime torch itself loads, so torch and the kernels share
one thread pool (a second pool would spin against torch's workers on the same cores). The members
are independent: the result does not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ._errors import OdecheckError

ACT_CODES = {"identity": 0, "tanh": 1, "gelu": 2, "softplus": 3, "relu": 4}
_SRC = Path(__file__).with_name("_native.cpp")
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]
_OPENMP = ["-fopenmp"]  # dropped (single-threaded kernels) when the compiler has no OpenMP
_state: dict = {}


def _compiler() -> str | None:
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    return None


def _cpu_key() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise OdecheckError("no C++ compiler found (set CXX)")
    src = _SRC.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(src + " ".join(_FLAGS).encode() + version.encode() + _cpu_key().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("ODECHECK_CACHE", Path.home() / ".cache" / "odecheck"))
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"native-{key}.so"
    if not lib.exists():
        # build under a private name, then rename: concurrent builders (pytest-xdist) never see half a file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        for extra in (_OPENMP, []):
            proc = subprocess.run([cxx, *_FLAGS, *extra, str(_SRC), "-o", tmp], capture_output=True, text=True,
                                  check=False)
            if proc.returncode == 0:
                break
        if proc.returncode != 0:
            os.unlink(tmp)
            raise OdecheckError(f"compiling {_SRC.name} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, lib)
    dll = ctypes.CDLL(str(lib))
    i, d, p = ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    dll.odecheck_native_supports.argtypes = [i, i]
    dll.odecheck_native_openmp.argtypes = []
    fwd = [i, i, i, i, i, i, p, p, p, p, p, d, d, i, i]
    bwd = [i, i, i, i, i, i, p, p, p, p, p, d, d, i, p, p, p]
    for name, args in (("mlp_forward_f32", fwd), ("mlp_backward_f32", bwd), ("mlp_forward_generic_f32", fwd),
                       ("mlp_forward_generic_f64", fwd), ("mlp_backward_generic_f32", bwd),
                       ("mlp_backward_generic_f64", bwd)):
        getattr(dll, name).argtypes = args
    for name in ("odecheck_native_supports", "odecheck_native_openmp", "mlp_forward_f32", "mlp_backward_f32",
                 "mlp_forward_generic_f32", "mlp_forward_generic_f64", "mlp_backward_generic_f32",
                 "mlp_backward_generic_f64"):
        getattr(dll, name).restype = ctypes.c_int
    return dll


def _off() -> bool:
    return os.environ.get("ODECHECK_NATIVE", "auto") == "0" or bool(_state.get("off"))


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None when disabled or unavailable (warned once)."""
    if _off():
        return None
    mode = os.environ.get("ODECHECK_NATIVE", "auto")
    if "lib" not in _state:
        try:
            _state["lib"] = _build()
        except Exception as exc:  # any failure to build or load: warn once, keep the batched path
            if mode == "1":
                raise
            warnings.warn(f"odecheck: fused CPU kernels unavailable, using the batched torch path ({exc})",
                          RuntimeWarning, stacklevel=2)
            _state["lib"] = None
    return _state["lib"]


def status() -> str:
    """``"disabled"`` (ODECHECK_NATIVE=0 or :func:`disabled`), ``"available"`` or ``"unavailable"``."""
    if _off():
        return "disabled"
    return "available" if library() is not None else "unavailable"


@contextmanager
def disabled():
    """Within this block the engine takes the batched torch path (for comparisons)."""
    before = _state.get("off", False)
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = before


# Plain-loop kernels only for small layers: per layer at most this many activations (R n m) and
# multiply-adds per product (R n q m). Measured on the 2-core machine (depth 128, R = 8, tanh,
# float64 and float32): 2-4x faster than the batched path at R n m <= 1280, even at
# R n m = 3200 with q m = 8, slower beyond (0.7x at R n m = 6400, 0.3x at 51 200).
GENERIC_MAX_ACTIVATIONS = 2048
GENERIC_MAX_MACS = 16384


def kind(V: torch.Tensor, W: torch.Tensor, activation: str, n: int | None = None) -> str | None:
    """Which fused kernel applies to mlp weights V (S, R, q, m), W (S, R, m, q) on n samples:

    - ``"vector"``: float32 and (q, m) among the compiled shapes (q, m in {16, 32}, m also 64);
    - ``"generic"``: float32 or float64, any shape, when the layers are small (``n`` given and
      R n m <= GENERIC_MAX_ACTIVATIONS, R n q m <= GENERIC_MAX_MACS);
    - None: the batched torch path (CUDA, other dtypes, larger layers, kernels unavailable).

    A build without OpenMP runs on one thread: it is used only when torch has at most 2 threads
    (one fused thread is about as fast as the batched path on two; on more cores the batched
    path wins)."""
    if activation not in ACT_CODES or V.device.type != "cpu" or V.dtype not in (torch.float32, torch.float64):
        return None
    if W.dtype != V.dtype or not (V.is_contiguous() and W.is_contiguous()):
        return None
    lib = library()
    if lib is None or not (lib.odecheck_native_openmp() or torch.get_num_threads() <= 2):
        return None
    R, q, m = V.shape[1], V.shape[2], V.shape[3]
    if V.dtype == torch.float32 and lib.odecheck_native_supports(q, m):
        return "vector"
    if n is not None and R * n * m <= GENERIC_MAX_ACTIVATIONS and R * n * q * m <= GENERIC_MAX_MACS:
        return "generic"
    return None


def usable(V: torch.Tensor, W: torch.Tensor, activation: str, n: int | None = None) -> bool:
    """Whether a fused kernel applies (see :func:`kind`)."""
    return kind(V, W, activation, n) is not None


def _check(rc: int) -> None:
    if rc:
        raise OdecheckError("fused kernel called with an unsupported shape or activation")


def _entry(prefix: str, V: torch.Tensor, W: torch.Tensor, act: str, n: int):
    k = kind(V, W, act, n)
    if k is None:
        raise OdecheckError("no fused kernel for these weights (check kind() first)")
    suffix = "_f32" if V.dtype == torch.float32 else "_f64"
    return getattr(library(), prefix + ("_generic" if k == "generic" else "") + suffix)


def mlp_forward(act: str, V, W, h, a, d, s: float, c: float, keep: bool = True) -> None:
    """keep: h (S+1, R, n, q) with h[0] set, writes h[1:], a = sigma(u), d = sigma'(u) (S, R, n, m).
    not keep: h (R, n, q) is overwritten by the output state; a and d are ignored."""
    S, R, m, q = W.shape
    n = h.shape[-2]
    ptr_a = a.data_ptr() if keep else None
    ptr_d = d.data_ptr() if keep else None
    _check(_entry("mlp_forward", V, W, act, n)(torch.get_num_threads(), S, R, n, q, m, h.data_ptr(), ptr_a, ptr_d,
                                           W.data_ptr(), V.data_ptr(), s, c, ACT_CODES[act], int(keep)))


def mlp_backward(act: str, V, W, h, a, d, g, gV, gW, s: float, c: float) -> None:
    """g (R, n, q): dl/dh_S in, dl/dh_0 out; writes the weight gradients gV, gW (S, R, ...)."""
    S, R, m, q = W.shape
    n = g.shape[-2]
    _check(_entry("mlp_backward", V, W, act, n)(torch.get_num_threads(), S, R, n, q, m, h.data_ptr(), a.data_ptr(),
                                            d.data_ptr(), W.data_ptr(), V.data_ptr(), s, c, int(act == "identity"),
                                            g.data_ptr(), gV.data_ptr(), gW.data_ptr()))
