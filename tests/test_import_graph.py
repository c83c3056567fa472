"""Import structure of the package, read from the source with ``ast`` (nothing is imported).

Every import statement counts, at module level and inside functions alike: an import
hidden in a function still makes the two modules depend on each other, it only moves
the failure from import time to call time. So do imports made through calls:
``importlib.import_module("ganforge.x")`` and ``__import__("ganforge.x")`` with a
string literal depend on ``ganforge.x``, and with an f-string whose literal start
names a package (``f"ganforge.commands.{name}"``) on every module under it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "src" / "ganforge"
MAX_LINES = 400

# Known exceptions, each the exact set of modules of one strongly connected component
# with a reason. An entry that no longer applies fails the test.
ALLOWED_CYCLES: list[frozenset[str]] = []

# Modules allowed over MAX_LINES ({module: reason}); none today.
ALLOWED_LONG: dict[str, str] = {}

# Inference must never import training code (a served generator would drag in the
# trainer, its optimizers and data loaders).
INFERENCE_MODULES = ("ganforge.sampling", "ganforge.artifacts", "ganforge.weights", "ganforge.checkpoint",
                     "ganforge.inpaint.pipeline", "ganforge.metrics", "ganforge.serve", "ganforge.onnx_export")


def _module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _import_call_target(node: ast.AST) -> tuple[str, bool] | None:
    """``(module name, is_prefix)`` when ``node`` is an import made through a call, else None.

    Recognised: ``importlib.import_module(...)``, ``import_module(...)`` (imported from
    importlib) and ``__import__(...)``, whose first argument is a string literal
    (``is_prefix`` False) or an f-string starting with a literal (``is_prefix`` True:
    any module whose name starts with that text may be imported).
    """
    if not isinstance(node, ast.Call) or not node.args:
        return None
    f = node.func
    is_import = ((isinstance(f, ast.Attribute) and f.attr == "import_module"
                  and isinstance(f.value, ast.Name) and f.value.id == "importlib")
                 or (isinstance(f, ast.Name) and f.id in ("import_module", "__import__")))
    if not is_import:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value, False
    if (isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant)
            and isinstance(arg.values[0].value, str)):
        return arg.values[0].value, True
    return None


def _imported_modules(path: Path, name: str, known: set[str], source: str | None = None) -> set[str]:
    """Modules of the package that ``name`` (at ``path``) imports anywhere in its source.

    ``from ganforge.x import y`` depends on the submodule ``ganforge.x.y`` when that is a
    module, else on ``ganforge.x`` itself (a name its ``__init__`` defines). Importing
    ``ganforge.x.y`` is not counted as depending on the package ``ganforge.x``: a package
    re-exporting its own submodules is not a cycle.
    """
    is_pkg = path.name == "__init__.py"
    deps: set[str] = set()

    def nearest(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, filename=str(path))):
        call = _import_call_target(node)
        if call is not None:
            target, is_prefix = call
            if is_prefix:
                deps.update(m for m in known if m.startswith(target) and m != target.rstrip("."))
            elif nearest(target):
                deps.add(nearest(target))
        elif isinstance(node, ast.Import):
            deps.update(filter(None, (nearest(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                target = sub if sub in known else nearest(module)
                if target:
                    deps.add(target)
    deps.discard(name)
    return deps


def import_graph() -> dict[str, set[str]]:
    files = _module_files()
    known = set(files)
    return {name: _imported_modules(path, name, known) for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative; components of more than one module, i.e. cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module reachable from ``start``, mapped to the module that first imported it."""
    parent = {start: ""}
    todo = [start]
    while todo:
        v = todo.pop()
        for w in sorted(graph[v]):
            if w not in parent:
                parent[w] = v
                todo.append(w)
    return parent


def _chain(parent: dict[str, str], end: str) -> str:
    path = [end]
    while parent[path[-1]]:
        path.append(parent[path[-1]])
    return " -> ".join(reversed(path))


def test_the_graph_sees_function_local_and_submodule_imports():
    graph = import_graph()
    # `from ganforge import checkpoint as ckpt` is the submodule, not the package
    assert "ganforge.checkpoint" in graph["ganforge.train.trainer"]
    # an import inside a function body counts
    assert "ganforge.train.periodic_eval" in graph["ganforge.train.trainer"]


