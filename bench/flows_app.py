"""bench/flows.py's handlers: a no-op, for plain tasks and chord members alike, and the callback."""

from __future__ import annotations

from typing import Any

from supervisor import App

app = App()


@app.task("noop")
def noop(payload: Any) -> None:
    return None


@app.task("album")
def album(payload: list[Any]) -> int:
    return len(payload)
