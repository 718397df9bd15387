"""The scale-out benchmark's task: a no-op, so that the Redis CPU measured is the queue's own."""

from __future__ import annotations

from supervisor import App

app = App()


@app.task("noop")
def noop(payload: None) -> None:
    return None
