"""Prometheus metrics, served by the parent from its own select loop (no thread, no fork hazard).

Queue sizes and the succeeded/failed totals come from Redis, read once per maintenance round
(one pipelined round trip), so a scrape never waits on Redis. Task durations come from the
workers' health reports, already counted per histogram bucket (task_stats.py) and labelled with
the attempt's :class:`~supervisor.core.lifecycle.Outcome` (the same words as the logs' ``outcome``).

The words are the glossary's (docs/glossary.md): ``active`` tasks, ``busy`` workers.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor.core.inspection import QueueStats
from supervisor.process.task_stats import DURATION_BUCKETS, Tally

log = logging.getLogger("supervisor.metrics")

MAX_REQUEST = 8192
QUEUE_STATES = ("pending", "active", "scheduled", "retry", "archived", "canceled", "expired")


@dataclass
class PoolGauges:
    """What the parent knows about its own pool, read at scrape time."""

    workers: Callable[[], int]
    #: Worker processes running at least one task.
    busy: Callable[[], int]
    #: Tasks active (running) now, in every worker process (each may run several).
    active: Callable[[], int]


class _QueueCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily("supervisor_queue_tasks", "Tasks in a queue, by state.", labels=["queue", "state"])
        succeeded = CounterMetricFamily(
            "supervisor_tasks_succeeded", "Tasks that succeeded (their handler returned), per queue.", labels=["queue"]
        )
        failed = CounterMetricFamily("supervisor_tasks_failed", "Failed attempts, per queue.", labels=["queue"])
        ended = CounterMetricFamily(
            "supervisor_tasks_ended", "Tasks canceled or expired, per queue.", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily("supervisor_queue_paused", "1 while a queue is paused.", labels=["queue"])
        latency = GaugeMetricFamily(
            "supervisor_queue_latency_seconds", "Age of the oldest pending task, per queue (0 when none).",
            labels=["queue"],
        )  # fmt: skip
        now = time.time()
        for s in self.metrics.queue_stats:
            latency.add_metric([s.queue], s.latency(now))
            for state in QUEUE_STATES:
                sizes.add_metric([s.queue, state], getattr(s, state))
            succeeded.add_metric([s.queue], s.succeeded)
            failed.add_metric([s.queue], s.failed)
            ended.add_metric([s.queue, "canceled"], s.canceled_total)
            ended.add_metric([s.queue, "expired"], s.expired_total)
            paused.add_metric([s.queue], 1 if s.paused else 0)
        workers = GaugeMetricFamily("supervisor_workers", "Worker processes, by status.", labels=["status"])
        total, busy = self.metrics.pool.workers(), self.metrics.pool.busy()
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], max(total - busy, 0))
        active = GaugeMetricFamily("supervisor_tasks_active", "Tasks active (running) now, in every worker process.")
        active.add_metric([], self.metrics.pool.active())
        throttled = CounterMetricFamily(
            "supervisor_throttled", "Due starts a rate limit or cap held back, per queue, scope and kind.",
            labels=["queue", "scope", "kind"],
        )  # fmt: skip
        for (queue, scope, kind), n in sorted(self.metrics.throttled.items()):
            throttled.add_metric([queue, scope, kind], n)
        yield from (sizes, succeeded, failed, ended, paused, latency, workers, active, throttled)


class TaskDurations(Collector):
    """``supervisor_task_duration_seconds``: a histogram fed with bucket counts, not durations.

    prometheus_client's Histogram only observes one value at a time; the workers send counts per
    bucket (task_stats.py), which this adds exactly (same buckets, same exposition).
    """

    NAME = "supervisor_task_duration_seconds"

    def __init__(self) -> None:
        #: (task type, outcome) -> (count per bucket, not cumulative, +Inf last; sum of seconds).
        self.series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        # As prometheus_client writes ``le`` (its floatToGoString for these bounds): "1.0", "0.005".
        self._bounds = [repr(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]

    def add(self, task_type: str, outcome: str, buckets: Sequence[int], seconds: float) -> None:
        counts, total = self.series.setdefault((task_type, outcome), ([0] * len(self._bounds), [0.0]))
        for i, n in enumerate(buckets[: len(counts)]):
            counts[i] += n
        total[0] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.NAME, "Attempt run time, by task type and outcome.",
                                       labels=["task_type", "outcome"])  # fmt: skip
        for (task_type, outcome), (counts, total) in sorted(self.series.items()):
            cumulative = [float(n) for n in accumulate(counts)]
            family.add_metric([task_type, outcome], list(zip(self._bounds, cumulative, strict=True)), total[0])
        yield family


@dataclass
class Metrics:
    pool: PoolGauges
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    queue_stats: list[QueueStats] = field(default_factory=list)
    #: (queue, scope, ``rate`` or ``cap``) -> starts a limit refused when due (read with the queue stats).
    throttled: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.durations = TaskDurations()
        self.registry.register(self.durations)
        self.restarts = Counter(
            "supervisor_worker_restarts", "Worker processes restarted after dying.", registry=self.registry
        )
        self.registry.register(_QueueCollector(self))

    def add_finished(self, tally: Tally) -> None:
        """Tasks a child finished since its last report (counted per bucket there)."""
        self.durations.add(tally.task_type, tally.outcome, tally.buckets, tally.seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


#: Seconds a client has to send its request, and then to read the answer, before it is dropped.
CLIENT_TIMEOUT = 2.0
#: Client connections held at once; accepting one more drops the oldest idle one.
MAX_CLIENTS = 64
#: Connections accepted per wake-up, so that a flood cannot keep the parent from its children.
ACCEPT_BATCH = 32
#: Seconds the listener is left alone after ``accept`` failed (out of descriptors).
ACCEPT_PAUSE = 0.5


@dataclass
class _Client:
    sock: socket.socket
    #: When it is dropped: CLIENT_TIMEOUT after it was accepted, then after its request was read.
    deadline: float
    request: bytes = b""
    #: The answer not yet sent; None while the request is still being read.
    answer: memoryview | None = None


class MetricsServer:
    """A minimal HTTP/1.0 server for ``GET /metrics`` driven by the parent's ``select``.

    Nothing here blocks. A connection is read until its request line and headers are in, then
    answered (written as the socket accepts it) and closed. What cannot lock it out:

    - a client has :data:`CLIENT_TIMEOUT` seconds to send its request, and as long again to read
      the answer; one that stalls (sends nothing, part of a request, or does not read) is dropped
      then, and the parent's loop wakes for it (:meth:`next_deadline`, :meth:`expire`);
    - at most :data:`MAX_CLIENTS` connections are held: a new one when full drops the oldest that
      has sent nothing (or, failing that, the oldest), so idle connections never starve a scrape;
    - a request over 8 KiB is dropped;
    - when ``accept`` fails (out of descriptors) the listener is left alone for
      :data:`ACCEPT_PAUSE` seconds, so that the loop does not spin on it.

    The sockets belong to the parent: a forked child closes them at once (:meth:`close_in_child`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        *,
        timeout: float = CLIENT_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.timeout = timeout
        self.max_clients = max_clients
        self.clock = clock
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._listener_fd = self.listener.fileno()
        #: By file descriptor, oldest first (dicts keep insertion order).
        self.clients: dict[int, _Client] = {}
        self.dropped = 0
        self._accept_paused_until = 0.0
        self._next_accept_warning = 0.0

    def fds(self) -> list[int]:
        """Descriptors to wait on for reading: the listener and clients whose request is not in."""
        reading = [fd for fd, c in self.clients.items() if c.answer is None]
        return reading if self.clock() < self._accept_paused_until else [self._listener_fd, *reading]

    def write_fds(self) -> list[int]:
        """Descriptors to wait on for writing: clients with an answer not fully sent."""
        return [fd for fd, c in self.clients.items() if c.answer is not None]

    def next_deadline(self) -> float | None:
        """When the next stalled client must be dropped (the parent's wait must not pass it)."""
        paused = [self._accept_paused_until] if self._accept_paused_until > self.clock() else []
        return min([*paused, *(c.deadline for c in self.clients.values())], default=None)

    def expire(self, now: float | None = None) -> int:
        """Drop the clients whose deadline has passed; how many."""
        now = self.clock() if now is None else now
        late = [fd for fd, c in self.clients.items() if c.deadline <= now]
        for fd in late:
            self._close(fd)
        self.dropped += len(late)
        return len(late)

    def handle(self, fd: int) -> None:
        """Act on a descriptor ``select`` reported: accept, read a request, or send an answer."""
        if fd == self._listener_fd:
            self._accept()
            return
        client = self.clients.get(fd)
        if client is None:
            return  # closed earlier in the same round
        if client.answer is None:
            self._read(fd, client)
        else:
            self._write(fd, client)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the pending connection waits
                # The listener stays readable: stop watching it for a moment, or the loop spins.
                now = self.clock()
                self._accept_paused_until = now + ACCEPT_PAUSE
                if now >= self._next_accept_warning:
                    self._next_accept_warning = now + 10.0
                    log.warning("metrics: cannot accept a connection: %s", exc, extra={"event": "metrics_accept_error"})
                return
            conn.setblocking(False)
            if len(self.clients) >= self.max_clients:
                self._evict()
            self.clients[conn.fileno()] = _Client(conn, self.clock() + self.timeout)

    def _evict(self) -> None:
        """Make room: drop the oldest client that has sent nothing.

        Each candidate is read first, so a scrape whose request is already waiting in its socket
        is answered rather than mistaken for an idle connection.
        """
        for fd, client in list(self.clients.items()):
            if client.answer is not None or client.request:
                continue
            self._read(fd, client)
            if len(self.clients) < self.max_clients:
                return  # it was a scrape, answered and closed: there is room now
            if fd in self.clients and client.answer is None and not client.request:
                self._close(fd)
                self.dropped += 1
                return
        if len(self.clients) >= self.max_clients:
            waiting = [fd for fd, c in self.clients.items() if c.answer is None]
            self._close((waiting or list(self.clients))[0])
            self.dropped += 1

    def _read(self, fd: int, client: _Client) -> None:
        try:
            chunk = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        client.request += chunk
        if not chunk or len(client.request) > MAX_REQUEST:
            self._close(fd)
            return
        if b"\r\n\r\n" not in client.request and b"\n\n" not in client.request:
            return
        request_line = client.request.split(b"\n", 1)[0].decode("latin-1").split()
        if len(request_line) >= 2 and request_line[0] == "GET" and request_line[1].split("?")[0] == "/metrics":
            body = self.metrics.render()
            head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        else:
            body = b"not found: try /metrics\n"
            head = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
        client.answer = memoryview(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        client.deadline = self.clock() + self.timeout
        self._write(fd, client)

    def _write(self, fd: int, client: _Client) -> None:
        assert client.answer is not None
        try:
            sent = client.sock.send(client.answer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(fd)
            return
        client.answer = client.answer[sent:]
        if not client.answer:
            self._close(fd)

    def _close(self, fd: int) -> None:
        client = self.clients.pop(fd)
        client.sock.close()

    def close(self) -> None:
        for fd in list(self.clients):
            self._close(fd)
        self.listener.close()

    def close_in_child(self) -> None:
        """In a freshly forked child: close every socket of the server, touching nothing else.

        Close-on-exec does not help across a plain fork: without this a worker (and anything it
        forks) would hold the listening port, and a new supervisor could not bind it.
        """
        for client in self.clients.values():
            client.sock.close()
        self.clients = {}
        self.listener.close()
