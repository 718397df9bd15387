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
        "one class over one set of Lua scripts: each method is a thin call of its script; the port it"
        " implements is being cut down to what production uses (issue 10), which will shrink it"
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
