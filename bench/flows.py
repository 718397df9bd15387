"""A chord of N no-op members against N plain no-op tasks, through the same running supervisor.

    python -m bench.flows [--n 10000] [--workers 4] [--rounds 2] [--concurrency 1]

One private redis-server, one ``supervisor start`` (bench/flows_app.py). Each round times N plain
tasks (``enqueue_many`` in batches of 1,000, then until the queue's processed counter has grown by
N) and a chord of N members and a callback (``enqueue_flow``, then until the flow is finished),
alternating which goes first. Reported: the median seconds of each and their ratio (the issue's
target: the chord within 1.3x). Written to bench/results/flows.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import RESULTS
from supervisor import Client, Task, chord, task
from supervisor.config import load_settings
from tests.pool import Pool
from tests.redis_server import RedisServer


def plain(client: Client, processed_key: str, n: int) -> float:
    before = int(client.broker.redis.get(processed_key) or 0)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for start in range(0, n, 1000):
        client.enqueue_many([Task("noop") for _ in range(start, min(n, start + 1000))])
    while int(client.broker.redis.get(processed_key) or 0) - before < n:  # type: ignore[attr-defined]
        time.sleep(0.005)
    return time.perf_counter() - started


def flow(client: Client, n: int) -> float:
    store = client.broker.flow_store()
    started = time.perf_counter()
    flow_id = client.enqueue_flow(chord([task("noop") for _ in range(n)], task("album")))
    while not ((found := store.flow_state(flow_id)) is not None and found[1]):
        time.sleep(0.005)
    took = time.perf_counter() - started
    view = client.flow(flow_id)
    assert view is not None and view.state == "succeeded" and view.members[-1].result == n, view and view.state
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="ASYNQ_WORKER_CONCURRENCY")
    parser.add_argument("--out", type=Path, default=RESULTS / "flows.json")
    args = parser.parse_args()
    namespace = f"bf{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        client = Client(settings=load_settings(environ={"REDIS_URL": server.url, "ASYNQ_NAMESPACE": namespace}))
        pool = Pool(server.url, namespace, Path(tmp) / "sv.log", workers=args.workers, app="bench.flows_app:app",
                    env={"ASYNQ_LOG_LEVEL": "info", "ASYNQ_WORKER_CONCURRENCY": str(args.concurrency)})  # fmt: skip
        processed_key = f"{namespace}:{{default}}:processed"
        plains, chords = [], []
        try:
            pool.start()
            for r in range(args.rounds):
                if r % 2 == 0:
                    plains.append(plain(client, processed_key, args.n))
                    chords.append(flow(client, args.n))
                else:
                    chords.append(flow(client, args.n))
                    plains.append(plain(client, processed_key, args.n))
        finally:
            pool.cleanup()
            client.close()
    p, c = statistics.median(plains), statistics.median(chords)
    report = {"n": args.n, "workers": args.workers, "concurrency": args.concurrency, "plain_s": round(p, 3),
              "chord_s": round(c, 3), "ratio": round(c / p, 3), "plain_runs": plains, "chord_runs": chords}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
