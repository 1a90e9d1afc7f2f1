"""The index package's imports run one way: no module imports one that imports it back (directly or through
others, function-level imports included), and no private name crosses a module boundary."""

import ast
from pathlib import Path

PKG = Path(__file__).parents[1] / "qscope_widgets" / "index"


def _imports() -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    graph = {}
    for f in PKG.glob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                edges.add((node.module.split(".")[0], tuple(a.name for a in node.names)))
            elif isinstance(node, ast.ImportFrom) and node.level == 1:
                edges |= {(a.name, ()) for a in node.names}
        graph[f.stem] = edges
    return graph


def test_index_modules_import_without_cycles():
    graph = {m: {t for t, _ in e if t != m} for m, e in _imports().items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) == 2 or m not in graph:
            return
        state[m] = 1
        for t in graph[m]:
            visit(t, path + [m])
        state[m] = 2

    for m in graph:
        visit(m, [])
    assert "reader" not in graph["builder"] or "builder" not in graph["reader"]


def test_no_private_names_cross_index_modules():
    bad = [(m, t, n) for m, e in _imports().items() for t, names in e for n in names
           if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad
