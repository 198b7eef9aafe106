"""Fused CPU kernels for the mlp block (``_native.cpp``), compiled on first use and loaded with ctypes.

The library is built once per source, compiler, flags and CPU into ``$ODECHECK_CACHE`` (default
``~/.cache/odecheck``) with the system C++ compiler (``$CXX``, else ``c++``/``g++``); it needs no
torch headers and builds in a few seconds. Without a compiler the engine keeps its batched
torch path, with one warning.

Instruction-set variants (``ODECHECK_ISA``, default ``native``): ``native`` compiles for the CPU it
runs on (``-march=native``); ``avx512``, ``avx2``, ``sse2`` pin an x86-64 level (``-march=x86-64-v4``,
``-v3``, baseline), ``scalar`` compiles the kernels without SIMD types. The kernels' vector width and
register blocking follow the target at compile time (16 float32 lanes on AVX-512, 8 on AVX2, 4 on
SSE2 and NEON, 1 scalar); :func:`status` reports what was built. A variant the CPU cannot run is
refused with an error naming ``ODECHECK_ISA``.

``ODECHECK_NATIVE=0`` disables the kernels; ``ODECHECK_NATIVE=1`` makes a failed build an error and
uses the kernels wherever they apply; the default (``auto``) lets the engine time both paths on
first use of a shape class and keep the faster one (``_kernels``; choices persist in the cache
directory, see :func:`remembered`).
Threads: the kernels split the ensemble members over ``torch.get_num_threads()`` OpenMP threads.
The library links ``libgomp.so.1``, the runtime torch itself loads, so torch and the kernels share
one thread pool (a second pool would spin against torch's workers on the same cores). The members
are independent: the result does not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from odecheck.core._errors import InvalidArgument, OdecheckError, invalid

ACT_CODES = {"identity": 0, "tanh": 1, "gelu": 2, "softplus": 3, "relu": 4}
_SRC = Path(__file__).with_name("_native.cpp")
_FLAGS = ["-O3", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]
_OPENMP = ["-fopenmp"]  # dropped (single-threaded kernels) when the compiler has no OpenMP
# flag sets tried in turn for each variant (the first that compiles is used)
ISA_FLAGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "native": (("-march=native",), ("-mcpu=native",), ()),
    "avx512": (("-march=x86-64-v4", "-mtune=native"),),
    "avx2": (("-march=x86-64-v3", "-mtune=native"),),
    "sse2": (("-march=x86-64", "-mtune=native"),),
    "scalar": (("-DODECHECK_SCALAR",),),
}
ISAS: tuple[str, ...] = tuple(ISA_FLAGS)
# the CPU flags (as /proc/cpuinfo names them) an x86-64 variant needs
_ISA_NEEDS = {"avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"), "avx2": ("avx2", "fma"),
              "sse2": ("sse2",)}
_state: dict = {}


def _compiler() -> str | None:
    for cand in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("ODECHECK_CACHE", Path.home() / ".cache" / "odecheck"))


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_key() -> str:
    lines = [ln for ln in _cpuinfo().splitlines() if ln.startswith(("model name", "flags", "Features"))][:2]
    return "\n".join(lines) if lines else (platform.processor() or platform.machine())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    for ln in _cpuinfo().splitlines():
        if ln.startswith("model name"):
            return ln.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags`` or Arm ``Features`` of ``/proc/cpuinfo``; empty if unknown)."""
    for ln in _cpuinfo().splitlines():
        if ln.startswith(("flags", "Features")):
            return frozenset(ln.split(":", 1)[1].split())
    return frozenset()


def variant() -> str:
    """The variant in use: :func:`using`, else ``$ODECHECK_ISA``, else ``native``."""
    name = _state.get("isa") or os.environ.get("ODECHECK_ISA", "native")
    if name not in ISA_FLAGS:
        raise invalid("ODECHECK_ISA", name, f"one of {', '.join(ISAS)}")
    return name


def runnable_variants() -> tuple[str, ...]:
    """The variants this CPU can run: native and scalar always, an x86-64 level when the CPU has its flags."""
    flags = cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return tuple(v for v in ISAS if v not in _ISA_NEEDS or (x86 and set(_ISA_NEEDS[v]) <= flags))


