"""Generated hostile and odd inputs across every format analyze reads (tests/hostile/generators.py): each is
analyzed or refused in one line naming the file, never a traceback of another kind, within bounded memory."""

from __future__ import annotations

import os
import resource
import sys

import pytest
from hostile.generators import header_edits, overwrites, truncations, valid_files, write_header_file
from odecheck.analyze import analyze_files

from odecheck.core._errors import InvalidArgument

pytest.importorskip("safetensors")
MEMORY_BOUND_KB = 2 * 1024 * 1024  # 2 GB of resident memory at most, whatever the input claims
CASE_BOUND_KB = 256 * 1024  # what one case may add to the resident memory it found: its files are under 100 KB,
# so a reader that believed a header (10^15 entries, a 3 GiB inflation) would cross it by far


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakMemory:
    """The peak resident memory (kB) a block added, ``grew``: the kernel's high-water mark is reset on entry
    (``/proc/self/clear_refs``) and read on exit, whether the block returns or raises. None where the kernel
    does not offer the reset."""

    grew: int | None = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = _status_kb("VmRSS")
        except OSError:
            self.before = None
        return self

    def __exit__(self, *exc):
        self.grew = None if self.before is None else _status_kb("VmHWM") - self.before
        return False


def _cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    out = []
    for fmt, path in valid_files(folder).items():
        out += [(fmt, name, data) for name, data in truncations(path, 8) + overwrites(path, 6, seed=len(fmt))]
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory)


_OPENED: list[str] | None = None  # the files opened while a case is analyzed (an audit hook, installed once)


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _answer(path):
    """analyze's answer for one file: ("ok", n paths) or ("refused", the one line). Every file it opens in the
    case's folder must be the case itself: never a neighbour (no splicing, no escape)."""
    global _OPENED
    _OPENED = []
    meter = PeakMemory()
    try:
        with meter:
            res = analyze_files([path])
    except InvalidArgument as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg, msg
        return "refused", msg
    finally:
        opened, _OPENED = _OPENED, None
        folder = os.path.realpath(os.path.dirname(path))
        here = {os.path.realpath(f) for f in opened if os.path.realpath(f).startswith(folder + os.sep)}
        assert here <= {os.path.realpath(path)}, (path, sorted(here))
        _LAST_SEEN[:] = sorted(here)
        assert meter.grew is None or meter.grew < CASE_BOUND_KB, (path, meter.grew)
        _GREW.append(meter.grew)
    return "ok", len(res["paths"])


_LAST_SEEN: list[str] = []
_GREW: list[int | None] = []  # the memory each analyzed case added


def test_the_memory_meter_sees_one_case_allocating():
    import numpy as np

    with PeakMemory() as big:
        float(np.ones(48 * 1024 * 1024).sum())  # 384 MiB, touched, then freed
    if big.grew is None:
        pytest.skip("the kernel offers no resettable high-water mark")
    assert big.grew >= 384 * 1024 * 0.95 and big.grew > CASE_BOUND_KB
    with PeakMemory() as small:
        pass
    assert small.grew < 16 * 1024  # and nothing much when nothing is allocated: the reset worked


def test_the_audit_hook_sees_what_analyze_opens_and_a_neighbour_would_fail(tmp_path):
    import numpy as np

    good = tmp_path / "a.npz"
    np.savez(good, w=np.cumsum(np.random.default_rng(0).standard_normal((16, 20)), 0))
    np.savez(tmp_path / "b.npz", w=np.zeros((16, 20)))  # a neighbour: never opened
    assert _answer(good)[0] == "ok" and _LAST_SEEN == [os.path.realpath(good)]
    global _OPENED
    _OPENED = []
    open(tmp_path / "b.npz", "rb").close()  # what the check would see if analyze read the neighbour
    assert os.path.realpath(_OPENED[-1]) == os.path.realpath(tmp_path / "b.npz")
    _OPENED = None


def test_at_least_100_generated_cases(cases):
    assert len(cases) + len(header_edits()) >= 100


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "legacy", "npz", "gguf", "onnx"])
def test_cut_and_overwritten_files_are_answered_in_one_line(cases, fmt, tmp_path):
    mine = [c for c in cases if c[0] == fmt]
    if not mine:
        pytest.skip(f"no {fmt} writer installed")
    suffix = {"torch": ".pt", "legacy": ".pt"}.get(fmt, "." + fmt)
    answers = []
    for i, (_, name, data) in enumerate(mine):
        p = tmp_path / f"c{i}{suffix}"
        p.write_bytes(data)
        answers.append((name, _answer(p)))
    assert any(a[0] == "refused" for _, a in answers), answers  # the cuts at 0 bytes at least
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < MEMORY_BOUND_KB


@pytest.mark.parametrize("name,header", header_edits(), ids=[n for n, _ in header_edits()])
def test_edited_safetensors_headers_are_refused_in_one_line(tmp_path, name, header):
    kind, answer = _answer(write_header_file(tmp_path / "h.safetensors", header))
    assert kind == "refused", (name, answer)

