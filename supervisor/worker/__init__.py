"""The worker: claims tasks from weighted queues and runs them, ``concurrency`` at a time.

- :mod:`~supervisor.worker.claim_loop`: the claim loop (:class:`Worker`): claims, completions, give-backs;
- :mod:`~supervisor.worker.state`: the state the claim loop and the tasks share, behind one lock;
- :mod:`~supervisor.worker.execution`: where tasks run (task threads, the event loop), a context each;
- :mod:`~supervisor.worker.runner`: one task, from claimed bytes to a recorded outcome;
- :mod:`~supervisor.worker.options`: how a worker runs and who watches it.
"""

from supervisor.worker.claim_loop import Worker
from supervisor.worker.completions import ACK_DELAY, ACK_MAX
from supervisor.worker.eventloop import EventLoopEnded
from supervisor.worker.loop_claims import WaitInterrupted
from supervisor.worker.options import NoObserver, WorkerObserver, WorkerOptions
from supervisor.worker.waiting import STALE_AFTER

__all__ = [
    "ACK_DELAY",
    "ACK_MAX",
    "STALE_AFTER",
    "EventLoopEnded",
    "NoObserver",
    "WaitInterrupted",
    "Worker",
    "WorkerObserver",
    "WorkerOptions",
]
