"""The package's layers import one way: core <- io <- training <- text/tracking <- sweeps <- app,
with tracking depending on training alone, and no two modules import each other, even through a
chain. Read from the source (every import, including those inside functions), so that an arrow
pointing back up fails here rather than as an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medkit_exp"

# Layer of each part of the package; a module may import its own layer and those below.
LAYERS = {
    "medkit_exp.errors": 0,
    "medkit_exp.core": 0,
    "medkit_exp.stats": 0,  # numpy and scipy only: scores, intervals and paired tests from per-document counts
    "medkit_exp.io": 1,
    "medkit_exp.cv": 1,  # folds over documents (scikit-learn); on core and errors alone
    "medkit_exp.analysis": 3,  # annotation-error suspects (cleanlab) from out-of-fold records: beside text, on it
    "medkit_exp.training": 2,
    "medkit_exp.model_uris": 2,  # models named by MLflow URIs, resolved to local folders: for text and tracking
    "medkit_exp.tracking": 3,
    "medkit_exp.text": 3,
    "medkit_exp.sweeps": 4,  # the callback, resume and Optuna search: on tracking and training
}
APP_LAYER = 5  # everything else: the app package and the entry points (__main__, predict, send_unsent)
# Side by side on layer 3, neither may import the other; tracking sees training only (and core).
FORBIDDEN = {("medkit_exp.tracking", "medkit_exp.text"), ("medkit_exp.text", "medkit_exp.tracking"),
             ("medkit_exp.tracking", "medkit_exp.io"),
             ("medkit_exp.sweeps", "medkit_exp.text"), ("medkit_exp.sweeps", "medkit_exp.io"),
             ("medkit_exp.analysis", "medkit_exp.tracking"), ("medkit_exp.tracking", "medkit_exp.analysis")}


def part_of(module: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return "app"


def layer_of(module: str) -> int:
    return LAYERS.get(part_of(module), APP_LAYER)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, module)`` of every medkit_exp import in the file (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
    return [(line, m) for line, m in found if m == "medkit_exp" or m.startswith("medkit_exp.")]


def violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        for line, target in imported_modules(path, root):
            if target == "medkit_exp":
                continue
            pair = (part_of(source), part_of(target))
            if layer_of(target) > layer_of(source) or pair in FORBIDDEN:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {source} imports {target}")
    return problems


def test_no_import_points_back_up_a_layer():
    assert violations() == []


@pytest.mark.parametrize("source, target", [
    ("medkit_exp.training.trainer", "medkit_exp.text.ner"),
    ("medkit_exp.sweeps.callback", "medkit_exp.text.ner.evaluation"),
    ("medkit_exp.sweeps.resume", "medkit_exp.app"),
    ("medkit_exp.tracking.store", "medkit_exp.sweeps.jobs"),
    ("medkit_exp.text.ner.experiment", "medkit_exp.tracking.store"),
    ("medkit_exp.io.brat", "medkit_exp.app"),
])
def test_the_check_catches_an_upward_arrow(tmp_path, source, target):
    # A copy of the package with one bad import added (inside a function) must be reported.
    copy = tmp_path / "medkit_exp"
    for path in PACKAGE.rglob("*.py"):
        destination = copy / path.relative_to(PACKAGE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    module_file = copy / Path(*source.split(".")[1:]).with_suffix(".py")
    module_file.write_text(module_file.read_text(encoding="utf-8") + f"\n\ndef _late():\n    import {target}\n",
                           encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1 and f"{source} imports {target}" in found[0], found


# ---------------------------------------------------------------------------- import circles
def _module_of(target: str, known: set[str]) -> str:
    """The module an import names: ``from pkg import sub`` names ``pkg.sub`` when that is a module."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at module level or inside functions alike)."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    known = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medkit_exp"):
                targets |= {_module_of(f"{node.module}.{alias.name}", known) for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {_module_of(a.name, known) for a in node.names if a.name.startswith("medkit_exp")}
        # A package's __init__ gathering its own modules, and those modules naming the package, is no circle.
        graph[name] = {t for t in targets if t != name and not name.startswith(t + ".")
                       and not (paths[name].name == "__init__.py" and t.startswith(name + "."))}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_between_modules():
    assert import_circles(import_graph()) == []


def test_the_check_catches_an_import_circle(tmp_path):
    copy = tmp_path / "medkit_exp"
    for path in PACKAGE.rglob("*.py"):
        destination = copy / path.relative_to(PACKAGE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    # trainer.py imports checkpoint.py; the reverse arrow, even inside a function, closes a circle.
    checkpoint = copy / "training" / "checkpoint.py"
    checkpoint.write_text(checkpoint.read_text(encoding="utf-8")
                          + "\n\ndef _late():\n    from medkit_exp.training.trainer import Trainer\n", encoding="utf-8")
    circles = import_circles(import_graph(copy))
    assert any({"medkit_exp.training.checkpoint", "medkit_exp.training.trainer"} <= set(c) for c in circles), circles
