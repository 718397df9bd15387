"""Handlers for the tests of task values at the edges of their ranges, and of waiting for results."""

from __future__ import annotations

import time
from typing import Any

from supervisor import App, fixed_delay
from supervisor.core.building import MAX_ID_LENGTH

app = App(retry_delay=fixed_delay(0))

#: A task type as long as the builder accepts.
LONG_TYPE = "long-" + "t" * (MAX_ID_LENGTH - 5)


@app.task("echo")
def echo(payload: Any) -> Any:
    return payload


@app.task(LONG_TYPE)
def long_type(payload: Any) -> Any:
    return payload


@app.task("fail")
def fail(payload: str) -> None:
    raise ValueError(payload)


@app.task("slow")
def slow(payload: float) -> float:
    time.sleep(payload)
    return payload
