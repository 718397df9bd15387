"""The import rules and size limits of ARCHITECTURE.md, checked on the source so they can't rot.

The rules are read from the syntax tree of every module under ``supervisor/`` (no import runs, no
extra dependency). Every import counts, including those inside function bodies and under
``TYPE_CHECKING``: an upward import hidden in a function is still an upward import.

The size limits (a module over :data:`MAX_MODULE_LINES` lines, a function over
:data:`MAX_FUNCTION_LINES`) have exceptions, listed once, in :data:`ALLOWED`, each with its reason,
and mirrored in ARCHITECTURE.md's "Exceptions" section (a test below keeps the two equal). The
list only shrinks: an entry that is back within the limit, or names something that no longer
exists, fails the test until it is removed.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "supervisor"

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


#: Modules (``path``) and functions (``path::Class.function``) allowed over the limits, and why.
ALLOWED: dict[str, str] = {
    "supervisor/adapters/redis/broker.py": (
        "one class over one set of Lua scripts: each method is a thin call of its script; it grew with the"
        " port (per-node claims and completions, cancels, workflows, progress) after issue 10 cut the port"
        " down; still to do: split it by role, as owned.py and nodes.py began"
    ),
}


# --- reading the source ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One imported name, absolute (``from . import x`` resolved, ``from m import n`` as ``m.n``), and where."""

    path: str  # relative to the repository, e.g. "supervisor/core/task.py"
    line: int
    module: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(relpath: str) -> str:
    parts = relpath.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(text: str, relpath: str) -> Iterator[Import]:
    """Every import in ``text``, the source of the module at ``relpath``, at any depth."""
    name = module_name(relpath)
    package = name if relpath.endswith("/__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text, filename=relpath)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(relpath, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # Each name in full: ``from supervisor import adapters`` imports the subpackage.
            for alias in node.names:
                yield Import(relpath, node.lineno, f"{target}.{alias.name}")


def imports_of(path: Path) -> Iterator[Import]:
    return imports_in(path.read_text(), rel(path))


def all_imports() -> list[Import]:
    return [imp for path in modules() for imp in imports_of(path)]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def stdlib(module: str) -> bool:
    return module.partition(".")[0] in sys.stdlib_module_names


def report(broken: list[Import], rule: str) -> str:
    return f"{rule}:\n" + "\n".join(f"  {imp}" for imp in broken)


# --- the import rules ------------------------------------------------------------------------------


def test_the_reader_sees_hidden_and_relative_imports() -> None:
    """The rules below are only as good as the reader: it must see what hides in a function."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import task\n"
        "from ..config import Settings\n"
        "if TYPE_CHECKING:\n"
        "    import redis.client\n"
        "def f() -> None:\n"
        "    from supervisor import adapters\n"
    )
    found = {(imp.line, imp.module) for imp in imports_in(source, "supervisor/core/x.py")}
    assert found == {
        (1, "typing.TYPE_CHECKING"),
        (2, "supervisor.core.task"),
        (3, "supervisor.config.Settings"),
        (5, "redis.client"),
        (7, "supervisor.adapters"),
    }
    assert str(Import("supervisor/core/x.py", 5, "redis")) == "supervisor/core/x.py:5 imports redis"


def test_only_the_redis_adapter_imports_redis() -> None:
    broken = [
        imp for imp in all_imports() if within(imp.module, "redis") and not under(imp.path, "supervisor/adapters/redis")
    ]
    assert not broken, report(broken, "only supervisor/adapters/redis may import redis")


def test_the_core_imports_only_the_standard_library_msgspec_and_itself() -> None:
    broken = [
        imp
        for imp in all_imports()
        if under(imp.path, "supervisor/core")
        and not (stdlib(imp.module) or within(imp.module, "msgspec") or within(imp.module, "supervisor.core"))
    ]
    assert not broken, report(broken, "supervisor/core may import only the standard library, msgspec and itself")


def test_only_adapters_and_wiring_import_adapters() -> None:
    broken = [
        imp
        for imp in all_imports()
        if within(imp.module, "supervisor.adapters")
        and not (under(imp.path, "supervisor/adapters") or imp.path == "supervisor/wiring.py")
    ]
    assert not broken, report(
        broken, "only supervisor/adapters and supervisor/wiring.py may import supervisor.adapters"
    )


def test_adapters_import_only_core_config_and_their_own_package() -> None:
    broken = []
    for imp in all_imports():
        if not under(imp.path, "supervisor/adapters") or not within(imp.module, "supervisor"):
            continue
        parts = imp.path.split("/")
        own = "supervisor.adapters" + (f".{parts[2]}" if len(parts) > 3 else "")
        allowed = ("supervisor.core", "supervisor.config", own)
        if imp.module in ("supervisor", "supervisor.adapters") or any(within(imp.module, ok) for ok in allowed):
            continue
        broken.append(imp)
    assert not broken, report(broken, "an adapter may import only supervisor.core, supervisor.config and itself")


def test_nothing_imports_the_entry_points() -> None:
    """The CLI and the dashboard sit on top: the library (client, worker, process layer) never needs them."""
    broken = [
        imp
        for imp in all_imports()
        if (
            within(imp.module, "supervisor.cli")
            and not (under(imp.path, "supervisor/cli") or imp.path == "supervisor/__main__.py")
        )
        or (
            within(imp.module, "supervisor.dashboard")
            and not (under(imp.path, "supervisor/cli") or under(imp.path, "supervisor/dashboard"))
        )
    ]
    rule = "supervisor.cli is imported only by cli/ and __main__.py; supervisor.dashboard only by cli/ and itself"
    assert not broken, report(broken, rule)


def test_nothing_in_the_package_imports_tests_or_bench() -> None:
    broken = [imp for imp in all_imports() if within(imp.module, "tests") or within(imp.module, "bench")]
    assert not broken, report(broken, "supervisor/ may not import tests or bench (they are not installed)")


# --- cycles and the direction of dependencies --------------------------------------------------------


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``supervisor`` it imports (an imported name resolved to the module
    that defines it: ``supervisor.worker.Worker`` is the package ``supervisor.worker``)."""
    names = {module_name(rel(path)) for path in modules()}

    def resolve(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in names}
    for imp in all_imports():
        source, target = module_name(imp.path), resolve(imp.module)
        if within(imp.module, "supervisor") and target is not None and target != source:
            graph[source].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(g for g in strongly_connected(graph) if len(g) > 1) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    """Deferred imports and TYPE_CHECKING imports count: a cycle hidden in a function is still one."""
    graph = import_graph()
    cycles = [group for group in strongly_connected(graph) if len(group) > 1]
    lines = [f"  {' <-> '.join(group)}" for group in cycles]
    assert not cycles, "modules that import each other (move what they share below both):\n" + "\n".join(lines)


#: Who may not import whom, beyond the rules above: dependencies point inwards (entry points, then
#: the process layer and the composition root, then the worker and the app, then the core).
_BELOW_THE_WORKER = (
    ("supervisor.process", "supervisor.worker", "supervisor.wiring", "supervisor.client", "supervisor.async_client"),
    "the app and its middleware sit below the worker and the clients",
)
FORBIDDEN: list[tuple[str, tuple[str, ...], str]] = [
    (
        "supervisor/process",
        ("supervisor.client", "supervisor.async_client", "supervisor.cli", "supervisor.dashboard"),
        "the process layer does not use the entry points",
    ),
    (
        "supervisor/worker",
        ("supervisor.process", "supervisor.wiring", "supervisor.client", "supervisor.async_client"),
        "the worker runs inside a process; it does not know the process layer, the composition or the clients",
    ),
    ("supervisor/app.py", *_BELOW_THE_WORKER),
    ("supervisor/context.py", *_BELOW_THE_WORKER),
    ("supervisor/registration.py", *_BELOW_THE_WORKER),
    ("supervisor/middleware", *_BELOW_THE_WORKER),
    (
        "supervisor/wiring.py",
        ("supervisor.process", "supervisor.client", "supervisor.async_client", "supervisor.app"),
        "the composition root builds adapters from settings; it does not use what it serves",
    ),
]


def test_dependencies_point_inwards() -> None:
    broken = [
        f"{imp}  ({why})"
        for imp in all_imports()
        for where, targets, why in FORBIDDEN
        if (imp.path == where or under(imp.path, where)) and any(within(imp.module, t) for t in targets)
    ]
    assert not broken, "imports that point outwards:\n" + "\n".join(f"  {line}" for line in broken)


# --- private names stay in their module --------------------------------------------------------------

#: Underscore names that are public API of the standard library (``os._exit``, namedtuples).
PUBLIC_UNDERSCORE = {"_exit", "_getframe", "_asdict", "_replace", "_fields", "_make", "_current_frames"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def reaches_into_private_names(text: str, relpath: str) -> Iterator[str]:
    """``other._name`` where ``_name`` is not one this module defines, and ``from m import _name``.

    ``self._name`` and ``cls._name`` are the object's own, wherever a base class defines them.
    """
    tree = ast.parse(text, filename=relpath)
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not mine and node.attr not in own and node.attr not in PUBLIC_UNDERSCORE:
                yield f"{relpath}:{node.lineno} uses .{node.attr}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("supervisor"):
            yield from (f"{relpath}:{node.lineno} imports {a.name}" for a in node.names if private(a.name))


def test_the_private_name_reader_sees_reaching_in() -> None:
    source = (
        "from supervisor.config import _parse\n"
        "class W(Base):\n"
        "    def f(self, o):\n"
        "        self._inherited()\n"
        "        return o._b\n"
    )
    assert set(reaches_into_private_names(source, "supervisor/x.py")) == {
        "supervisor/x.py:5 uses ._b",
        "supervisor/x.py:1 imports _parse",
    }


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = [line for path in modules() for line in reaches_into_private_names(path.read_text(), rel(path))]
    assert not found, "private names used outside the module that defines them:\n" + "\n".join(
        f"  {line}" for line in found
    )


# --- the size limits -------------------------------------------------------------------------------


def sizes() -> dict[str, int]:
    """Every module's line count (``path``) and every function's (``path::Class.function``)."""
    out: dict[str, int] = {}
    for path in modules():
        text = path.read_text()
        out[rel(path)] = len(text.splitlines())

        def visit(node: ast.AST, prefix: str, where: str = rel(path)) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = prefix + child.name
                    out[f"{where}::{name}"] = (child.end_lineno or child.lineno) - child.lineno + 1
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")
                else:
                    visit(child, prefix)

        visit(ast.parse(text, filename=str(path)), "")
    return out


def limit(key: str) -> int:
    return MAX_FUNCTION_LINES if "::" in key else MAX_MODULE_LINES


def test_no_module_or_function_is_over_its_limit() -> None:
    over = {key: n for key, n in sizes().items() if n > limit(key) and key not in ALLOWED}
    assert not over, "over the size limit (split it, or add it to ALLOWED with a reason):\n" + "\n".join(
        f"  {key}: {n} lines (limit {limit(key)})" for key, n in sorted(over.items())
    )


def test_every_exception_is_still_needed() -> None:
    measured = sizes()
    stale = [key for key in ALLOWED if measured.get(key, 0) <= limit(key)]
    assert not stale, "remove from ALLOWED (and ARCHITECTURE.md), now within the limit or gone:\n" + "\n".join(
        f"  {key}: {measured.get(key, 'gone')}" for key in stale
    )


def test_every_exception_has_a_reason_and_is_listed_in_architecture_md() -> None:
    assert all(reason.strip() for reason in ALLOWED.values())
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.partition("## Exceptions")[2].partition("\n## ")[0]
    assert section, "ARCHITECTURE.md has no '## Exceptions' section"
    listed = set(re.findall(r"`(supervisor/[^`\s]+)`", section))
    assert listed == set(ALLOWED), (
        f"ARCHITECTURE.md's exceptions and tests/test_architecture.py's ALLOWED differ: "
        f"only in the doc {sorted(listed - set(ALLOWED))}, only in the test {sorted(set(ALLOWED) - listed)}"
    )


#: The test infrastructure the benchmarks share, imported by the peers' virtualenvs too (Celery,
#: RQ, ... without this package installed): the standard library, redis-py and each other only.
SHARED_INFRASTRUCTURE = {
    "tests/redis_server.py",
    "tests/redis_topologies.py",
    "tests/procs.py",
    "tests/waiting.py",
    "bench/common.py",
}


def test_the_shared_test_infrastructure_needs_only_the_standard_library_and_redis() -> None:
    own = {module_name(path) for path in SHARED_INFRASTRUCTURE}
    broken = [
        imp
        for path in sorted(SHARED_INFRASTRUCTURE)
        for imp in imports_in((ROOT / path).read_text(), path)
        if not (stdlib(imp.module) or within(imp.module, "redis") or any(within(imp.module, m) for m in own))
    ]
    assert not broken, report(broken, "the shared test infrastructure may import only the standard library and redis")
