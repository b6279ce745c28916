"""The package's import graph has no cycle, counting imports inside functions too (issue 14)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "homework"


def _is_main_block(node) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and getattr(test.left, "id", "") == "__name__"


def package_imports(path: Path) -> set[str]:
    """homework.* modules that `path` imports anywhere except under `if __name__ == "__main__":`."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for top in tree.body if _is_main_block(top) for n in ast.walk(top)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from . import y
                names = [f"{base}"] if base else [a.name for a in node.names]
                found |= {f"homework.{n}" for n in names}
            elif base.startswith("homework"):
                found.add(base if base != "homework" else "homework")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("homework.")}
    modules = {f"homework.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    return {f"homework.{p.stem}": package_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 20 and graph["homework.sft"]  # the scan sees the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
