"""Detect Supervisor (supervisord) installed in the same environment as us.

Our distribution is ``supervisor-jobs`` but its import package is ``supervisor``, the same as
supervisord's distribution ``supervisor``. pip installs both into one ``site-packages/supervisor/``
directory: whichever came last overwrote the other's ``__init__.py`` and shared files, and
uninstalling one removes files of the other. Nothing good can come of it, and the failures it
causes (an ImportError deep in a worker, a missing module after an upgrade) do not name the
cause, so the command line checks at start and says so in one line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

#: supervisord's distribution name on PyPI, and modules only it ships inside ``supervisor/``.
SUPERVISORD_DISTRIBUTION = "supervisor"
SUPERVISORD_MODULES = ("supervisor.supervisord", "supervisor.supervisorctl")


def supervisord_conflict() -> str | None:
    """A one-line explanation when supervisord shares this environment, else None."""
    found: list[str] = []
    try:
        dist = importlib.metadata.distribution(SUPERVISORD_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        # "supervisor" 0.1.0 was this project's own name before the rename: an old editable install
        # of ours is not supervisord (it ships no supervisord.py).
        if any(str(f).endswith("supervisord.py") for f in dist.files or ()):
            where = dist.locate_file("")
            found.append(f"the distribution 'supervisor' {dist.version} (supervisord) is installed in {where}")
    for module in SUPERVISORD_MODULES:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            found.append(f"supervisord's module {module} is importable from {spec.origin}")
            break
    if not found:
        return None
    return (
        "; ".join(found)
        + ": supervisord and supervisor-jobs both own the import package 'supervisor' and cannot share "
        "a Python environment; install supervisor-jobs in its own virtualenv "
        "(python3 -m venv /opt/supervisor-jobs/.venv && /opt/supervisor-jobs/.venv/bin/pip install supervisor-jobs)"
    )
