"""Prometheus metrics, served by the parent from its own select loop (no thread, no fork hazard).

Queue sizes and the processed/failed totals come from Redis, read once per maintenance round
(one pipelined round trip), so a scrape never waits on Redis. Task durations come from the
children's health reports.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor.adapters.redis.inspector import QueueStats

log = logging.getLogger("supervisor.metrics")

MAX_REQUEST = 8192
QUEUE_STATES = ("pending", "active", "scheduled", "retry", "archived")


@dataclass
class PoolGauges:
    """What the parent knows about its own pool, read at scrape time."""

    workers: Callable[[], int]
    busy: Callable[[], int]


class _QueueCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily("supervisor_queue_tasks", "Tasks in a queue, by state.", labels=["queue", "state"])
        processed = CounterMetricFamily("supervisor_tasks_processed", "Tasks completed, per queue.", labels=["queue"])
        failed = CounterMetricFamily("supervisor_tasks_failed", "Failed attempts, per queue.", labels=["queue"])
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
            processed.add_metric([s.queue], s.processed)
            failed.add_metric([s.queue], s.failed)
            paused.add_metric([s.queue], 1 if s.paused else 0)
        workers = GaugeMetricFamily("supervisor_workers", "Worker processes, by status.", labels=["status"])
        total, busy = self.metrics.pool.workers(), self.metrics.pool.busy()
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], max(total - busy, 0))
        yield from (sizes, processed, failed, paused, latency, workers)


@dataclass
class Metrics:
    pool: PoolGauges
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    queue_stats: list[QueueStats] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.durations = Histogram(
            "supervisor_task_duration_seconds", "Handler run time, by task type and outcome.",
            ["task_type", "outcome"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )  # fmt: skip
        self.restarts = Counter(
            "supervisor_worker_restarts", "Worker processes restarted after dying.", registry=self.registry
        )
        self.registry.register(_QueueCollector(self))

    def task_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        self.durations.labels(task_type, outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """A minimal HTTP/1.0 server for ``GET /metrics`` driven by the parent's ``select``.

    Each connection is read without blocking until its request line and headers are in, answered
    in one write, and closed. A client that sends more than 8 KiB or stalls is dropped.
    """

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        self.metrics = metrics
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.clients: dict[int, tuple[socket.socket, bytes]] = {}

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def handle(self, fd: int) -> None:
        if fd == self.listener.fileno():
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, OSError):
                return
            conn.setblocking(False)
            if len(self.clients) >= 64:
                conn.close()
                return
            self.clients[conn.fileno()] = (conn, b"")
            return
        conn, buffer = self.clients[fd]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if not chunk or len(buffer) > MAX_REQUEST:
            self._close(fd)
            return
        if b"\r\n\r\n" not in buffer and b"\n\n" not in buffer:
            self.clients[fd] = (conn, buffer)
            return
        request_line = buffer.split(b"\n", 1)[0].decode("latin-1").split()
        if len(request_line) >= 2 and request_line[0] == "GET" and request_line[1].split("?")[0] == "/metrics":
            body = self.metrics.render()
            head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        else:
            body = b"not found: try /metrics\n"
            head = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
        try:
            conn.setblocking(True)
            conn.settimeout(0.5)  # bounded: a scraper that does not read cannot stall the parent
            conn.sendall(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except OSError:
            pass
        self._close(fd)

    def _close(self, fd: int) -> None:
        conn, _ = self.clients.pop(fd)
        conn.close()

    def close(self) -> None:
        for fd in list(self.clients):
            self._close(fd)
        self.listener.close()
