"""The in-memory adapter: the broker port in one process's memory, for tests and as proof of the port.

Not a production backend (see :mod:`supervisor.adapters.memory.broker`).
"""

from supervisor.adapters.memory.broker import MemoryBroker
from supervisor.adapters.memory.clock import ManualClock

__all__ = ["ManualClock", "MemoryBroker"]
