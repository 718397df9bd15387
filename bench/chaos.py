"""Chaos: push tasks through ``supervisor start --workers 4`` while breaking everything around it.

    python -m bench.chaos [--tasks 100000] [--seconds 60] [--workers 4]

Tasks are enqueued at a steady rate over ``--seconds`` (tasks/seconds per second, in small
batches with ``Client.enqueue_many``) into a private redis-server with ``--appendonly yes
--appendfsync always``. Meanwhile:

- every 0.5 s a random worker child is SIGKILLed;
- every 2 s every client connection is killed (``CLIENT KILL TYPE normal``);
- once (at 40% of ``--seconds``) Redis is SIGKILLed and restarted on the same port and dir;
- once (at 20%) a poison task is pushed past the client's checks: an envelope whose payload nests
  200,000 levels (it must end archived, the pool serving on);
- once (at 55%) Redis's maxmemory drops below its usage for 3 s: every write that grows memory
  fails with OOM, then it is lifted;
- once (at 70%) the supervisor parent is SIGKILLed (its children must die with it) and started
  again; the tasks its children held come back at once (their processes are gone from this host);
- grouped tasks (one per ten tasks, in 8 groups) go through task aggregation meanwhile: each
  member must end in exactly one aggregated task (``group_members_lost``, ``..._in_two_tasks``);
- one task in 50 is of a rate-limited type (100/s, burst 10) and one in 100 of a capped one (3 at
  once): no 1 s may hold more than rate + burst starts, no capped run may see more than 3 running
  (``flow``; the exit status is 1 otherwise);
- once (at 85%) Redis stalls: SIGSTOP for 6 s, longer than the workers' socket timeout (2 s
  here), then SIGCONT. Leases (10 s) outlast it, so nothing may run twice for it.

``--cluster`` runs the other chaos instead (bench/chaos_cluster.py): a Redis Cluster of three
primaries, tasks on three queues (one per primary), children SIGKILLed, and one primary SIGSTOPped
for a while: the other queues must keep flowing.

The faults go on until every task has run (or ``--seconds`` + 30 s), then the pool drains in
peace (at most ``--settle`` s more). Each run is recorded by bench/chaos_app.py. Reported:
lost (never ran: the exit status is 1 if any), duplicates (runs beyond the first), the longest
wait from enqueue to a task's first recorded run, the fault counts and what the supervisor
logged about recovery. Duplicates are told apart by cause (``duplicates_by_cause``, see
:func:`duplicate_causes`): the earlier run's process was SIGKILLed by the chaos (a child kill, or
the children of the killed parent), its handler failed and it was retried, its batch was sent
again, or none of these (then whether it ran around the Redis stall). Every process is ended by
pid; the JSON report lands in bench/results/chaos/ (or ``--out``; tests/test_chaos.py runs a
short version that way).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import msgspec
import redis

from bench.chaos_app import (
    CAP_VIOLATIONS,
    GROUPS,
    LIMITED_BURST,
    LIMITED_EVERY,
    LIMITED_RATE,
    LOG,
    RUNS,
    WAIT,
    task_type,
)  # fmt: skip
from bench.common import RESULTS, ROOT, percentile
from supervisor import BrokerError, Client, DuplicateTaskError, Task
from supervisor.adapters.redis import RedisBroker, connect
from supervisor.config import load_settings
from supervisor.core.ports import NewTask
from supervisor.core.task import TaskMessage, encode_message
from tests.procs import alive, tree
from tests.redis_server import RedisServer

NAMESPACE = "chaos"
QUEUE = "default"
POISON_ID = "poison-0"
#: How long Redis stays below its memory usage in the memory fault (s).
SQUEEZE_SECONDS = 3.0
#: How long Redis is stopped (SIGSTOP) in the stall fault: past the children's socket timeout.
STALL_SECONDS = 6.0
#: Leases outlast the stall: a stall must not look like a dead worker.
LEASE = "10s"


def task_id(i: int) -> str:
    return f"c{i:07d}"


#: Groups the grouped members are spread over (task aggregation under the same faults).
GROUP_NAMES = 8


class Chaos:
    def __init__(
        self,
        tasks: int = 100_000,
        seconds: float = 60.0,
        *,
        workers: int = 4,
        child_kill_every: float = 0.5,
        conn_kill_every: float = 2.0,
        settle: float = 180.0,
        log_dir: Path | None = None,
        verbose: bool = True,
    ) -> None:
        self.n = tasks
        self.seconds = seconds
        self.workers = workers
        self.child_kill_every = child_kill_every
        self.conn_kill_every = conn_kill_every
        self.settle = settle
        self.verbose = verbose
        self.log_dir = log_dir or RESULTS / "chaos" / time.strftime("%Y%m%d-%H%M%S")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / "pool.log"
        self.server = RedisServer(persistent=True)
        self.parents: list[subprocess.Popen[bytes]] = []
        self.seen: set[int] = set()  # every supervisor process we ever saw (parents and children)
        self.lock = threading.Lock()  # held while the parent is being replaced
        self.stop_faults = threading.Event()
        self.enqueue_done = threading.Event()
        self.faults: Counter[str] = Counter()
        self.enqueued = 0
        self.enqueue_failed = 0
        #: Tasks of batches sent again after an error (the first send may have landed).
        self.resent: set[str] = set()
        #: Grouped members (one per ten tasks), enqueued beside the tasks at the same pace.
        self.group_n = max(1, tasks // 10)
        self.group_failed = 0
        self.group_resent: set[int] = set()
        self.group_enqueue_done = threading.Event()
        self.t0 = 0.0
        self.children_seen: list[int] = []  # live children, sampled every 0.5 s
        self.killed: set[int] = set()  # pids this run SIGKILLed (or that died with a killed parent)
        self.stalls: list[tuple[float, float]] = []  # (start, end) of each Redis stall, wall clock
        self.threads: list[threading.Thread] = []
        self._log_file: Any = None

    # -- output ----------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    # -- the pool ----------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
        env.update(
            {
                "REDIS_URL": self.server.url,
                "CHAOS_REDIS_URL": self.server.url,
                "ASYNQ_NAMESPACE": NAMESPACE,
                "ASYNQ_LEASE_DURATION": LEASE,
                "ASYNQ_HEARTBEAT_INTERVAL": "0.5s",
                "ASYNQ_SHUTDOWN_TIMEOUT": "5s",
                "ASYNQ_LOG_FORMAT": "json",
                "ASYNQ_LOG_LEVEL": "info",
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def start_pool(self) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "supervisor",
            "start",
            "--app",
            "bench.chaos_app:app",
            "--workers",
            str(self.workers),
            "--queues",
            QUEUE,
        ]
        proc = subprocess.Popen(cmd, env=self.env(), cwd=ROOT, stdout=self._log_file, stderr=self._log_file)
        self.parents.append(proc)
        self.seen.add(proc.pid)
        return proc

    @property
    def parent(self) -> subprocess.Popen[bytes]:
        return self.parents[-1]

    def children(self) -> list[int]:
        parent = self.parent
        if parent.poll() is not None:
            return []
        kids = [p for p in tree([parent.pid]) if p != parent.pid and alive(p)]
        self.seen.update(kids)
        return kids

    def ours(self, pid: int) -> bool:
        """Still a process of this chaos run (guards against a pid reused by someone else)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"bench.chaos_app" in f.read()
        except OSError:
            return False

    def kill_everything(self) -> None:
        for proc in self.parents:
            if proc.poll() is None:
                proc.kill()
        for pid in set(tree(p.pid for p in self.parents if p.poll() is None)) | self.seen:
            if alive(pid) and self.ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self.parents:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    # -- the faults --------------------------------------------------------------------------------

    def child_killer(self) -> None:
        rng = random.Random()
        while not self.stop_faults.wait(self.child_kill_every):
            with self.lock:
                kids = self.children()
                if not kids:
                    self.faults["child_kill_no_child"] += 1
                    continue
                victim = rng.choice(kids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    self.killed.add(victim)
                    self.faults["child_sigkill"] += 1
                except ProcessLookupError:
                    self.faults["child_kill_no_child"] += 1

    def connection_killer(self) -> None:
        admin = redis.Redis.from_url(self.server.url, socket_timeout=2)
        try:
            while not self.stop_faults.wait(self.conn_kill_every):
                try:
                    killed = admin.client_kill_filter(_type="normal", skipme=True)
                    self.faults["client_kill_rounds"] += 1
                    self.faults["connections_killed"] += int(killed)
                except redis.RedisError:
                    self.faults["client_kill_failed"] += 1
        finally:
            admin.close()

    def restart_redis(self) -> None:
        self.say("fault: SIGKILL redis-server, restart on the same port and dir")
        self.server.kill()
        time.sleep(0.3)
        self.server.start(timeout=30)
        self.faults["redis_restart"] += 1
        self.say("redis-server is back")

    def push_poison(self) -> None:
        """What another producer (or an older version) could write: no client of ours would."""
        self.say("fault: a poison task (payload nested 200,000 levels) pushed onto the queue")
        raw = msgspec.Raw(b"\x91" * 200_000 + b"\xc0")
        message = TaskMessage(
            id=POISON_ID, type="chaos", queue=QUEUE, payload=raw, max_retry=3, enqueued_at=time.time()
        )
        broker = RedisBroker(connect(self.server.url), namespace=NAMESPACE)
        for _ in range(100):
            try:
                broker.submit([NewTask(QUEUE, POISON_ID, encode_message(message))])
                self.faults["poison_pushed"] += 1
                break
            except BrokerError:
                time.sleep(0.05)
        broker.redis.close()

    def squeeze_memory(self) -> None:
        """Redis below its memory usage for a while, from a thread: the main loop keeps counting."""

        def squeeze() -> None:
            admin = redis.Redis.from_url(self.server.url, socket_timeout=2)
            try:
                used = int(admin.info("memory")["used_memory"])
                admin.config_set("maxmemory", str(used // 2))
                self.say(f"fault: maxmemory {used // 2} bytes, below the {used} in use, for {SQUEEZE_SECONDS:g} s")
                self.faults["maxmemory_squeeze"] += 1
                time.sleep(SQUEEZE_SECONDS)
            except redis.RedisError:
                self.faults["maxmemory_squeeze_failed"] += 1
            finally:
                for _ in range(100):
                    try:
                        admin.config_set("maxmemory", "0")
                        break
                    except redis.RedisError:
                        time.sleep(0.05)
                admin.close()
                self.say("maxmemory lifted")

        t = threading.Thread(target=squeeze, name="squeeze", daemon=True)
        t.start()
        self.threads.append(t)

    def stall_redis(self) -> None:
        """SIGSTOP redis-server for STALL_SECONDS, then SIGCONT, from a thread (the main loop counts on)."""

        def stall() -> None:
            self.say(f"fault: SIGSTOP redis-server for {STALL_SECONDS:g} s (past the workers' socket timeout)")
            pid = self.server.pid
            start = time.time()
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(STALL_SECONDS)
            finally:
                os.kill(pid, signal.SIGCONT)
                self.stalls.append((start, time.time()))
                self.faults["redis_stall"] += 1
                self.say("redis-server continues")

        t = threading.Thread(target=stall, name="stall", daemon=True)
        t.start()
        self.threads.append(t)

    def kill_parent(self) -> None:
        # Kill it while it has children (the restart back-off may have none up right now), so that
        # the children's death with their parent and the lease recovery are exercised too.
        deadline = time.monotonic() + 15
        while not self.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            old = self.parent
            kids = self.children()
            self.say(f"fault: SIGKILL the supervisor parent {old.pid} (children {kids})")
            old.kill()
            old.wait(10)
            self.killed.update([old.pid, *kids])
            self.faults["parent_sigkill"] += 1
            # The children must follow their parent (PR_SET_PDEATHSIG): give them a moment.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and any(alive(k) for k in kids):
                time.sleep(0.01)
            orphans = [k for k in kids if alive(k)]
            if orphans:
                self.faults["orphans_after_parent_kill"] += len(orphans)
                self.say(f"orphaned children still alive after 2 s: {orphans}; killing them")
                for k in orphans:
                    if self.ours(k):
                        os.kill(k, signal.SIGKILL)
            new = self.start_pool()
            self.say(f"new supervisor parent {new.pid}")

    # -- the producer ------------------------------------------------------------------------------

    def enqueuer(self) -> None:
        client = Client(settings=load_settings(environ={"REDIS_URL": self.server.url, "ASYNQ_NAMESPACE": NAMESPACE}))
        rate = self.n / self.seconds
        batch = max(1, min(500, int(rate / 20)))
        try:
            for start in range(0, self.n, batch):
                due = self.t0 + start / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                tasks = [Task(task_type(i), i, task_id=task_id(i)) for i in range(start, min(start + batch, self.n))]
                stored, resent = send_until_stored(client, tasks, self.faults)
                if resent:
                    self.resent.update(t.task_id for t in tasks if t.task_id)
                if not stored:
                    self.enqueue_failed += len(tasks)
                self.enqueued = min(start + batch, self.n)
        finally:
            client.close()
            self.enqueue_done.set()

    def group_enqueuer(self) -> None:
        """Members of GROUP_NAMES groups at a tenth of the task rate; a batch is resent after an error."""
        client = Client(settings=load_settings(environ={"REDIS_URL": self.server.url, "ASYNQ_NAMESPACE": NAMESPACE}))
        rate = self.group_n / self.seconds
        batch = max(1, min(100, int(rate / 10)))
        try:
            for start in range(0, self.group_n, batch):
                delay = self.t0 + start / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                numbers = range(start, min(start + batch, self.group_n))
                tasks = [Task("chaos:grouped", i, group=f"g{i % GROUP_NAMES}", task_id=f"g{i:07d}") for i in numbers]
                stored, resent = send_until_stored(client, tasks, self.faults, counter_prefix="group_")
                if resent:
                    self.group_resent.update(numbers)
                if not stored:
                    self.group_failed += len(tasks)
        finally:
            client.close()
            self.group_enqueue_done.set()

    def grouped_done(self, r: redis.Redis) -> set[int] | None:
        """The grouped members recorded in some aggregated task so far."""
        try:
            return {m for v in r.hvals(GROUPS) for m in json.loads(v)}
        except redis.RedisError:
            return None

    # -- reading the outcome ---------------------------------------------------------------------

    def reader(self) -> redis.Redis:
        return redis.Redis.from_url(self.server.url, socket_timeout=5)

    def unique_done(self, r: redis.Redis) -> int | None:
        try:
            return int(r.hlen(RUNS))
        except redis.RedisError:
            return None

    def leftovers(self, r: redis.Redis) -> dict[str, int]:
        base = f"{NAMESPACE}:{{{QUEUE}}}:"
        out = {}
        for key, kind in (
            ("pending", "list"),
            ("lease", "zset"),
            ("retry", "zset"),
            ("scheduled", "zset"),
            ("archived", "zset"),
            ("msg", "hash"),
        ):
            full = base + key
            try:
                out[key] = int(r.llen(full) if kind == "list" else r.zcard(full) if kind == "zset" else r.hlen(full))
            except redis.ResponseError:
                out[key] = -1  # the key has another type in this version of the package
        return out

    def log_events(self) -> dict[str, int]:
        events: Counter[str] = Counter()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event"):
                events[str(record["event"])] += 1
        return dict(sorted(events.items()))

    # -- the run ---------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        self._log_file = open(self.log_path, "ab")
        result: dict[str, Any] = {}
        try:
            self.server.start()
            self.start_pool()
            deadline = time.monotonic() + 20
            while len(self.children()) < self.workers:
                if time.monotonic() > deadline or self.parent.poll() is not None:
                    raise RuntimeError(f"the pool did not start; see {self.log_path}")
                time.sleep(0.02)
            self.t0 = time.monotonic()
            self.say(
                f"{self.n} tasks over {self.seconds:g}s into {self.workers} workers, redis {self.server.url} "
                f"(AOF, fsync always), logs {self.log_dir}"
            )
            for target in (self.enqueuer, self.group_enqueuer, self.child_killer, self.connection_killer):
                t = threading.Thread(target=target, name=target.__name__, daemon=True)
                t.start()
                self.threads.append(t)

            r = self.reader()
            scheduled = [
                (0.2 * self.seconds, self.push_poison),
                (0.4 * self.seconds, self.restart_redis),
                (0.55 * self.seconds, self.squeeze_memory),
                (0.7 * self.seconds, self.kill_parent),
                (0.85 * self.seconds, self.stall_redis),
            ]
            fault_deadline = self.t0 + self.seconds + 30
            done = groups_done = 0
            last_report = last_sample = 0.0
            done_at = None
            while True:
                now = time.monotonic()
                if now - last_sample >= 0.5:
                    last_sample = now
                    self.children_seen.append(len(self.children()))
                while scheduled and now - self.t0 >= scheduled[0][0]:
                    scheduled.pop(0)[1]()
                got = self.unique_done(r)
                done = got if got is not None else done
                if now - last_sample < 0.1:  # the members are read once per sample, not every pass
                    members = self.grouped_done(r)
                    groups_done = len(members) if members is not None else groups_done
                if now - last_report >= 5:
                    last_report = now
                    self.say(
                        f"enqueued {self.enqueued}, ran {done}, children {len(self.children())}, "
                        f"faults {dict(self.faults)}"
                    )
                groups_in = self.group_enqueue_done.is_set() and groups_done >= self.group_n - self.group_failed
                if self.enqueue_done.is_set() and not scheduled and done >= self.n - self.enqueue_failed and groups_in:
                    done_at = now - self.t0
                    break
                if not self.stop_faults.is_set() and now > fault_deadline and not scheduled:
                    self.say("fault window over: stopping the faults, letting the pool drain")
                    self.stop_faults.set()
                if now > fault_deadline + self.settle:
                    self.say("giving up waiting for the remaining tasks")
                    break
                time.sleep(0.1)
            self.stop_faults.set()
            for t in self.threads:
                t.join(10)
            # Let late duplicates (runs in flight) land before counting.
            time.sleep(1.0)
            r.close()
            r = self.reader()
            result = self.outcome(r, done_at)
            r.close()
            # A clean stop at the end: SIGTERM, the pool drains and exits 0.
            t_stop = time.monotonic()
            self.parent.send_signal(signal.SIGTERM)
            try:
                code = self.parent.wait(20)
            except subprocess.TimeoutExpired:
                code = None
            result["final_sigterm"] = {"exit": code, "seconds": round(time.monotonic() - t_stop, 3)}
            result["supervisor_log_events"] = self.log_events()
            result["log_dir"] = str(self.log_dir)
        finally:
            self.stop_faults.set()
            if self.server.proc is not None and self.server.proc.poll() is None:
                os.kill(self.server.pid, signal.SIGCONT)  # interrupted mid-stall: let it stop
            self.kill_everything()
            self.server.stop()
            if self._log_file:
                self._log_file.close()
        # Whatever is still alive after the clean stop and the clean-up is a leak of this run.
        result["processes_left"] = sorted(pid for pid in self.seen if alive(pid) and self.ours(pid))
        return result

    def outcome(self, r: redis.Redis, done_at: float | None) -> dict[str, Any]:
        runs = {k.decode(): int(v) for k, v in r.hgetall(RUNS).items()}
        waits = [float(v) for v in r.hvals(WAIT)]
        expected = {task_id(i) for i in range(self.n)}
        lost = sorted(expected - runs.keys())
        total = sum(runs.values())
        wait_items = r.hgetall(WAIT)
        pairs = [(k.decode(), float(v)) for k, v in wait_items.items()]
        worst_id, worst = max(pairs, key=lambda kv: kv[1]) if pairs else ("", 0.0)
        return {
            "tasks": self.n,
            "seconds_enqueue_window": self.seconds,
            "workers": self.workers,
            "enqueued": self.enqueued,
            "enqueue_gave_up": self.enqueue_failed,
            "ran_unique": len(runs),
            "runs_total": total,
            "lost": len(lost),
            "lost_ids_sample": lost[:20],
            "duplicates": total - len(runs),
            "tasks_run_more_than_once": sum(1 for v in runs.values() if v > 1),
            "max_runs_of_one_task": max(runs.values(), default=0),
            "longest_wait_s": round(worst, 3),
            "longest_wait_task": worst_id,
            "wait_p50_s": round(percentile(waits, 50), 4),
            "wait_p99_s": round(percentile(waits, 99), 4),
            "all_done_after_s": round(done_at, 1) if done_at is not None else None,
            "wall_s": round(time.monotonic() - self.t0, 1),
            "faults": dict(sorted(self.faults.items())),
            "live_children_mean": round(statistics.mean(self.children_seen), 2) if self.children_seen else None,
            "time_with_no_live_child_pct": round(
                100 * sum(1 for c in self.children_seen if c == 0) / max(len(self.children_seen), 1), 1
            ),
            "leftover_in_redis": self.leftovers(r),
            "poison_archived": r.zscore(f"{NAMESPACE}:{{{QUEUE}}}:archived", POISON_ID) is not None,
            "duplicates_by_cause": duplicate_causes(
                run_log(r),
                self.killed,
                self.stalls,
                given_back_after_lost_claims(self.log_path),
                self.resent,
                failed_runs(self.log_path),
            ),
            "flow": flow_report(r),
            **self.group_outcome(r),
        }

    def group_outcome(self, r: redis.Redis) -> dict[str, Any]:
        """Task aggregation under the faults: every member in exactly one aggregated task."""
        tasks = [json.loads(v) for v in r.hvals(GROUPS)]
        counts = Counter(m for members in tasks for m in members)
        lost = sorted(set(range(self.group_n)) - counts.keys())
        twice = sorted(m for m, c in counts.items() if c > 1)
        return {
            "group_members": self.group_n,
            "group_enqueue_gave_up": self.group_failed,
            "group_members_lost": len(lost),
            "group_members_lost_sample": lost[:20],
            # A member whose batch the producer sent again after an error may be enqueued twice
            # (its first send had landed and been aggregated): counted apart, as for tasks.
            "group_members_in_two_tasks": sum(1 for m in twice if m not in self.group_resent),
            "group_members_in_two_tasks_after_a_resend": sum(1 for m in twice if m in self.group_resent),
            "aggregated_tasks": len(tasks),
            "largest_aggregated_task": max((len(t) for t in tasks), default=0),
        }


def flow_report(r: redis.Redis) -> dict[str, int]:
    """The rate-limited and capped types under chaos: the most rate-limited runs that started in
    any 1 s (at most rate + burst) and the capped runs that saw more than the cap running."""
    starts = sorted(t for tid, _, t, _ in run_log(r) if tid[1:].isdigit() and int(tid[1:]) % LIMITED_EVERY == 0)
    most, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    bound = LIMITED_RATE + LIMITED_BURST
    return {"limited_runs": len(starts), "limited_most_in_1s": most, "limited_bound_in_1s": bound,
            "cap_violations": int(r.get(CAP_VIOLATIONS) or 0)}  # fmt: skip


def run_log(r: redis.Redis) -> list[tuple[str, int, float, str]]:
    """Every recorded run: (task id, pid, start time, queue), from chaos_app's log."""
    out = []
    for line in r.lrange(LOG, 0, -1):
        tid, pid, at, queue = line.decode().split(" ", 3)
        out.append((tid, int(pid), float(at), queue))
    return out


def logged(log_path: Path, marker: str) -> Iterator[dict[str, Any]]:
    """The pool's JSON log lines that contain ``marker`` (a cheap text test before the parse)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        if marker not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def given_back_after_lost_claims(log_path: Path) -> set[str]:
    """Ids the pool logged as put back after a lost claim reply (its ``task_requeued`` lines)."""
    out = set()
    for record in logged(log_path, "after a lost claim reply"):
        message = str(record.get("message", ""))
        if message.startswith("task "):
            out.add(message.split(" ", 2)[1])
    return out


def failed_runs(log_path: Path) -> set[tuple[str, int]]:
    """(task id, pid) of every run the pool logged as failed: the handler raised (here, its own
    write's reply lost to a connection kill), so the task was retried, as any failure is."""
    return {
        (str(e["task_id"]), int(e.get("pid", 0)))
        for e in logged(log_path, '"task_done"')
        if e.get("event") == "task_done" and e.get("outcome") == "failed" and "task_id" in e
    }


def send_until_stored(
    client: Client, tasks: list[Task], faults: Counter[str], *, counter_prefix: str = "", pause: float = 0.05
) -> tuple[bool, bool]:
    """Send a batch as a producer that retries would, for up to a minute: (stored, sent again).

    A DuplicateTaskError on a resend means an earlier try had landed (its reply was lost): the
    others of the batch were enqueued by this call. Counted in ``faults``: ``enqueue_retries`` and
    ``enqueue_retry_found_duplicates`` (after ``counter_prefix``).
    """
    give_up = time.monotonic() + 60
    resent = False
    while True:
        try:
            client.enqueue_many(tasks)
            return True, resent
        except DuplicateTaskError:
            faults[f"{counter_prefix}enqueue_retry_found_duplicates"] += 1
            return True, resent
        except (redis.RedisError, BrokerError):
            faults[f"{counter_prefix}enqueue_retries"] += 1
            resent = True
            if time.monotonic() > give_up:
                return False, resent
            time.sleep(pause)


def duplicate_causes(
    runs: list[tuple[str, int, float, str]],
    killed: set[int],
    stalls: list[tuple[float, float]],
    given_back: set[str],
    resent: Collection[str] = (),
    failed: Collection[tuple[str, int]] = (),
    margin: float = 5.0,
) -> dict[str, Any]:
    """Each run beyond a task's first, by why it could happen.

    ``process_death``: the run before it was in a process this chaos SIGKILLed (a child, or a
    child of the killed parent): its completion may not have been recorded, so the task ran again
    (at-least-once). ``failed_then_retried``: the run before it failed (``failed``: the handler
    raised, here when a connection kill lost its own write's reply), so the task was retried, as
    any failure is. ``finished_then_given_back``: no process died; the worker put the task back
    after a lost claim reply (``given_back``) although it had run it and its completion was waiting
    to be recorded, so the completion was refused and the task ran again (a worker bug, issue 18
    item 2). ``resent_enqueue``: the producer sent the task's batch again after an error
    (``resent``): the first send had landed, the task ran and completed (its id gone), and the
    second send enqueued it anew; only ``unique_for`` guards against that. ``around_a_stall``:
    none of these, and the run before it started during a Redis stall or within ``margin`` s of
    it. ``other``: none of these.
    Examples of all but the first are listed (task ids).
    """
    by_task: dict[str, list[tuple[float, int]]] = {}
    for tid, pid, at, _ in runs:
        by_task.setdefault(tid, []).append((at, pid))
    names = ("process_death", "failed_then_retried", "finished_then_given_back", "resent_enqueue", "around_a_stall",
             "other")  # fmt: skip
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {name: [] for name in names[1:]}
    for tid, seen in by_task.items():
        seen.sort()
        for at, pid in seen[:-1]:  # each run that another followed
            if pid in killed:
                cause = "process_death"
            elif (tid, pid) in failed:
                cause = "failed_then_retried"
            elif tid in given_back:
                cause = "finished_then_given_back"
            elif tid in resent:
                cause = "resent_enqueue"
            elif any(start - margin <= at <= end + margin for start, end in stalls):
                cause = "around_a_stall"
            else:
                cause = "other"
            counts[cause] += 1
            if cause in examples and len(examples[cause]) < 10 and tid not in examples[cause]:
                examples[cause].append(tid)
    return {**{name: counts.get(name, 0) for name in names}, "examples": examples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=60.0, help="enqueue window (faults last at least this long)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--settle", type=float, default=180.0, help="longest drain after the faults stop (s)")
    p.add_argument("--child-kill-every", type=float, default=0.5, help="SIGKILL a random child this often (s)")
    p.add_argument("--conn-kill-every", type=float, default=2.0, help="CLIENT KILL TYPE normal this often (s)")
    p.add_argument("--out", type=Path, help="the JSON report (default: bench/results/chaos/<time>/report.json)")
    p.add_argument("--log-dir", type=Path, help="the pool's log (default: bench/results/chaos/<time>/)")
    p.add_argument("--cluster", action="store_true", help="the cluster chaos instead (bench/chaos_cluster.py)")
    p.add_argument("--stop-seconds", type=float, default=8.0, help="--cluster: how long one primary is stopped")
    args = p.parse_args()
    # A SIGTERM unwinds through Chaos.run's finally: every process is ended by pid.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.cluster:
        cluster_main(args)
        return
    chaos = Chaos(
        args.tasks,
        args.seconds,
        workers=args.workers,
        settle=args.settle,
        child_kill_every=args.child_kill_every,
        conn_kill_every=args.conn_kill_every,
        log_dir=args.log_dir,
    )
    result = chaos.run()
    out = args.out or chaos.log_dir / "report.json"
    out.write_text(json.dumps(result, indent=2))
    if args.out is None:  # a run of record (make chaos); a test's run (--out) leaves bench/results alone
        (RESULTS / "chaos-latest.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"\nchaos: {result['tasks']} tasks, lost {result['lost']}, duplicates {result['duplicates']} "
        f"({result['tasks_run_more_than_once']} tasks ran more than once), longest wait "
        f"{result['longest_wait_s']} s, all done after {result['all_done_after_s']} s; faults {result['faults']}; "
        f"no live child {result['time_with_no_live_child_pct']}% of the time; "
        f"poison archived: {result['poison_archived']}; duplicates by cause {result['duplicates_by_cause']}"
    )
    if result["lost"] or result["enqueue_gave_up"] or not result["poison_archived"] or result["processes_left"]:
        sys.exit(1)
    if result["group_members_lost"] or result["group_members_in_two_tasks"] or result["group_enqueue_gave_up"]:
        sys.exit(1)
    flow = result["flow"]
    if flow["cap_violations"] or flow["limited_most_in_1s"] > flow["limited_bound_in_1s"]:
        print(f"chaos: flow control did not hold: {flow}")
        sys.exit(1)


def cluster_main(args: argparse.Namespace) -> None:
    from bench.chaos_cluster import ClusterChaos

    chaos = ClusterChaos(
        args.tasks if args.tasks != 100_000 else 20_000,
        args.seconds if args.seconds != 60.0 else 20.0,
        workers=args.workers,
        stop_seconds=args.stop_seconds,
        settle=min(args.settle, 60.0),
        log_dir=args.log_dir,
    )
    result = chaos.run()
    out = args.out or chaos.log_dir / "report.json"
    out.write_text(json.dumps(result, indent=2))
    if args.out is None:
        (RESULTS / "chaos-cluster-latest.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"\nchaos --cluster: {result['tasks']} tasks, lost {result['lost']}, duplicates {result['duplicates']} "
        f"by cause {result['duplicates_by_cause']}; per queue {result['per_queue']}"
    )
    if result["lost"] or result["enqueue_gave_up"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
