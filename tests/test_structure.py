"""The package's imports point one way: no cycles, and nothing lower imports anything higher (variants, nets and
data know nothing of suites, evaluation or the command line; evaluation knows no suite). Read from the source, every
import statement, module level and inside functions alike."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ae_lightning"

# Higher floors may import lower ones, never the reverse. A module's floor is that of its longest matching prefix.
FLOORS = {
    "ae_lightning.__main__": 9,
    "ae_lightning.cli": 8,
    "ae_lightning.suite": 7,
    "ae_lightning.scoring": 7,
    "ae_lightning.export": 7,  # a command beside score: it builds its scorer from a run as score reads one
    "ae_lightning.lightning_cli": 6,
    "ae_lightning.callbacks": 5,  # image panels draw with evaluation.views
    "ae_lightning.evaluation": 4,
    "ae_lightning.smoke": 4,
    "ae_lightning": 3,  # the package's public names: variants, the data module, load()
    "ae_lightning.loading": 3,
    "ae_lightning.variants": 2,
    "ae_lightning.nets": 1,
    "ae_lightning.data": 1,
    "ae_lightning.devices": 1,
    "ae_lightning.seeding": 0,
    "ae_lightning.distances": 0,
    "ae_lightning.files": 0,
    "ae_lightning.errors": 0,
    "ae_lightning.messages": 0,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    best = max((prefix for prefix in FLOORS if module == prefix or module.startswith(prefix + ".")), key=len)
    return FLOORS[best]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from a.b import c`` counts a.b.c where that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a import b`: the module a.b where b is one (Python's own submodule import), else a itself
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in modules] or [node.module]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {module: imports_of(path, set(files)) - {module} for module, path in files.items()}


def test_no_import_points_up():
    upward = [
        f"{module} (floor {floor(module)}) imports {target} (floor {floor(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if floor(target) > floor(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target) :] + [module, target]))
            elif target not in state:
                visit(target, stack + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above can fail: a variant importing the suite package is caught as both."""
    fake = tmp_path / "ae_lightning"
    for path in PACKAGE.rglob("*.py"):
        target = fake / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    bad = fake / "variants" / "autoencoder.py"
    bad.write_text(bad.read_text() + "\nfrom ae_lightning.suite.compare import run_suite\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = import_graph()
    assert "ae_lightning.suite.compare" in graph["ae_lightning.variants.autoencoder"]
    try:
        test_no_import_points_up()
    except AssertionError as err:
        assert "ae_lightning.variants.autoencoder (floor 2) imports ae_lightning.suite.compare" in str(err)
    else:
        raise AssertionError("the upward import was not seen")
    try:
        test_no_import_cycles()
    except AssertionError as err:
        assert "ae_lightning.variants.autoencoder" in str(err)
    else:
        raise AssertionError("the cycle was not seen")
