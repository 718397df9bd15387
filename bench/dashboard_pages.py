"""How fast the dashboard's queue page renders with 1,000,000 archived tasks in one queue.

Fills a private redis-server (never 6379) with N archived tasks (the keys archive.lua writes,
filled in pipelined batches: running a million tasks through claim/archive would take minutes),
starts a real ``supervisor dashboard`` process on a free loopback port, and times over HTTP the
queue page's first, middle and last page of archived tasks, the overview and a task page.
Target (issue 14): first and last page under 300 ms. Prints a table; nothing is written.

    .venv/bin/python -m bench.dashboard_pages            # 1,000,000 tasks (~1 minute, ~0.5 GB in Redis)
    .venv/bin/python -m bench.dashboard_pages -n 100000
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import redis

from supervisor.adapters.redis.keys import QueueKeys, queues_key
from supervisor.core.task import TaskMessage, encode_message, encode_payload
from tests.redis_server import RedisServer, free_port
from tests.waiting import wait_for

NAMESPACE = "bench"
QUEUE = "default"
CHUNK = 10_000
TARGET_MS = 300.0


def fill(client: redis.Redis, total: int, pending: bool) -> list[str]:
    """``total`` archived tasks in QUEUE, oldest first; returns the first and last ids.

    With ``pending`` their ids are also pushed on the pending list (a state no real task has
    at once, but the page reads the list exactly as it would for pending tasks).
    """
    k = QueueKeys.of(NAMESPACE, QUEUE)
    payload = encode_payload({"order": 12345, "email": "someone@example.com", "items": [1, 2, 3]})
    base = time.time() - total
    first_last: list[str] = []
    for start in range(0, total, CHUNK):
        ids = [uuid.uuid4().hex for _ in range(min(CHUNK, total - start))]
        msgs = {
            tid: encode_message(
                TaskMessage(
                    id=tid,
                    type="email:send",
                    queue=QUEUE,
                    payload=payload,
                    max_retry=25,
                    enqueued_at=base + start + i,
                    retried=25,
                    last_error="ValueError: bounced",
                    last_failed_at=base + start + i,
                )
            )
            for i, tid in enumerate(ids)
        }
        pipe = client.pipeline(transaction=False)
        pipe.hset(k.msg, mapping=msgs)  # type: ignore[arg-type]
        pipe.hset(k.state, mapping=dict.fromkeys(ids, "archived"))
        pipe.zadd(k.archived, {tid: base + start + i for i, tid in enumerate(ids)})
        if pending:  # the same ids listed in the pending list too, to time a list-backed state
            pipe.lpush(k.pending, *ids)
        pipe.execute()
        if start == 0:
            first_last.append(ids[0])
        last = ids[-1]
    client.sadd(queues_key(NAMESPACE), QUEUE)
    first_last.append(last)
    return first_last


def timed(http: httpx.Client, url: str, repeat: int, expect: str) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = http.get(url)
        out.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200 or expect not in response.text:
            raise SystemExit(f"{url}: {response.status_code}, {expect!r} not found")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-pending", action="store_true", help="Do not also time a 1M-long pending list.")
    args = parser.parse_args()

    server = RedisServer()
    server.start()
    proc = None
    try:
        client = redis.Redis.from_url(server.url)
        t0 = time.monotonic()
        first_id, last_id = fill(client, args.tasks, not args.no_pending)
        fill_s = time.monotonic() - t0
        memory = client.info("memory")["used_memory_human"]
        count = client.zcard(QueueKeys.of(NAMESPACE, QUEUE).archived)
        print(f"filled {count:,} archived tasks in {fill_s:.1f}s (Redis uses {memory})")

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
        env.update(REDIS_URL=server.url, ASYNQ_NAMESPACE=NAMESPACE, ASYNQ_LOG_LEVEL="warning")
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "dashboard", "--port", str(port)], env=env)
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(base + "/api/stats", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 20, 0.1, "the dashboard to answer")
        size = 25
        pages = -(-count // size)
        cases = [
            ("queue page 1 (first)", f"/queue?name={QUEUE}&state=archived&page=1", first_id),
            (f"queue page {pages // 2:,} (middle)", f"/queue?name={QUEUE}&state=archived&page={pages // 2}",
             f"page {pages // 2} of {pages}"),
            (f"queue page {pages:,} (last)", f"/queue?name={QUEUE}&state=archived&page={pages}", last_id),
            *(
                [
                    ("pending page 1 (next to run)", f"/queue?name={QUEUE}&state=pending&page=1", first_id),
                    (f"pending page {pages // 2:,} (middle)", f"/queue?name={QUEUE}&state=pending&page={pages // 2}",
                     f"page {pages // 2} of {pages}"),
                    (f"pending page {pages:,} (last)", f"/queue?name={QUEUE}&state=pending&page={pages}", last_id),
                ]
                if not args.no_pending
                else []
            ),
            ("overview", "/", QUEUE),
            ("task page (last archived)", f"/task?queue={QUEUE}&id={last_id}", last_id),
        ]  # fmt: skip
        print(f"\n{'page':<32} {'median ms':>10} {'max ms':>10}   ({args.repeat} requests each, after one warm-up)")
        worst = {}
        with httpx.Client(base_url=base, timeout=30) as http:
            for label, url, expect in cases:
                http.get(url)  # warm-up: connection, template compilation
                ms = timed(http, url, args.repeat, expect)
                worst[label] = max(ms)
                print(f"{label:<32} {statistics.median(ms):>10.1f} {max(ms):>10.1f}")
        ok = all(v < TARGET_MS for k, v in worst.items() if "(first)" in k or "(last)" in k)
        print(f"\nfirst and last page under {TARGET_MS:.0f} ms (every request): {'yes' if ok else 'NO'}")
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)
        server.stop()


if __name__ == "__main__":
    main()
