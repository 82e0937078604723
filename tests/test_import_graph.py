"""The package's import graph: no cycles, and no import goes up the layer order.

Every module under ``src/optimal_sparsity`` is parsed with ``ast``; an edge is any import
of a package module, wherever it sits (module level or inside a function, i.e. lazy), and
any ``importlib.import_module("optimal_sparsity....")`` with a string literal. Importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so it is an edge to those packages
too, unless the importer lives inside them (then they are already initialising).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "optimal_sparsity"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Top to bottom. A module may import modules of its own layer or of a lower one. The key
# is the module (or package) name below ``optimal_sparsity``; the longest matching prefix
# decides a module's layer. Base modules (config, errors, atomic, paths, grid, progress,
# ...) are everything not listed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "commands", "gpu_check"),
    ("bench",),  # times the study's designs, the trainer's step and eval's adapter
    ("study",),
    ("eval",),
    ("train", "hub", "report", "testing"),
    ("figures", "data", "checkpoint", "hf_export"),  # data's caches reuse the manifest
    ("claims", "references"),  # a pinned reference is read as claim data
    ("results", "model", "accounting", "planner"),  # counts come from the built model
)
# Upward imports that remain (none today): each must go away, not grow.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()
BASE_LAYER = len(LAYERS)


def module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    names = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` is, or lies in (``a.b.func`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


_MODULE_LITERAL = re.compile(rf"{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _imported(tree: ast.AST, module: str, is_package: bool) -> tuple[set[str], set[str]]:
    """Dotted names a module's syntax tree imports (not yet resolved to modules), and its
    string literals shaped like a module name."""
    found: set[str] = set()
    literals: set[str] = set()
    imports_by_name = False
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_LITERAL.fullmatch(node.value):
                literals.add(node.value)
        elif isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "import_module")):
            imports_by_name = True
    found = {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}
    # A module that calls ``importlib.import_module`` imports the module names it spells
    # (a literal argument, or a table of names such as the CLI's COMMAND_MODULES). Elsewhere
    # a module name in a string is a command line (``python -m ...``), not an import.
    if not imports_by_name:
        literals = set()
    return found, literals


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (directly, lazily or via importlib)."""
    modules = module_names()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported, literals = _imported(tree, module, path.name == "__init__.py")
        resolved = {_resolve(name, modules) for name in imported}
        resolved |= {name for name in literals if name in modules}
        targets: set[str] = set()
        for target in resolved - {None}:
            targets.add(target)
            parent = target.rpartition(".")[0]
            while parent:
                if not (module == parent or module.startswith(parent + ".")):
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
        targets.discard(module)
        targets.discard(PACKAGE)  # the root __init__ imports nothing
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[m0, m1, ..., m0]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer(module: str) -> int:
    """The layer index of a module (0 is the top)."""
    rel = module.removeprefix(PACKAGE).lstrip(".")
    best, best_len = BASE_LAYER, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (rel == name or rel.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    return best


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((src, dst) for src, targets in graph.items() for dst in targets
                  if layer(dst) < layer(src))


def test_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert len(graph) > 50
    # module-level, from-import of a submodule, and the CLI's importlib.import_module
    assert f"{PACKAGE}.model.transformer" in graph[f"{PACKAGE}.model"]
    assert any(dst.startswith(f"{PACKAGE}.commands.") for dst in graph[f"{PACKAGE}.cli"])


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_upward_import():
    edges = set(upward_edges(import_graph()))
    new = sorted(edges - KNOWN_UPWARD)
    assert not new, "imports going up the layer order:\n" + "\n".join(
        f"  {src} (layer {layer(src)}) -> {dst} (layer {layer(dst)})" for src, dst in new)
    gone = sorted(KNOWN_UPWARD - edges)
    assert not gone, f"no longer upward, drop from KNOWN_UPWARD: {gone}"
