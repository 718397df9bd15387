"""The Celery app before migration: for reading beside tasks.py, never imported or run here.

Celery is not installed in this project (nor type-checked: `make lint` excludes this file). It
is the shape of a small Celery project: three tasks, retries, a time limit, results, a beat
schedule. tasks.py is the same app on supervisor; enqueue.py replaces the call sites below.
"""

from __future__ import annotations

from celery import Celery, Task
from celery.schedules import crontab

app = Celery("shop", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")
app.conf.result_expires = 3600
app.conf.task_acks_late = True
app.conf.beat_schedule = {
    "nightly-report": {"task": "shop.build_report", "schedule": crontab(hour=3, minute=0), "args": ("yesterday",)},
}


class MailServerDown(Exception):
    pass


@app.task(name="shop.send_welcome", autoretry_for=(MailServerDown,), max_retries=5, retry_backoff=True)
def send_welcome(user_id: int, email: str) -> str:
    if "@" not in email:
        raise ValueError(f"not an address: {email}")
    return f"welcome-{user_id}"  # the mail server's message id


@app.task(name="shop.resize_image", soft_time_limit=60, time_limit=90)
def resize_image(url: str, width: int, height: int) -> dict[str, object]:
    return {"url": url, "size": [width, height], "thumbnail": f"{url}?w={width}&h={height}"}


@app.task(name="shop.build_report", bind=True, max_retries=3)
def build_report(self: Task, day: str) -> dict[str, object]:
    return {"day": day, "orders": 42, "attempt": self.request.retries + 1}


if __name__ == "__main__":
    # The call sites, as a web app would have them.
    msg = send_welcome.delay(7, "ada@example.com")
    thumb = resize_image.apply_async(("https://img/1.png", 64, 64), queue="images", countdown=1)
    report = build_report.apply_async(("2026-12-01",), expires=600)
    print(msg.get(timeout=10), thumb.get(timeout=30), report.get(timeout=10))