def _build(isa: str) -> tuple[ctypes.CDLL, dict]:
    if isa not in runnable_variants():
        raise invalid("ODECHECK_ISA", isa, f"a variant this CPU can run: {', '.join(runnable_variants())}")
    cxx = _compiler()
    if cxx is None:
        raise OdecheckError("no C++ compiler found (set CXX)")
    src = _SRC.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    errors = []
    for isa_flags in ISA_FLAGS[isa]:
        flags = [*_FLAGS, *isa_flags]
        key = hashlib.sha256(src + " ".join(flags).encode() + version.encode() + _cpu_key().encode()).hexdigest()[:16]
        lib = cache / f"native-{key}.so"
        if not lib.exists():
            # build under a private name, then rename: concurrent builders (pytest-xdist) never see half a file
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
            os.close(fd)
            for extra in (_OPENMP, []):
                proc = subprocess.run([cxx, *flags, *extra, str(_SRC), "-o", tmp], capture_output=True, text=True,
                                      check=False)
                if proc.returncode == 0:
                    break
            if proc.returncode != 0:
                os.unlink(tmp)
                errors.append(proc.stderr.strip()[-2000:])
                continue
            os.replace(tmp, lib)
        return _load(lib), {"variant": isa, "flags": " ".join(isa_flags), "key": key}
    raise OdecheckError(f"compiling {_SRC.name} for ODECHECK_ISA={isa} failed: {errors[-1]}")


def _load(lib: Path) -> ctypes.CDLL:
    dll = ctypes.CDLL(str(lib))
    i, d, p = ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    dll.odecheck_native_supports.argtypes = [i, i]
    dll.odecheck_native_isa.restype = ctypes.c_char_p
    for name in ("odecheck_native_openmp", "odecheck_native_lanes", "odecheck_native_registers",
                 "odecheck_native_isa"):
        getattr(dll, name).argtypes = []
    fwd = [i, i, i, i, i, i, p, p, p, p, p, d, d, i, i]
    bwd = [i, i, i, i, i, i, p, p, p, p, p, d, d, i, p, p, p]
    for name, args in (("mlp_forward_f32", fwd), ("mlp_backward_f32", bwd), ("mlp_forward_generic_f32", fwd),
                       ("mlp_forward_generic_f64", fwd), ("mlp_backward_generic_f32", bwd),
                       ("mlp_backward_generic_f64", bwd)):
        getattr(dll, name).argtypes = args
    for name in ("odecheck_native_supports", "odecheck_native_openmp", "odecheck_native_lanes",
                 "odecheck_native_registers", "mlp_forward_f32", "mlp_backward_f32",
                 "mlp_forward_generic_f32", "mlp_forward_generic_f64", "mlp_backward_generic_f32",
                 "mlp_backward_generic_f64"):
        getattr(dll, name).restype = ctypes.c_int
    dll.odecheck_fma_peak.argtypes = [i, ctypes.c_long]
    dll.odecheck_fma_peak.restype = ctypes.c_float
    dll.odecheck_fma_chains.argtypes = []
    dll.odecheck_fma_chains.restype = ctypes.c_int
    return dll


def fma_peak(threads: int | None = None, isa: str | None = None, seconds: float = 0.1, repeat: int = 3) -> dict | None:
    """The measured FMA peak of ``threads`` threads (default torch's) with build ``isa``: independent vector
    multiply-add chains, timed (the best of ``repeat`` runs of about ``seconds`` each). None without the
    kernels. Returns {"gflops", "threads", "lanes", "chains"}."""
    import time

    lib = library(isa)
    if lib is None:
        return None
    n = threads or torch.get_num_threads()
    lanes, chains = lib.odecheck_native_lanes(), lib.odecheck_fma_chains()
    iters = 1 << 12
    while True:  # calibrate the round count to about `seconds`
        t0 = time.perf_counter()
        lib.odecheck_fma_peak(n, iters)
        if time.perf_counter() - t0 >= seconds / 2 or iters >= 1 << 30:
            break
        iters *= 2
    best = min(_timed_peak(lib, n, iters) for _ in range(repeat))
    return {"gflops": 2.0 * lanes * chains * iters * n / best / 1e9, "threads": n, "lanes": lanes, "chains": chains}


