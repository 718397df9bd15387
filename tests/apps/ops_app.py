"""Task handlers for the operations tests (tests/test_supervisor_ops.py).

A separate App, so that the handlers of ``tests.apps.pool_app`` stay as they are. Runs are
recorded like pool_app's (list ``<ns>:test:ran``), so ``Pool.ran()`` and ``Pool.done()`` work.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from supervisor import App, TaskContext, fixed_delay
from tests.apps.pool_app import client, record

app = App(retry_delay=fixed_delay(0))


@app.task("record")
def do_record(payload: Any, context: TaskContext) -> None:
    record(context)


@app.task("env")
def do_env(payload: Any, context: TaskContext) -> None:
    """Record what a worker child, and a program it runs, see of NOTIFY_SOCKET / WATCHDOG_*."""
    names = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    script = "; ".join(f'echo "{n}=${{{n}-<unset>}}"' for n in names)
    seen = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10).stdout
    key = f"{os.environ['ASYNQ_NAMESPACE']}:test:env"
    fields = {f"child:{n}": os.environ.get(n, "<unset>") for n in names}
    for line in seen.splitlines():
        name, _, value = line.partition("=")
        fields[f"exec:{name}"] = value
    client().hset(key, mapping=fields)
    record(context)


@app.task("orphans")
def do_orphans(payload: int, context: TaskContext) -> None:
    """Leave ``payload`` orphans behind: ``sleep``s started in the background of a shell that exits.

    They are re-parented to the nearest reaper (PID 1 of the PID namespace); their pids, as this
    namespace sees them, go to the list ``<ns>:test:orphans``.
    """
    script = f"for i in $(seq {int(payload)}); do sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!; done"
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10).stdout
    pids = [line.strip() for line in out.splitlines() if line.strip()]
    if pids:
        client().rpush(f"{os.environ['ASYNQ_NAMESPACE']}:test:orphans", *pids)
    record(context)
