"""Each queue's history on Redis: a sample a minute for a day, the counters at each day's end.

Written by the supervisors' keeping role once a minute from the statistics it already reads
(see process/keeper.py), never by a task's path. Two sorted sets per queue, scored by minute
and by day, each trimmed on every write: a queue's history costs at most
:data:`HISTORY_MINUTES` + :data:`HISTORY_DAYS` small members, whatever its traffic. Several
supervisors sampling the same minute replace each other's sample (the same score).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.inspection import HISTORY_DAYS, HISTORY_MINUTES, QueueStats, Sample

#: Seconds the history keys live after their last write (a queue no one serves fades away).
HISTORY_TTL = (HISTORY_DAYS + 1) * 86400


def minutes_key(k: QueueKeys) -> str:
    return k.pending[: -len("pending")] + "history:minutes"


def days_key(k: QueueKeys) -> str:
    return k.pending[: -len("pending")] + "history:days"


@port_errors
class Recording:
    """The history half of the Inspector (a mixin: needs its ``redis`` and ``keys``)."""

    redis: Any

    def keys(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def record_history(self, stats: list[QueueStats], now: float) -> None:
        minute, day = int(now // 60), int(now // 86400)
        pipe = self.redis.pipeline(transaction=False)
        for s in stats:
            k = self.keys(s.queue)
            sample = json.dumps([round(now, 1), s.pending, s.active, s.scheduled, s.retry, s.archived, s.succeeded,
                                 s.failed, round(s.latency(now), 3)])  # fmt: skip
            for key, score, keep in ((minutes_key(k), minute, HISTORY_MINUTES), (days_key(k), day, HISTORY_DAYS)):
                pipe.zremrangebyscore(key, score, score)
                pipe.zadd(key, {sample: score})
                pipe.zremrangebyscore(key, "-inf", score - keep)
                pipe.expire(key, HISTORY_TTL)
        pipe.execute()

    def history(self, queue: str, minutes: int = HISTORY_MINUTES, days: int = 30) -> tuple[list[Sample], list[Sample]]:
        k = self.keys(queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(minutes_key(k), -minutes, -1)
        pipe.zrange(days_key(k), -days, -1)
        by_minute, by_day = pipe.execute()
        return _samples(by_minute), _samples(by_day)


def _samples(members: list[bytes]) -> list[Sample]:
    out = []
    for m in members:
        try:
            values = msgspec.json.decode(m, type=tuple[float, int, int, int, int, int, int, int, float])
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # written by another version: skipped, the rest of the history stands
        out.append(Sample(*values))
    return out
