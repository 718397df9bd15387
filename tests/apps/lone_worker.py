"""One worker alone in its process, with a pool child's signal handlers (SIGTERM stops, SIGUSR1
quiets, both leave a blocked wait at once), for tests that signal a worker while it waits.

``python -m tests.apps.lone_worker WORKER_ID [IDLE_BLOCK]`` with REDIS_URL and ASYNQ_NAMESPACE
set. It runs the pool app's tasks, logs to stderr, and exits 0 once stopped. No supervisor
watches it: what it leaves owned in Redis stays owned (the point of the tests that use it).
"""

from __future__ import annotations

import logging
import os
import sys

from supervisor.config import load_settings
from supervisor.process.child import install_signal_handlers
from supervisor.wiring import make_broker, worker_options
from supervisor.worker import Worker, WorkerOptions
from tests.apps.pool_app import app


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    worker_id = argv[0]
    idle_block = float(argv[1]) if len(argv) > 1 else 1.0
    settings = load_settings(environ=dict(os.environ))
    options = WorkerOptions(**{**worker_options(settings.asynq).__dict__, "idle_block": idle_block})
    worker = Worker(app, make_broker(settings, client_name=f"lone-{worker_id}"), options, worker_id=worker_id)
    install_signal_handlers(worker)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
