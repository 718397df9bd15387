"""Bulk delete of pending tasks: wall time and the longest Redis command (SLOWLOG).

    .venv/bin/python -m bench.bulk_delete [--tasks 200000]

Starts a private redis-server, enqueues N pending tasks (batch API), records every command over
1 ms in SLOWLOG, runs ``Inspector.delete_all(queue, "pending")`` (what ``supervisor tasks delete
--all --state pending --yes`` does) and prints the time taken and the slowest command. Targets:
200,000 tasks in under 5 s, no command over 20 ms (each script call handles one batch).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import redis

from supervisor import Client, Task
from supervisor.adapters.redis.inspector import BATCH, Inspector
from supervisor.config import load_settings
from tests.redis_server import RedisServer


def slowest(client: Any) -> tuple[int, str]:
    """(microseconds, command) of the slowest entry in SLOWLOG, (0, '') when it is empty."""
    entries = client.slowlog_get(1024)
    if not entries:
        return 0, ""
    top = max(entries, key=lambda e: e["duration"])
    command = top["command"]
    text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
    return int(top["duration"]), text[:60]


def run(tasks: int, url: str, namespace: str = "bench") -> dict[str, float]:
    settings = load_settings(environ={"REDIS_URL": url, "ASYNQ_NAMESPACE": namespace})
    raw = redis.Redis.from_url(url)
    with Client(settings=settings) as client:
        start = time.perf_counter()
        for first in range(0, tasks, 10_000):
            client.enqueue_many([Task("bulk", i) for i in range(first, min(first + 10_000, tasks))])
        enqueue_s = time.perf_counter() - start
        raw.config_set("slowlog-log-slower-than", 1000)  # microseconds
        raw.config_set("slowlog-max-len", 1024)
        raw.slowlog_reset()
        inspector = Inspector(client.broker.redis, namespace)
        start = time.perf_counter()
        deleted = inspector.delete_all("default", "pending")
        delete_s = time.perf_counter() - start
        worst_us, command = slowest(raw)
        left = inspector.count("default", "pending")
    raw.close()
    return {"tasks": tasks, "deleted": deleted, "left": left, "enqueue_s": enqueue_s, "delete_s": delete_s,
            "slowest_ms": worst_us / 1000, "slowest_command": command}  # type: ignore[dict-item]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        r = run(args.tasks, server.url)
    finally:
        server.stop()
    print(f"enqueued {r['tasks']:,} pending tasks in {r['enqueue_s']:.2f}s")
    print(f"bulk delete ({BATCH} ids per script call): {r['deleted']:,} deleted in {r['delete_s']:.2f}s "
          f"({r['deleted'] / r['delete_s']:,.0f} tasks/s), {r['left']} left")  # fmt: skip
    print(f"slowest Redis command during the delete (SLOWLOG, > 1 ms): {r['slowest_ms']:.2f} ms {r['slowest_command']}")
    ok = r["delete_s"] < 5 and r["slowest_ms"] <= 20 and r["left"] == 0
    print("targets (< 5 s, no command over 20 ms):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
