"""Chaos on a Redis Cluster: one primary stops, the queues of the others must keep flowing.

    python -m bench.chaos --cluster [--tasks 20000] [--seconds 20] [--workers 4]

A local cluster of three primaries without replicas (tests/redis_topologies.py) with a node
timeout far longer than the stall, so the stopped primary is neither replaced nor declared
failed: it just does not answer, as a primary stuck in a long fork, swapping, or behind a
network stall. Tasks are enqueued at a steady rate over ``--seconds`` into three queues (a, b, c:
one per primary) and run by ``supervisor start --workers N --queues a,b,c``. Meanwhile a random
child is SIGKILLed every 2 s (process deaths: the only allowed cause of duplicates), and at 30 % of
``--seconds`` the primary holding queue b is SIGSTOPped for ``--stop-seconds`` (8 s), then
SIGCONT. Runs are recorded by bench/chaos_app.py in a standalone redis-server of their own, so the
record does not depend on the cluster.

Reported: lost, duplicates by cause (as bench/chaos.py), and the runs per second of each queue
before and during the stop: the stopped primary's queue waits, the others should not.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from bench.chaos import (
    duplicate_causes,
    failed_runs,
    given_back_after_lost_claims,
    run_log,
    send_until_stored,
    task_id,
)
from bench.chaos_app import RUNS
from bench.common import RESULTS, ROOT
from supervisor import Client, Task
from supervisor.config import load_settings
from tests.procs import alive, tree
from tests.redis_server import RedisServer
from tests.redis_topologies import ClusterSet

NAMESPACE = "chaosc"
QUEUES = ("a", "b", "c")  # hash to three different primaries
STOPPED_QUEUE = "b"


def ours(pid: int) -> bool:
    """Still a process of this run (a pid reused by someone else is left alone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"bench.chaos_app" in f.read()
    except OSError:
        return False


class ClusterChaos:
    def __init__(
        self,
        tasks: int = 20_000,
        seconds: float = 20.0,
        *,
        workers: int = 4,
        stop_seconds: float = 8.0,
        child_kill_every: float = 2.0,
        settle: float = 60.0,
        log_dir: Path | None = None,
    ) -> None:
        self.n, self.seconds, self.workers = tasks, seconds, workers
        self.stop_seconds, self.child_kill_every, self.settle = stop_seconds, child_kill_every, settle
        self.log_dir = log_dir or RESULTS / "chaos-cluster" / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = ClusterSet(replicas=0, node_timeout_ms=120_000)
        self.record = RedisServer()
        self.parent: subprocess.Popen[bytes] | None = None
        self.seen: set[int] = set()
        self.killed: set[int] = set()
        self.faults: Counter[str] = Counter()
        self.stop_faults = threading.Event()
        self.enqueue_done = threading.Event()
        self.enqueue_failed = 0
        self.resent: set[str] = set()
        self.stopped_pid = 0
        self.stop_window: tuple[float, float] | None = None
        self.t0 = 0.0

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
        env.update(
            {
                "REDIS_URL": self.cluster.url,
                "REDIS_CLUSTER": "true",
                "CHAOS_REDIS_URL": self.record.url,
                "ASYNQ_NAMESPACE": NAMESPACE,
                "ASYNQ_LEASE_DURATION": "30s",  # outlasts the stop: a stall is not a dead worker
                "ASYNQ_HEARTBEAT_INTERVAL": "0.5s",
                "ASYNQ_SHUTDOWN_TIMEOUT": "5s",
                "ASYNQ_LOG_FORMAT": "json",
                "ASYNQ_LOG_LEVEL": "info",
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def children(self) -> list[int]:
        if self.parent is None or self.parent.poll() is not None:
            return []
        kids = [p for p in tree([self.parent.pid]) if p != self.parent.pid and alive(p)]
        self.seen.update(kids)
        return kids

    # -- faults and load -------------------------------------------------------------------------

    def child_killer(self) -> None:
        rng = random.Random()
        while not self.stop_faults.wait(self.child_kill_every):
            kids = self.children()
            if kids:
                victim = rng.choice(kids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    self.killed.add(victim)
                    self.faults["child_sigkill"] += 1
                except ProcessLookupError:
                    pass

    def stop_primary(self) -> None:
        self.say(f"fault: SIGSTOP the primary of queue {STOPPED_QUEUE} for {self.stop_seconds:g} s")
        start = time.time()
        os.kill(self.stopped_pid, signal.SIGSTOP)
        try:
            time.sleep(self.stop_seconds)
        finally:
            os.kill(self.stopped_pid, signal.SIGCONT)
            self.stop_window = (start, time.time())
            self.faults["primary_sigstop"] += 1
            self.say("the primary continues")

    def enqueuer(self, queue: str) -> None:
        """Enqueue ``queue``'s share at a steady rate. One thread per queue, as producers of
        different queues would be: a producer of the stopped queue waits, the others go on, so
        the rates during the stop measure the workers, not a producer stuck on one node."""
        settings = load_settings(
            environ={"REDIS_URL": self.cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": NAMESPACE}
        )
        client = Client(settings=settings)
        rate = self.n / self.seconds
        batch = max(1, min(300, int(rate / 20)))
        try:
            for start in range(0, self.n, batch):
                delay = self.t0 + start / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ids = [i for i in range(start, min(start + batch, self.n)) if QUEUES[i % 3] == queue]
                self._enqueue(client, [Task("chaos", i, task_id=task_id(i), queue=queue) for i in ids])
        finally:
            client.close()

    def mark_enqueued(self, producers: list[threading.Thread]) -> None:
        for producer in producers:
            producer.join()
        self.enqueue_done.set()

    def _enqueue(self, client: Client, tasks: list[Task]) -> None:
        stored, resent = send_until_stored(client, tasks, self.faults, pause=0.1) if tasks else (True, False)
        if resent:
            self.resent.update(t.task_id for t in tasks if t.task_id)
        if not stored:
            self.enqueue_failed += len(tasks)

    # -- the run ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start()
        self.record.start()
        probe = redis.cluster.RedisCluster(host="127.0.0.1", port=self.cluster.nodes[0].port)
        port = probe.get_node_from_key(f"{NAMESPACE}:{{{STOPPED_QUEUE}}}:pending").port
        self.doorbell_on_stopped = probe.get_node_from_key(f"{NAMESPACE}:{{{NAMESPACE}:wake}}:a").port == port
        probe.close()
        [node] = [n for n in self.cluster.nodes if n.port == port]
        assert node.proc is not None
        self.stopped_pid = node.proc.pid
        log = open(self.log_dir / "pool.log", "ab")
        self._log = log
        cmd = [sys.executable, "-m", "supervisor", "start", "--app", "bench.chaos_app:app"]
        cmd += ["--workers", str(self.workers), "--queues", ",".join(QUEUES)]
        self.parent = subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdout=log, stderr=log)
        self.seen.add(self.parent.pid)
        deadline = time.monotonic() + 30
        while len(self.children()) < self.workers:
            if time.monotonic() > deadline or self.parent.poll() is not None:
                raise RuntimeError(f"the pool did not start; see {self.log_dir / 'pool.log'}")
            time.sleep(0.05)

    def run(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        try:
            self.start()
            self.t0 = time.monotonic()
            self.say(f"{self.n} tasks over {self.seconds:g}s, queues {QUEUES} on 3 primaries, logs {self.log_dir}")
            producers = [threading.Thread(target=self.enqueuer, args=(q,), daemon=True) for q in QUEUES]
            threads = [*producers, threading.Thread(target=self.child_killer, daemon=True)]
            for t in threads:
                t.start()
            threading.Thread(target=self.mark_enqueued, args=(producers,), daemon=True).start()
            record = redis.Redis.from_url(self.record.url)
            stopper: threading.Thread | None = None
            done, last = 0, 0.0
            deadline = self.t0 + self.seconds + self.settle
            while time.monotonic() < deadline:
                now = time.monotonic()
                if stopper is None and now - self.t0 >= 0.3 * self.seconds:
                    stopper = threading.Thread(target=self.stop_primary, daemon=True)
                    stopper.start()
                done = int(record.hlen(RUNS))
                if self.enqueue_done.is_set() and stopper is not None and self.stop_window is not None:
                    if done >= self.n - self.enqueue_failed:
                        break
                if now - last >= 5:
                    last = now
                    self.say(f"ran {done}, faults {dict(self.faults)}")
                time.sleep(0.1)
            self.stop_faults.set()
            for t in [*threads, *([stopper] if stopper else [])]:
                t.join(15)
            time.sleep(1.0)  # let runs in flight land
            return self.outcome(record, time.monotonic() - self.t0)
        finally:
            self.stop_faults.set()
            self.cleanup()

    def outcome(self, record: redis.Redis, wall: float) -> dict[str, Any]:
        runs = {k.decode(): int(v) for k, v in record.hgetall(RUNS).items()}
        log = run_log(record)
        expected = {task_id(i) for i in range(self.n)}
        lost = sorted(expected - runs.keys())
        total = sum(runs.values())
        rates: dict[str, dict[str, float]] = {}
        if self.stop_window is not None:
            start, end = self.stop_window
            first = min((at for _, _, at, _ in log), default=start)
            for q in QUEUES:
                before = sum(1 for _, _, at, qq in log if qq == q and at < start)
                during = sum(1 for _, _, at, qq in log if qq == q and start <= at < end)
                rates[q] = {
                    "runs_per_s_before_the_stop": round(before / max(start - first, 1e-9), 1),
                    "runs_per_s_during_the_stop": round(during / (end - start), 1),
                }
        return {
            "tasks": self.n,
            "workers": self.workers,
            "stop_seconds": self.stop_seconds,
            "stopped_queue": STOPPED_QUEUE,
            "doorbell_slot_on_the_stopped_primary": self.doorbell_on_stopped,
            "ran_unique": len(runs),
            "runs_total": total,
            "lost": len(lost),
            "lost_ids_sample": lost[:20],
            "enqueue_gave_up": self.enqueue_failed,
            "duplicates": total - len(runs),
            "duplicates_by_cause": duplicate_causes(
                log,
                self.killed,
                [self.stop_window] if self.stop_window else [],
                given_back_after_lost_claims(self.log_dir / "pool.log"),
                self.resent,
                failed_runs(self.log_dir / "pool.log"),
            ),
            "per_queue": rates,
            "faults": dict(sorted(self.faults.items())),
            "wall_s": round(wall, 1),
        }

    def cleanup(self) -> None:
        if self.stopped_pid:
            try:
                os.kill(self.stopped_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if self.parent is not None and self.parent.poll() is None:
            self.parent.send_signal(signal.SIGTERM)
            try:
                self.parent.wait(20)
            except subprocess.TimeoutExpired:
                self.parent.kill()
                self.parent.wait(10)
        for pid in self.seen:
            if alive(pid) and ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.cluster.stop()
        self.record.stop()
        if hasattr(self, "_log"):
            self._log.close()