SNIPPET = """
import importlib
from importlib import import_module


def load(name):
    importlib.import_module("ganforge.models.resnet")
    import_module("ganforge.losses")
    __import__("ganforge.metrics.fid")
    importlib.import_module(f"ganforge.commands.{name}")
    importlib.import_module(name)  # not a literal: cannot be resolved, not counted
    importlib.import_module("numpy")  # outside the package
"""


def test_imports_through_importlib_and_dunder_import_count():
    known = {"ganforge.models", "ganforge.models.resnet", "ganforge.losses", "ganforge.metrics",
             "ganforge.metrics.fid", "ganforge.commands", "ganforge.commands.train", "ganforge.commands.eval",
             "ganforge.plugin"}
    deps = _imported_modules(Path("plugin.py"), "ganforge.plugin", known, source=SNIPPET)
    assert deps == {"ganforge.models.resnet", "ganforge.losses", "ganforge.metrics.fid",
                    "ganforge.commands.train", "ganforge.commands.eval"}
    # a family loaded through importlib by its package is a cycle the graph now sees
    graph = {"ganforge.models": _imported_modules(Path("__init__.py"), "ganforge.models", known,
                                                  source='import importlib\nimportlib.import_module('
                                                         '"ganforge.models.resnet")\n'),
             "ganforge.models.resnet": _imported_modules(Path("resnet.py"), "ganforge.models.resnet", known,
                                                         source="from ganforge.models import register\n")}
    assert strongly_connected(graph) == [frozenset({"ganforge.models", "ganforge.models.resnet"})]


def test_the_package_imports_nothing_through_importlib_by_literal_name():
    """Plain imports only: a literal module name given to importlib is an import statement in disguise."""
    hidden = []
    for name, path in _module_files().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = _import_call_target(node)
            if call is not None and not call[1] and call[0].startswith("ganforge"):
                hidden.append(f"{name}: {call[0]}")
    assert not hidden, f"use an import statement instead: {hidden}"


def test_cycle_finder_on_a_known_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}, "g": set()}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d", "e"]]
    assert _chain(reachable(graph, "f"), "e") == "f -> a -> b -> c -> d -> e"


def test_no_import_cycles():
    cycles = strongly_connected(import_graph())
    unexpected = [sorted(c) for c in cycles if c not in ALLOWED_CYCLES]
    assert not unexpected, "import cycles: " + "; ".join(" <-> ".join(c) for c in unexpected)
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in cycles]
    assert not stale, f"allowed cycles that no longer exist (delete them from ALLOWED_CYCLES): {stale}"


@pytest.mark.parametrize("module", INFERENCE_MODULES)
def test_inference_never_reaches_training_code(module):
    graph = import_graph()
    starts = [m for m in graph if m == module or m.startswith(module + ".")]
    assert starts, f"{module} not found"
    for start in starts:
        parent = reachable(graph, start)
        bad = sorted(m for m in parent if m == "ganforge.train" or m.startswith("ganforge.train."))
        assert not bad, f"{start} imports training code: {_chain(parent, bad[0])}"


def test_no_module_is_too_long():
    long = {}
    for name, path in _module_files().items():
        with path.open(encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long[name] = n
    unexpected = {k: v for k, v in long.items() if k not in ALLOWED_LONG}
    assert not unexpected, f"modules over {MAX_LINES} lines: {unexpected}"
    stale = sorted(set(ALLOWED_LONG) - set(long))
    assert not stale, f"no longer over {MAX_LINES} lines (delete from ALLOWED_LONG): {stale}"


def test_no_two_modules_share_a_name():
    """A name says which module is meant: ``monitor.py`` twice (or ``samples.py`` beside ``sampling.py``) did not."""
    seen: dict[str, list[str]] = {}
    for name in _module_files():
        seen.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    packages = {p.parent.name for p in PACKAGE_DIR.rglob("__init__.py")}
    clashes = {k: v for k, v in seen.items() if len(v) > 1 and k not in packages}
    assert not clashes, f"modules sharing a name: {clashes}"
