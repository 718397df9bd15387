"""The systems under test: ours and the peers, behind one small interface (see ``base.System``).

Each ``<name>_adapter.py`` holds a system's adapter; its task bodies live in ``<name>_tasks.py`` so that the
worker processes import only what they need. Adapters are imported lazily: a peer's module needs
the peers' virtualenv, ours needs the project's.
"""

from __future__ import annotations

import importlib

from bench.systems.base import System

#: In the order they run; ours first. A name with a dash is a variant of one adapter module and
#: venv (``bullmq-node-c1``: ``bullmq_adapter.py``, ``venvs/bullmq``).
NAMES = (
    "ours", "ours-async", "celery", "rq", "dramatiq", "huey", "arq", "taskiq", "saq",
    "bullmq-node", "bullmq-node-c1", "bullmq-py", "bullmq-py-c1",
)  # fmt: skip
PEERS = NAMES[1:]
#: Ours and its variants: they run in the project's own virtualenv.
OURS = tuple(n for n in NAMES if n.partition("-")[0] == "ours")


def family(name: str) -> str:
    """The adapter module and venv a system name belongs to."""
    return name.partition("-")[0]


def load(name: str, url: str, workers: int = 2) -> System:
    if name not in NAMES:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"bench.systems.{family(name)}_adapter")
    cls = module.VARIANTS[name] if hasattr(module, "VARIANTS") else module.SYSTEM
    system: System = cls(url, workers)
    return system
