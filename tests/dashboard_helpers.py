"""Putting tasks into given states through the real broker scripts, for the dashboard's tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from supervisor.adapters.redis import RedisBroker
from supervisor.core.ports import Claimed
from supervisor.core.task import TaskMessage, encode_message, encode_payload


def envelope(task_id: str, queue: str, payload: Any = None, **extra: Any) -> bytes:
    body = encode_payload(payload)
    return encode_message(
        TaskMessage(
            id=task_id, type="test.task", queue=queue, payload=body, max_retry=3, enqueued_at=time.time(), **extra
        )
    )


def archive(broker: RedisBroker, queue: str, payload: Any = None, *, error: str = "boom", **kw: Any) -> str:
    """Enqueue, claim and archive one task (enqueue.lua, claim.lua, archive.lua): its id."""
    task_id = uuid.uuid4().hex
    assert broker.enqueue(queue, task_id, envelope(task_id, queue, payload, **kw), None)
    now = time.time()
    got = broker.claim("dash-test-worker", [queue], 30)
    assert isinstance(got, Claimed) and got.task_id == task_id, got
    dead = envelope(task_id, queue, payload, retried=3, last_error=error, last_failed_at=now, **kw)
    assert broker.archive(got, "dash-test-worker", dead, now)
    return task_id
