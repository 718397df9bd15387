"""The Celery app of celery_app.py, migrated: the same three tasks on a supervisor App.

Run the workers with::

    supervisor start --app examples.from_celery.tasks:app --queues default:3,images:1

What changed, task by task, is in README.md beside this file.
"""

from __future__ import annotations

import msgspec

from supervisor import App, SkipRetry, TaskContext, exponential_backoff

app = App()


class MailServerDown(Exception):
    pass


# Celery passed positional arguments; here each task has one payload, a typed Struct that
# msgspec validates before the handler runs (a bad payload is archived at once, not retried).
class Welcome(msgspec.Struct):
    user_id: int
    email: str


class Resize(msgspec.Struct):
    url: str
    width: int
    height: int


class Thumbnail(msgspec.Struct):
    url: str
    size: list[int]
    thumbnail: str


class Report(msgspec.Struct):
    day: str
    orders: int
    attempt: int


# autoretry_for=(MailServerDown,), retry_backoff=True: every exception retries here, with a
# growing, jittered back-off; max_retries=5 moves to the enqueue (max_retry=5). An error no retry
# can fix raises SkipRetry: archived at once (Celery: a failure that autoretry_for does not cover).
@app.task("shop.send_welcome", retry_delay=exponential_backoff)
def send_welcome(payload: Welcome) -> str:
    if "@" not in payload.email:
        raise SkipRetry(f"not an address: {payload.email}")
    return f"welcome-{payload.user_id}"


# soft_time_limit/time_limit: the enqueue's timeout= (TaskTimeout is raised at it; the process is
# killed 2 s later if the handler does not return).
@app.task("shop.resize_image")
def resize_image(payload: Resize) -> Thumbnail:
    return Thumbnail(
        url=payload.url,
        size=[payload.width, payload.height],
        thumbnail=f"{payload.url}?w={payload.width}&h={payload.height}",
    )


# bind=True and self.request.retries: a second parameter receives the TaskContext.
@app.task("shop.build_report")
def build_report(payload: str, context: TaskContext) -> Report:
    return Report(day=payload, orders=42, attempt=context.retried + 1)


# beat_schedule's crontab(hour=3, minute=0): a periodic entry. No beat process to run: every
# supervisor schedules, exactly one enqueues each tick.
app.periodic("0 3 * * *", "shop.build_report", "yesterday", max_retry=3)
