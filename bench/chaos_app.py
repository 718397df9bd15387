"""The chaos test's handler: record each run in Redis in a way that survives the faults.

Each run does one MULTI/EXEC on ``CHAOS_REDIS_URL`` (the broker's Redis, or in the cluster run a
standalone server of its own): ``HINCRBY chaos:runs <id> 1`` (runs per task), ``HSETNX chaos:wait
<id> <seconds from enqueue to this run's start>`` (kept from the first recorded run) and ``RPUSH
chaos:log "<id> <pid> <time> <queue>"`` (who ran it when: the report tells a duplicate whose
earlier run's process was killed from one whose was not). When the connection is killed under
it, the write may or may not have landed; the handler raises and the task is retried after 0.1 s.
So: lost = enqueued ids missing from ``chaos:runs``; duplicates = total runs - unique ids (a run
whose reply was lost and that was retried counts as a duplicate: it did run twice). The socket
timeout (15 s) outlasts the Redis stall fault, so a stall only delays the write.
"""

from __future__ import annotations

import json
import os
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from supervisor import Aggregation, App, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0.1))
_client: dict[int, redis.Redis] = {}

RUNS = "chaos:runs"
WAIT = "chaos:wait"
LOG = "chaos:log"
#: Aggregated task id -> the members it was made of (JSON), from its first recorded run.
GROUPS = "chaos:groups"


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        # No silent retries inside redis-py: a failed write fails the run, and the worker retries it.
        _client[pid] = redis.Redis.from_url(
            os.environ["CHAOS_REDIS_URL"], socket_timeout=15, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
        )
    return _client[pid]


#: Flow control under chaos: one task in LIMITED_EVERY is rate limited, one in CAPPED_EVERY capped.
LIMITED_EVERY, LIMITED_RATE, LIMITED_BURST = 50, 100, 10
CAPPED_EVERY, CAP = 100, 3
#: Capped runs in progress (task id -> pid) and the runs that found more than CAP live ones.
CAPPED_RUNNING = "chaos:capped_running"
CAP_VIOLATIONS = "chaos:cap_violations"


def task_type(i: int) -> str:
    """The type of the chaos run's task number ``i``."""
    if i % LIMITED_EVERY == 0:
        return "chaos.limited"
    return "chaos.capped" if i % CAPPED_EVERY == 1 else "chaos"


@app.task("chaos.limited", rate_limit=f"{LIMITED_RATE}/s", burst=LIMITED_BURST)
def limited(payload: int, context: TaskContext) -> None:
    chaos(payload, context)


@app.task("chaos.capped", cap=CAP)
def capped(payload: int, context: TaskContext) -> None:
    """Counts the capped runs whose process is alive (a SIGKILLed run leaves its entry behind)."""
    c = client()
    c.hset(CAPPED_RUNNING, context.id, os.getpid())
    live = 0
    for pid in c.hvals(CAPPED_RUNNING):
        try:
            os.kill(int(pid), 0)
            live += 1
        except ProcessLookupError:
            pass
    if live > CAP:
        c.incr(CAP_VIOLATIONS)
    time.sleep(0.005)
    chaos(payload, context)
    c.hdel(CAPPED_RUNNING, context.id)


@app.task("chaos")
def chaos(payload: int, context: TaskContext) -> None:
    started = time.time()
    pipe = client().pipeline(transaction=True)
    pipe.hincrby(RUNS, context.id, 1)
    pipe.hsetnx(WAIT, context.id, repr(started - context.message.enqueued_at))
    pipe.rpush(LOG, f"{context.id} {os.getpid()} {started!r} {context.message.queue}")
    pipe.execute()


@app.task("chaos:grouped", aggregate=Aggregation(grace="200ms", max_delay="2s", max_size=50))
def grouped(payload: list[int], context: TaskContext) -> None:
    """An aggregated task of grouped members: which members it holds (HSETNX: a re-run of the same
    aggregated task writes nothing new; a member in two aggregated tasks shows as two entries)."""
    client().hsetnx(GROUPS, context.id, json.dumps(payload))
