"""examples/from_celery: the migrated Celery app runs for real and gives the Celery app's results.

A private redis-server (conftest), a real ``supervisor start`` on examples.from_celery.tasks:app,
the call sites of examples/from_celery/enqueue.py. celery_app.py (the original) is never imported:
Celery is not installed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from examples.from_celery import tasks
from examples.from_celery.enqueue import enqueue_all, wait_result
from supervisor import Client
from supervisor.config import Settings
from supervisor.wiring import make_inspection
from tests.helpers import wait_for
from tests.pool import Pool

APP = "examples.from_celery.tasks:app"
QUEUES = ("--queues", "default:3,images:1")


@pytest.mark.timeout(90)
def test_the_migrated_app_runs_the_three_tasks(
    pool_factory: Callable[..., Pool], client: Client, settings: Settings
) -> None:
    pool = pool_factory(app=APP, workers=1, args=QUEUES).start()
    infos = enqueue_all(client)
    assert infos["thumbnail"].queue == "images" and infos["thumbnail"].process_at is not None

    assert wait_result(client, infos["welcome"], str, timeout=30) == "welcome-7"
    thumbnail = wait_result(client, infos["thumbnail"], tasks.Thumbnail, timeout=30)
    assert thumbnail == tasks.Thumbnail(url="https://img/1.png", size=[64, 64], thumbnail="https://img/1.png?w=64&h=64")
    report = wait_result(client, infos["report"], tasks.Report, timeout=30)
    assert report == tasks.Report(day="2026-12-01", orders=42, attempt=1)

    # Celery's ValueError for a bad address (outside autoretry_for) is SkipRetry here: archived at
    # once with its reason, not retried.
    bad = client.enqueue("shop.send_welcome", tasks.Welcome(user_id=8, email="nobody"), max_retry=5)
    inspector = make_inspection(settings)
    view = wait_for(
        lambda: (v := inspector.find(bad.id, queue="default")).state == "archived" and v,
        timeout=30,
        what="the bad address to be archived",
    )
    assert view.message is not None and view.message.retried == 0
    assert "not an address: nobody" in view.message.last_error
    assert pool.proc is not None and pool.proc.poll() is None, pool.tail()


def test_the_beat_schedule_became_a_periodic_entry() -> None:
    [entry] = tasks.app.periodic_entries
    assert (entry.spec, entry.task_type, entry.payload, entry.queue) == (
        "0 3 * * *",
        "shop.build_report",
        "yesterday",
        "default",
    )
    assert sorted(tasks.app.task_types) == ["shop.build_report", "shop.resize_image", "shop.send_welcome"]
