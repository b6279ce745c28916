"""The package's architecture as rules on its import graph, counting imports inside functions and in
`if __name__ == "__main__":` blocks too: no cycle, and no import that runs back up a floor.

Floors, lowest first (a module may import its own folder and any lower floor, never a higher one):

  runtime/    where and how things run: device and dtype, processes, model source, atomic writes, errors, output
  text/       units and their spellings, the prompt, answer formats and parsing, tokenization
  datagen/    the question generator
  data, base_llm     the course's data and model wrapper
  training/   config, recipe, trainer, collation, sampling, LoRA, guard, checkpoints, metrics, faults
  tools/      the command line, doctor, benchmark, grader check, this project's SFT contract
  sft, __init__      the course's entry points

The contract kit (sft_contract) is a separate top-level package: the course package may import it; it imports
nothing of the course package (tests/sft_contract/).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "homework"
FLOORS = ["runtime", "text", "datagen", "core", "training", "tools", "entry"]
TOP_LEVEL = {"homework.data": "core", "homework.base_llm": "core", "homework.sft": "entry", "homework": "entry"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def floor(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return module.split(".")[1]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    if not node.level:
        base = node.module or ""
        return [base] + [f"{base}.{a.name}" for a in node.names]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    base = ".".join(anchor + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def package_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The homework modules that `module` imports anywhere in its file (a package import counts as its __init__)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = _resolve(module, path, node)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known and n != module}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: package_imports(m, p, set(mods)) for m, p in mods.items()}


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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({floor(a)}) imports {b} ({floor(b)})" for a, targets in graph.items() for b in targets
                  if FLOORS.index(floor(b)) > FLOORS.index(floor(a)))


def test_every_module_has_a_floor():
    assert {floor(m) for m in modules()} <= set(FLOORS)


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["homework.sft"]  # the scan sees the package, folders included
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_import_runs_back_up_a_floor():
    assert upward_imports(import_graph()) == []


def test_the_rules_catch_what_they_are_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert upward_imports({"homework.runtime.device": {"homework.training.config"}}) == [
        "homework.runtime.device (runtime) imports homework.training.config (training)"]
    # __main__ blocks count: sft's `python -m homework.sft` imports the command line, a floor below it
    assert "homework.tools.cli" in import_graph()["homework.sft"]
