"""The documentation site builds without a warning, and documents every public name.

`make docs` installs mkdocs and mkdocstrings (the `docs` extra) and CI runs it before the tests;
here the same strict build runs into a temporary directory, so a broken link, a missing anchor or
an API reference that no longer resolves fails the suite too. Without the extra it is skipped.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import supervisor

ROOT = Path(__file__).resolve().parent.parent

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings are not installed (the `docs` extra: `make docs` installs them)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [], warnings
    return out


@needs_mkdocs
@pytest.mark.timeout(180)
def test_the_site_builds_strict_and_every_page_is_in_it(site: Path) -> None:
    pages = [p.stem for p in (ROOT / "docs").glob("*.md")]
    missing = [p for p in pages if not (site / ("" if p == "index" else p) / "index.html").exists()]
    assert "index" in pages and missing == [], f"docs pages not built: {missing}"
    # ARCHITECTURE.md is included, not copied: the page carries its text.
    architecture = (site / "architecture" / "index.html").read_text()
    assert "Who may import whom" in architecture and "--8&lt;--" not in architecture


@needs_mkdocs
@pytest.mark.timeout(180)
def test_the_api_reference_documents_every_export(site: Path) -> None:
    html = (site / "api" / "index.html").read_text()
    anchors = set(re.findall(r'id="(supervisor\.[A-Za-z_]+)"', html))
    missing = [name for name in supervisor.__all__ if f"supervisor.{name}" not in anchors]
    assert missing == [], f"exported but not in the API reference: {missing}"


def test_ci_builds_the_docs_between_lint_and_test() -> None:
    steps = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = [s for s in steps if s.startswith("make ")]
    assert steps.index("make lint") < steps.index("make docs") < steps.index("make test") == len(steps) - 1
    assert re.search(r"^docs:.*\n\t\$\(BIN\)/mkdocs build --strict", (ROOT / "Makefile").read_text(), re.M)
