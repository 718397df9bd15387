"""pool_app's handlers in a process whose wall clock runs 45 s ahead (no faketime here).

Importing it replaces ``time.time`` for the whole process (the supervisor and its children), as a
host with a badly set clock would see it.
"""

from __future__ import annotations

import time

from tests.apps.pool_app import app

SKEW = 45.0
_real_time = time.time
time.time = lambda: _real_time() + SKEW

__all__ = ["app"]
