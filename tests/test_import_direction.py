"""Imports run one way (issue 11): core below analysis below widgets, no import cycle, and no private name
imported across modules. The test reads the source (ast), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "qscope_widgets"
CORE = {"scope", "hooks", "sae", "trace", "steering", "generation", "tokens", "errors", "model_layers", "html", "validate"}
WIDGETS = {"widgets"}
# The deliberate thin lazy entry points by which core reaches up (Scope.explore -> widgets, ...).
ENTRY_POINTS = {"explore", "feature", "index", "load_index", "attribute", "contrast", "monitor", "steering_eval", "export", "demo",
                "attribution_view", "compare"}

TEMPORARY_ALLOW: set[tuple[str, ...]] = set()


TEMPORARY_ALLOW_CYCLE: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def resolve(mod: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[tuple[str, str | None]]:
    """(target module, imported name or None) for every name the statement imports from this package."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.startswith("qscope_widgets")]
    base = node.module or ""
    if node.level:
        pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    if not base.startswith("qscope_widgets"):
        return []
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append((sub, None) if sub in MODULES else (base, a.name))
    return out


def imports():
    """Yield (module, target, name, top_level, enclosing function) for every import in the package."""
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"

        def walk(node, func, top):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target, name in resolve(mod, child, is_pkg):
                        yield mod, target, name, top, func
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield from walk(child, child.name, False)
                else:
                    yield from walk(child, func, top)
        yield from walk(tree, None, True)


def group(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def level(mod: str) -> int:
    g = group(mod)
    return 0 if g in CORE or g == "" else 2 if g in WIDGETS else 1


def test_no_private_name_is_imported_across_modules():
    bad = []
    for mod, target, name, _top, _func in imports():
        if name and name.startswith("_") and not name.startswith("__") and target != mod:
            if (mod, target, name) not in TEMPORARY_ALLOW:
                bad.append(f"{mod} imports {target}.{name}")
    assert not bad, "make it public in the lower module:\n" + "\n".join(bad)


def test_core_reaches_up_only_through_the_entry_points_and_analysis_never_imports_widgets():
    bad = []
    for mod, target, _name, top, func in imports():
        if group(mod) == "" or level(target) <= level(mod):
            continue
        if level(mod) == 0 and not top and func in ENTRY_POINTS:
            continue  # Scope.explore / Scope.feature / Scope.index ...: deliberate, lazy, thin
        bad.append(f"{mod} imports {target} ({'module level' if top else f'in {func}()'})")
    assert not bad, "\n".join(bad)


def test_imports_have_no_cycle():
    """Module-level and lazy imports alike (a lazy import hides a cycle, it does not remove it); only the core's
    deliberate entry points (Scope.explore, ...) may point up."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, target, name, top, func in imports():
        if target not in MODULES or target == mod or (mod, target) in TEMPORARY_ALLOW_CYCLE:
            continue
        if level(target) > level(mod) and level(mod) == 0 and func in ENTRY_POINTS:
            continue
        graph[mod].add(target)
    # a package's __init__ importing its submodules is not a cycle of the code; drop edges into parent packages
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not mod.startswith(t + ".")}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()
    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_walker_sees_lazy_imports():
    """A check that cannot fail is no check: the walker must find a known function-level import."""
    found = [(m, t, f) for m, t, _n, top, f in imports() if m == "qscope_widgets.scope" and not top]
    assert any(t.startswith("qscope_widgets.widgets") and f == "explore" for m, t, f in found)
