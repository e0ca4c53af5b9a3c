"""The shape of the package: no import cycles, short command functions, a short train()."""

import ast
import inspect
from pathlib import Path

import nbnet
from nbnet.train import train

PACKAGE = Path(nbnet.__file__).parent


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """module -> the nbnet modules it imports (anywhere in it, functions included)."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                imported |= {f"{target}.{alias.name}" if f"{target}.{alias.name}" in paths else target
                             for alias in node.names}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                imported |= {n for n in names if n in paths}
        graph[name] = imported & set(paths)
    return graph


def test_no_import_cycles():
    graph = import_graph()
    assert "nbnet.kernels" in graph["nbnet.network"]  # the graph is read at all

    def reaches(start, goal, seen):
        return any(nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen))
                   for nxt in graph[start])

    cyclic = [name for name in graph if reaches(name, name, set())]
    assert cyclic == []


def test_cli_functions_are_short_and_train_takes_few_parameters():
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                body_lines = node.end_lineno - node.body[0].lineno + 1
                assert body_lines <= 42, f"{path.name}: {node.name} has {body_lines} lines"
    assert len(inspect.signature(train).parameters) <= 8
