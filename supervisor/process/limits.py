"""Limits of the process layer that configuration must respect."""

from __future__ import annotations

#: Most worker processes one supervisor runs. The parent waits with ``select``, which takes
#: descriptors below 1024 (FD_SETSIZE) only: one health pipe per child, up to 64 metrics clients
#: and its own few must stay under it, with room for what the app opens at import. Past a few
#: hundred processes on one host, run several supervisors.
MAX_WORKERS = 512
