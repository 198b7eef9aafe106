"""The package's shape: no import cycles inside src/odecheck, no private names imported across
modules, and a new block is one module plus one registry line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import odecheck
from odecheck import blocks

SRC = Path(odecheck.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import in the file, lazy ones included, but not
    those under ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for target, names in _imports(path):
            if not target.startswith("odecheck"):
                continue
            # "from . import nn" imports the submodule odecheck.nn
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            for t in subs or [target]:
                if t in files and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            # a package's __init__ importing its own submodules is how packages are built, not a cycle
            if m != "odecheck" and t.startswith(m + "."):
                continue
            if state.get(t) == 1 and not (t == "odecheck" or m.startswith(t + ".")):
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles_inside_the_package():
    assert _cycles(_graph()) == []


def test_the_cycle_detector_finds_a_planted_cycle():
    graph = {"odecheck.a": {"odecheck.b"}, "odecheck.b": {"odecheck.c"}, "odecheck.c": {"odecheck.a"}}
    assert _cycles(graph) == [["odecheck.a", "odecheck.b", "odecheck.c", "odecheck.a"]]


def test_no_module_imports_another_modules_private_names():
    # private submodules (_native, _kernels, _errors) are the package's own internals and may be
    # imported inside it; a private function, class or constant of another module may not
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    offenders = []
    for path in SRC.rglob("*.py"):
        for target, names in _imports(path):
            if target.startswith("odecheck"):
                offenders += [f"{path.relative_to(SRC)}: {target}.{n}" for n in names
                              if n.startswith("_") and n != "__version__" and f"{target}.{n}" not in modules]
    assert offenders == []


def test_the_graph_sees_the_engine_edges():
    graph = _graph()
    assert "odecheck.engine._kernels" in graph["odecheck.engine.models"]  # a real edge, so the cycle test has something to check
    assert "odecheck.engine.models" not in graph["odecheck.engine._kernels"]  # annotations only, under TYPE_CHECKING


def test_every_block_is_one_registered_module():
    for name, cls in blocks.REGISTRY.items():
        assert cls.name == name
        assert Path(__import__(cls.__module__, fromlist=["x"]).__file__).parent == SRC / "engine" / "blocks"
        # the engine, the ODE and the references need nothing else from a block
        for method in ("layer_shapes", "layer_weights", "forward", "forward_state", "backward", "vector_field",
                       "naive_update"):
            assert getattr(cls, method) is not getattr(blocks.Block, method), (name, method)
    assert odecheck.BLOCKS == tuple(blocks.REGISTRY)


def test_the_package_map_names_every_module():
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    named = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            named.update(part.strip().strip("`") for part in first.split(","))
    modules = {_module_name(p).removeprefix("odecheck").lstrip(".") for p in SRC.rglob("*.py")} - {""}
    missing = sorted(m for m in modules if m not in named)
    assert not missing, f"docs/architecture.md does not list {missing}"


MAP = SRC.parents[1] / "docs" / "architecture.md"


def _map_row_imports(first_cell: str, graph: dict[str, set[str]]) -> str:
    """The imports column of the map's row naming these modules, from the import graph: every odecheck module
    they import (lazy imports included, TYPE_CHECKING ones not, a package's own submodules not), sorted."""
    names = re.findall(r"`([^`]+)`", first_cell)
    out = set()
    for n in names:
        out |= {t.removeprefix("odecheck.") for t in graph.get("odecheck." + n, set())
                if t != "odecheck" and not t.startswith(f"odecheck.{n}.")}
    return ", ".join(f"`{t}`" for t in sorted(out)) if out else "-"


def _map_with_generated_imports(text: str) -> str:
    """docs/architecture.md with the imports column of every module row computed (what the map must say)."""
    graph, lines = _graph(), []
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) == 5 and cells[1].strip().startswith("`") and re.search(r"`[\w.]+`", cells[1]):
            names = re.findall(r"`([^`]+)`", cells[1])
            if all("odecheck." + n in graph for n in names):
                cells[3] = f" {_map_row_imports(cells[1], graph)} "
                line = "|".join(cells)
        lines.append(line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def test_the_package_maps_imports_column_is_the_import_graph():
    # generated, not hand-kept: `python tests/test_architecture.py` rewrites the column from the code
    text = MAP.read_text()
    wrong = [(a, b) for a, b in zip(text.splitlines(), _map_with_generated_imports(text).splitlines(), strict=True) if a != b]
    assert not wrong, f"{len(wrong)} rows of docs/architecture.md list other imports than the code; run " \
                      f"`python tests/test_architecture.py` (first: {wrong[0][0]} -> {wrong[0][1]})"


def test_blocks_and_kernels_know_the_network_interface_not_the_model():
    """The blocks and the kernels read a network through blocks.base.Network: no import of models, not
    even a type-only one (which would close the cycle models -> _kernels -> blocks -> models)."""
    for path in [*(SRC / "engine" / "blocks").glob("*.py"), SRC / "engine" / "_kernels.py"]:
        text = path.read_text()
        assert "odecheck.engine.models import" not in text and "from ..models import" not in text, path.name
        assert not re.search(r"\._p\b", text), f"{path.name} reads the model's private parameters"


def _block_name_tests(tree: ast.AST) -> list[ast.Compare]:
    """Comparisons of something named like a block against a block's registry name."""
    names = set(blocks.REGISTRY)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            consts = {c.value for side in sides for c in ast.walk(side) if isinstance(c, ast.Constant)}
            if consts & names and "block" in " ".join(ast.unparse(side) for side in sides):
                out.append(node)
    return out


def test_no_code_outside_a_block_tests_a_blocks_name():
    # what the engine, the estimators or the experiments need of a block is a block attribute or method
    # (acts_on_vectors, recomputes, laziness, v_fan_in, naive_options, check_shape, conv_io_maps, ...)
    offenders = [f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}" for path in SRC.rglob("*.py")
                 if path.parent != SRC / "engine" / "blocks" for node in _block_name_tests(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_block_name_check_sees_planted_ones():
    for code in ('if net.block == "conv":\n    pass\n', 'ok = block not in ("mlp", "res1")\n',
                 'x = CONV if cfg.block != "single" else 0\n'):
        assert len(_block_name_tests(ast.parse(code))) == 1, code
    assert _block_name_tests(ast.parse('if io_init == "conv":\n    pass\n')) == []  # an io_init, not a block


# functions allowed more than 10 parameters, and why: each is a flat list by nature
MANY_PARAMETERS = {
    "cli.analyze": "a command: each parameter is one of its flags",
    "experiments.strategies.architectures": "a Hypothesis strategy: keyword bounds, as Hypothesis's own strategies take",
    "engine.blocks.mlp.range_backward": "a kernel over tensors and their buffers",
    "engine._native.mlp_backward": "the binding of a compiled kernel",
}


def test_functions_are_short_and_take_few_parameters():
    """No function over 50 lines; none with more than 10 parameters unless grouped in a config object or
    listed above with its reason; the command line module under 350 lines."""
    long, many = [], []
    for path in SRC.rglob("*.py"):
        mod = _module_name(path).removeprefix("odecheck.")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.end_lineno - node.lineno + 1 > 50:
                long.append(f"{mod}.{node.name}")
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            if len(names) > 10 and f"{mod}.{node.name}" not in MANY_PARAMETERS:
                many.append(f"{mod}.{node.name} ({len(names)})")
    assert not long, f"over 50 lines: {long}"
    assert not many, f"over 10 parameters: {many}"
    assert len((SRC / "cli.py").read_text().splitlines()) < 350


# ----------------------------------------------------------------------------- layers (docs/architecture.md)
# The folders are the layers: a module in one imports only from its own folder or the folders before it in
# ORDER; the command line (cli, progress) and the package's __init__ sit on top. UPWARD would list an arrow
# that runs up, with its reason: it is empty, and a new upward arrow fails.
ORDER = ["core", "engine", "analysis", "presentation", "experiments", "command line"]
TOP_LEVEL = 12  # at most this many entries at the top of src/odecheck
UPWARD: dict[tuple[str, str], str] = {}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ORDER else "command line"


def test_the_folders_are_the_layers_and_no_import_runs_up():
    up = {(a, b) for a, bs in _graph().items() for b in bs
          if ORDER.index(_layer(b)) > ORDER.index(_layer(a))}
    assert sorted(up) == sorted(UPWARD), "imports that run up a layer"
    top = sorted(p.name for p in SRC.iterdir() if p.name != "__pycache__")
    assert len(top) <= TOP_LEVEL, top
    assert {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ORDER[:-1])


def test_the_layer_table_is_the_one_in_the_docs():
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    for name in ORDER[:-1]:
        line = next((x for x in text.splitlines() if x.startswith(f"| `{name}/` |")), None)
        assert line is not None, f"docs/architecture.md has no row for the {name} layer"
        members = sorted(p.stem for p in (SRC / name).iterdir()
                         if p.name != "__init__.py" and (p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")))
        assert sorted(re.findall(r"`([\w.]+)`", line.split("|")[2])) == members, name


def test_the_old_module_names_are_the_same_modules():
    import importlib

    for old, new in (("odecheck.models", "odecheck.engine.models"), ("odecheck.claims", "odecheck.experiments.claims"),
                     ("odecheck.claims.transfer", "odecheck.experiments.claims.transfer"),
                     ("odecheck.estimators.regularity", "odecheck.analysis.estimators.regularity"),
                     ("odecheck.nn", "odecheck.engine.nn"), ("odecheck.claims.decisions", "odecheck.analysis.estimators.decisions")):
        assert importlib.import_module(old) is importlib.import_module(new), old
    import odecheck

    assert callable(odecheck.analyze) and odecheck.claims.REGISTRY and odecheck.nn.StackedResNet


if __name__ == "__main__":  # rewrite the package map's imports column from the code
    MAP.write_text(_map_with_generated_imports(MAP.read_text()))
