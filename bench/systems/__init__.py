"""The systems under test: ours and the peers, behind one small interface (see ``base.System``).

Each ``<name>_adapter.py`` holds a system's adapter; its task bodies live in ``<name>_tasks.py`` so that the
worker processes import only what they need. Adapters are imported lazily: a peer's module needs
the peers' virtualenv, ours needs the project's.
"""

from __future__ import annotations

import importlib

from bench.systems.base import System

#: In the order they run; ours first.
NAMES = ("ours", "celery", "rq", "dramatiq", "huey", "arq", "taskiq", "saq")
PEERS = NAMES[1:]


def load(name: str, url: str, workers: int = 2) -> System:
    if name not in NAMES:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(NAMES)}")
    module = importlib.import_module(f"bench.systems.{name}_adapter")
    system: System = module.SYSTEM(url, workers)
    return system
