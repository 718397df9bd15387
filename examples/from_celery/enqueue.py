"""The call sites of celery_app.py, migrated: enqueue the three tasks and wait for their results.

    REDIS_URL=redis://localhost:6379/0 python -m examples.from_celery.enqueue

needs a running ``supervisor start --app examples.from_celery.tasks:app --queues default:3,images:1``.
"""

from __future__ import annotations

import time
from typing import Any

from examples.from_celery.tasks import Report, Resize, Thumbnail, Welcome
from supervisor import Client, ResultNotFound, TaskInfo

#: Celery's result_expires=3600: here each task asks for its result to be kept (retention).
KEEP = "1h"


def enqueue_all(client: Client) -> dict[str, TaskInfo]:
    """The three call sites: delay(), apply_async(queue=, countdown=) and apply_async(expires=)."""
    return {
        # send_welcome.delay(7, "ada@example.com")
        "welcome": client.enqueue(
            "shop.send_welcome", Welcome(user_id=7, email="ada@example.com"), max_retry=5, retention=KEEP
        ),
        # resize_image.apply_async((url, 64, 64), queue="images", countdown=1), time limit 60 s
        "thumbnail": client.enqueue(
            "shop.resize_image",
            Resize(url="https://img/1.png", width=64, height=64),
            queue="images",
            process_in="1s",
            timeout="60s",
            retention=KEEP,
        ),
        # build_report.apply_async(("2026-12-01",), expires=600): archived if not started in time
        "report": client.enqueue(
            "shop.build_report", "2026-12-01", max_retry=3, deadline=time.time() + 600, retention=KEEP
        ),
    }


def wait_result(client: Client, info: TaskInfo, type: Any, timeout: float) -> Any:
    """AsyncResult.get(timeout=): poll for the kept result until it is there or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.result(info.id, queue=info.queue, type=type)
        except ResultNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    with Client() as client:
        infos = enqueue_all(client)
        welcome: str = wait_result(client, infos["welcome"], str, 30)
        thumbnail: Thumbnail = wait_result(client, infos["thumbnail"], Thumbnail, 30)
        report: Report = wait_result(client, infos["report"], Report, 30)
        print(welcome, thumbnail, report, sep="\n")


if __name__ == "__main__":
    main()
