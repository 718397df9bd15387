"""Task handlers for the dashboard's browser test (tests/test_dashboard_browser.py).

``work`` takes a little time so the overview's counts visibly move; ``flaky`` is archived at
once (SkipRetry) until the test sets ``<ns>:test:allow``, so an operator's retry from the
dashboard is seen to run. Runs are recorded like pool_app's (``Pool.ran()``/``Pool.done()``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from supervisor import App, SkipRetry, TaskContext, fixed_delay
from tests.apps.pool_app import client, record

app = App(retry_delay=fixed_delay(0))


@app.task("work")
def do_work(payload: Any, context: TaskContext) -> None:
    time.sleep(0.05)
    record(context)


@app.task("flaky")
def do_flaky(payload: Any, context: TaskContext) -> None:
    if not client().exists(f"{os.environ['ASYNQ_NAMESPACE']}:test:allow"):
        raise SkipRetry("refused until the test allows it: <b>not bold</b>")
    record(context)


@app.task("hold")
def do_hold(payload: Any, context: TaskContext) -> None:
    """Runs until the test sets ``<ns>:test:release`` (at most a minute), so it can be seen on Active."""
    release = f"{os.environ['ASYNQ_NAMESPACE']}:test:release"
    deadline = time.monotonic() + 60
    while not client().exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
    record(context)
