"""The worker package's structure, read from the syntax tree: its modules talk through public names.

ARCHITECTURE.md ("Inside a worker process"): one object owns the shared state behind one lock,
and the claim loop, the execution and the runner use one another's public methods only. These
checks keep it so: no access to another object's private attribute, no import cycle among the
worker's modules (imports inside functions and under ``TYPE_CHECKING`` count), and no import of
the process layer, which sits above the worker.
"""

from __future__ import annotations

import ast
from pathlib import Path

WORKER = Path(__file__).resolve().parent.parent / "supervisor" / "worker"


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(WORKER.glob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_worker_module_touches_another_objects_private_names():
    found = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{name}.py:{node.lineno}: .{node.attr}")
    assert found == []


def test_the_worker_modules_import_one_another_without_a_cycle_and_never_the_process_layer():
    trees = modules()
    graph = {
        name: {other for other in trees if other != name and f"supervisor.worker.{other}" in imported(tree)}
        for name, tree in trees.items()
    }
    assert not any(m.startswith("supervisor.process") for tree in trees.values() for m in imported(tree))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == [], graph


def test_only_the_state_uses_the_waiting_lines_and_the_pending_completions():
    """They are not thread-safe on their own: WorkerState uses them under its lock."""
    users = {
        name
        for name, tree in modules().items()
        for module in imported(tree)
        if module in ("supervisor.worker.waiting.WaitingLines", "supervisor.worker.completions.PendingCompletions")
    }
    assert users == {"state"}
