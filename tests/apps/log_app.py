"""A handler that logs through its own logger, for tests/test_logs.py's run under the real daemon."""

from __future__ import annotations

import logging

from supervisor import App

app = App()
log = logging.getLogger("myapp.billing")


@app.task("billing:charge")
def charge(payload: dict[str, int]) -> None:
    log.info("charging %d", payload["amount"])
