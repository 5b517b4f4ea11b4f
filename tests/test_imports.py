"""Layering: no import circle inside npkit (type-checking imports included), and models do not
import the YAML/CLI settings module."""

import ast
from pathlib import Path

import npkit

ROOT = Path(npkit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """npkit module -> the npkit modules it imports anywhere in its source (functions included)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_no_import_circle_in_npkit():
    graph = imports()
    # Package __init__ files re-export their children; an edge from a child back to its own
    # package's __init__ is the circle to find, so keep those and drop parent -> child edges.
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_models_do_not_import_the_settings_module():
    graph = imports()
    for module in (m for m in graph if m.startswith("npkit.models")):
        assert not graph[module] & {"npkit.config", "npkit.cli"}, module
