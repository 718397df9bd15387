"""The worker: claims tasks from weighted queues and runs them, ``concurrency`` at a time.

- :mod:`~supervisor.worker.loop`: the claim loop and the task threads (:class:`Worker`);
- :mod:`~supervisor.worker.runner`: one task, from claimed bytes to a recorded outcome;
- :mod:`~supervisor.worker.slots`: where tasks run (threads, the event loop) and their time limits;
- :mod:`~supervisor.worker.options`: how a worker runs and who watches it.
"""

from supervisor.worker.completions import ACK_DELAY, ACK_MAX
from supervisor.worker.loop import WaitInterrupted, Worker
from supervisor.worker.options import NoObserver, WorkerObserver, WorkerOptions
from supervisor.worker.waiting import STALE_AFTER

__all__ = [
    "ACK_DELAY",
    "ACK_MAX",
    "STALE_AFTER",
    "NoObserver",
    "WaitInterrupted",
    "Worker",
    "WorkerObserver",
    "WorkerOptions",
]
