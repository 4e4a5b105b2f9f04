"""The shape of the code: no import cycle among convlab's modules (imports inside functions
included), and functions and modules
within the sizes STYLE.md sets (a function <= 60 lines, a module <= 300 lines).

Sizes are physical lines, blank lines, comments and docstrings included: what a reader scrolls
through. A function's size runs from its `def` (decorators excluded) to its last line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("convlab", "training", "inference", "deploy", "report")
SCANNED = PACKAGES + ("scripts", "notebooks", "bench")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300
# Allowed to be longer, and why. Keep this short: a new entry needs a reason a reviewer accepts.
FUNCTION_ALLOWED: dict[str, str] = {}
MODULE_ALLOWED: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _all_imports(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement: at the top, and inside functions and classes (a function-level
    import runs when the function does, and closes a cycle just as well)."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _imported(name: str, node: ast.stmt, modules: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    base = node.module or ""
    if node.level:
        package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".rstrip(".") if base else package
    targets = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    if len(targets) < len(node.names) and base in modules:
        targets.add(base)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[name] = set().union(*(_imported(name, n, modules) for n in _all_imports(tree))) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "deploy.aws" in graph["deploy.stores"] and "training.data.base" in graph["training.data.idx"]
    # Imports inside functions count: deploy.package imports the handler's bundle only when packaging.
    assert "inference.code_bundle" in graph["deploy.package"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _sources() -> list[Path]:
    return [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py"))]


def test_no_function_is_over_the_limit():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(ROOT)}:{node.name}"
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES and where not in FUNCTION_ALLOWED:
                    long.append(f"{where} ({size} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_module_is_over_the_limit():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
            and str(p.relative_to(ROOT)) not in MODULE_ALLOWED]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _function_sizes() -> dict[str, int]:
    """"path:function" -> lines, for every function in the scanned sources."""
    sizes = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(ROOT)}:{node.name}"
                sizes[where] = max(sizes.get(where, 0), node.end_lineno - node.lineno + 1)
    return sizes


def stale_allowances(function_allowed: dict[str, str], module_allowed: dict[str, str]) -> list[str]:
    """Allowances that no longer excuse anything: a function or module that does not exist, or is
    within the limit now (the allowance would silently cover its next growth)."""
    sizes = _function_sizes()
    modules = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in _sources()}
    stale = [f"{key} (no such function)" for key in function_allowed if key not in sizes]
    stale += [f"{key} ({sizes[key]} lines: within the limit)" for key in function_allowed
              if key in sizes and sizes[key] <= MAX_FUNCTION_LINES]
    stale += [f"{key} (no such module)" for key in module_allowed if key not in modules]
    stale += [f"{key} ({modules[key]} lines: within the limit)" for key in module_allowed
              if key in modules and modules[key] <= MAX_MODULE_LINES]
    return stale


def test_every_allowance_still_names_something():
    assert stale_allowances(FUNCTION_ALLOWED, MODULE_ALLOWED) == []


def test_a_stale_allowance_is_found():
    short, module = "deploy/answers.py:content_type_for", "deploy/answers.py"
    found = stale_allowances({"deploy/nowhere.py:main": "gone", short: "short now"},
                             {"deploy/nowhere.py": "gone", module: "short now"})
    lines = len((ROOT / module).read_text(encoding="utf-8").splitlines())
    assert found == ["deploy/nowhere.py:main (no such function)",
                     f"{short} ({_function_sizes()[short]} lines: within the limit)",
                     "deploy/nowhere.py (no such module)", f"{module} ({lines} lines: within the limit)"]
