"""The example app: three task types showing typed payloads, retries and archiving.

Run it with ``make run`` (enqueues a few tasks and runs the pool briefly), or
``supervisor start --app examples.demo:app``.
"""

from __future__ import annotations

import logging
import random

import msgspec

from supervisor import App, SkipRetry, TaskContext, fixed_delay

log = logging.getLogger("examples.demo")
app = App()


class Email(msgspec.Struct):
    to: str
    subject: str
    body: str = ""


class Resize(msgspec.Struct):
    image_url: str
    width: int
    height: int


@app.task("email:send")
def send_email(payload: Email) -> None:
    """A payload that fails validation (say, no 'to') is archived at once, never retried."""
    log.info("sending %r to %s", payload.subject, payload.to)


@app.task("image:resize", retry_delay=fixed_delay(1))
def resize(payload: Resize, context: TaskContext) -> None:
    """Fails now and then: retried after 1 s, archived after its max_retry."""
    if payload.width <= 0 or payload.height <= 0:
        raise SkipRetry(f"cannot resize to {payload.width}x{payload.height}")
    if random.random() < 0.3:
        raise ConnectionError("image store timed out")
    log.info(
        "resized %s to %dx%d (attempt %d)",
        payload.image_url,
        payload.width,
        payload.height,
        context.retried + 1,
    )


@app.task("report:nightly")
def nightly(payload: dict[str, str]) -> None:
    log.info("building report for %s", payload.get("day", "today"))