def _timed_peak(lib, n: int, iters: int) -> float:
    import time

    t0 = time.perf_counter()
    lib.odecheck_fma_peak(n, iters)
    return time.perf_counter() - t0


def _off() -> bool:
    return os.environ.get("ODECHECK_NATIVE", "auto") == "0" or bool(_state.get("off"))


def library(isa: str | None = None) -> ctypes.CDLL | None:
    """The compiled kernels of variant ``isa`` (default :func:`variant`), or None when disabled or
    unavailable (warned once per variant)."""
    if _off():
        return None
    mode = os.environ.get("ODECHECK_NATIVE", "auto")
    isa = isa or variant()
    libs = _state.setdefault("libs", {})
    if isa not in libs:
        try:
            libs[isa] = _build(isa)
        except Exception as exc:  # any failure to build or load: warn once, keep the batched path
            if mode == "1" or isinstance(exc, InvalidArgument):  # a variant this CPU cannot run
                raise
            warnings.warn(f"odecheck: fused CPU kernels unavailable, using the batched torch path ({exc})",
                          RuntimeWarning, stacklevel=2)
            libs[isa] = None
    entry = libs[isa]
    return None if entry is None else entry[0]


def status() -> dict:
    """What the engine's fused kernels are on this machine.

    ``state``: ``"disabled"`` (ODECHECK_NATIVE=0 or :func:`disabled`), ``"available"`` or
    ``"unavailable"``; when available also ``variant`` (requested), ``isa`` (what the compiler
    targeted: avx512, avx2, avx, sse2, neon or scalar), ``lanes`` (float32 per vector),
    ``registers`` (vector registers the blocking assumes), ``flags``, ``openmp``; always ``cpu``."""
    out: dict = {"cpu": cpu_model()}
    if _off():
        return {"state": "disabled", **out}
    lib = library()
    if lib is None:
        return {"state": "unavailable", "variant": variant(), **out}
    meta = _state["libs"][variant()][1]
    return {"state": "available", "variant": meta["variant"], "isa": lib.odecheck_native_isa().decode(),
            "lanes": lib.odecheck_native_lanes(), "registers": lib.odecheck_native_registers(),
            "flags": meta["flags"], "openmp": bool(lib.odecheck_native_openmp()), **out}


def build_key() -> str | None:
    """A key of the library in use (source, flags, compiler, CPU), or None without one."""
    if library() is None:
        return None
    return _state["libs"][variant()][1]["key"]


@contextmanager
def using(isa: str):
    """Within this block the kernels of variant ``isa`` run (for comparisons, e.g. AVX2 on an AVX-512 CPU)."""
    if isa not in ISA_FLAGS:
        raise invalid("isa", isa, f"one of {', '.join(ISAS)}")
    with _setting("isa", isa):
        yield


# ----------------------------------------------------------------------------- remembered path choices
def _choices_file() -> Path:
    return _cache_dir() / "path-choices.json"


def remembered(key: str) -> dict | None:
    """The path choice stored for a shape class (see ``_kernels.fused_chosen``), or None."""
    mem = _state.setdefault("choices", {})
    if key in mem:
        return mem[key]
    try:
        stored = json.loads(_choices_file().read_text())
    except (OSError, ValueError):
        stored = {}
    if isinstance(stored, dict):
        mem.update({k: v for k, v in stored.items() if isinstance(v, dict)})
    return mem.get(key)


def remember(key: str, choice: dict) -> None:
    """Store a path choice in memory and in the cache directory (best effort: an unwritable cache
    keeps the choice for this process only)."""
    _state.setdefault("choices", {})[key] = choice
    path = _choices_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        if not isinstance(stored, dict):
            stored = {}
        stored[key] = choice
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def forced() -> bool:
    """Whether the kernels run wherever they apply, without timing the paths: ``ODECHECK_NATIVE=1``
    or inside :func:`forcing`."""
    return os.environ.get("ODECHECK_NATIVE") == "1" or bool(_state.get("force"))


@contextmanager
def _setting(key: str, value):
    before = _state.get(key)
    _state[key] = value
    try:
        yield
    finally:
        _state[key] = before


def forcing():
    """Within this block the fused kernels run wherever they apply (the bench times them this way)."""
    return _setting("force", True)


def disabled():
    """Within this block the engine takes the batched torch path (for comparisons)."""
    return _setting("off", True)


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
