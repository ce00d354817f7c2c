"""The package's import graph: no cycles, and no sub-package imports upward.

Framework-free: the imports are read with `ast`, nothing is imported. Every
`import` counts, also those inside functions. `from package import name`
is an edge to the sub-module `package.name` when there is one, else to
`package` (a package's `__init__` always runs before its sub-modules, so
that edge is not counted as a cycle).
"""

import ast
import pathlib

import pytest

PACKAGE = "neural_structured_learning"
ROOT = pathlib.Path(__file__).resolve().parent
FRAMEWORKS = ("keras", "tensorflow", "torch", "jax")

# What each area (first name below the package) may import from the package;
# "<modules>" stands for the top-level modules (`version`, `_internals`, ...)
# other than `cli`.
ALLOWED = {
    "_core": {"_core"},
    "configs": {"_core", "configs"},
    "tools": {"_core", "configs", "tools"},
    "lib": {"_core", "configs", "lib", "<modules>"},
    "keras": {"_core", "configs", "lib", "tools", "keras", "<modules>"},
    "evaluation": {"_core", "configs", "lib", "keras", "evaluation",
                   "<modules>"},
}
# Areas that must not import a deep-learning framework, even lazily.
FRAMEWORK_FREE = ("_core", "configs", "tools", "cli")


def _modules():
    modules = {}
    for path in ROOT.rglob("*.py"):
        if path.name.endswith("_test.py") or ".venv" in path.parts:
            continue
        parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name, path, modules):
    """Yields the absolute names `name` imports (modules or third-party)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[:len(name.split(".")) - node.level
                                        + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in modules else base


def _graph():
    """`{module: set of package modules it imports}` and third-party names."""
    modules = _modules()
    edges, external = {}, {}
    for name, path in modules.items():
        edges[name], external[name] = set(), set()
        for target in _imports(name, path, modules):
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in modules:
                    target = target.rpartition(".")[0]
                if target != name:
                    edges[name].add(target)
            else:
                external[name].add(target.split(".")[0])
    return edges, external


def _cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def _area(module):
    """The sub-package of `module`, or "<modules>" for a top-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    if parts[1] == "cli":
        return "cli"
    is_module = len(parts) == 2 and (ROOT / f"{parts[1]}.py").is_file()
    return "<modules>" if is_module else parts[1]


EDGES, EXTERNAL = _graph()


def test_the_graph_is_read():
    assert f"{PACKAGE}.tools._packer" in EDGES
    assert f"{PACKAGE}._core.naming" in EDGES[f"{PACKAGE}.tools._packer"]


def test_no_import_cycles():
    assert _cycles(EDGES) == []


def test_cycles_are_found():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


@pytest.mark.parametrize("area", sorted(ALLOWED))
def test_no_upward_imports(area):
    bad = sorted(
        f"{module} -> {target}" for module, targets in EDGES.items()
        if _area(module) == area for target in targets
        if _area(target) not in ALLOWED[area])
    assert not bad, f"{area} may import only {sorted(ALLOWED[area])}"


def test_nothing_imports_the_command_line():
    bad = sorted(module for module, targets in EDGES.items()
                 if f"{PACKAGE}.cli" in targets)
    assert not bad


@pytest.mark.parametrize("area", FRAMEWORK_FREE)
def test_framework_free(area):
    bad = sorted(f"{module} -> {name}" for module, names in EXTERNAL.items()
                 if _area(module) == area for name in names
                 if name in FRAMEWORKS)
    assert not bad
