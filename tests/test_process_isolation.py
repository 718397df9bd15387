"""What the pool's processes share and leave behind, and what cannot take the parent down:
the metrics endpoint under idle and half-open clients, processes a handler forks, a failed fork.

Real processes throughout (``tests.pool.Pool`` runs ``supervisor start``), a real Redis, real
sockets; every process is cleaned up by pid. Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import functools
import os
import resource
import select
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.process.metrics import Metrics, MetricsServer, PoolGauges
from tests.helpers import wait_for
from tests.pool import Pool, alive, wait_dead
from tests.procs import proc_status, signal_bit
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.procs_app:app"
METRICS_ENV = {"ASYNQ_METRICS_HOST": "127.0.0.1"}


@pytest.fixture
def pool_factory(pool_factory):
    """conftest's, with this module's app unless a test names another."""
    return functools.partial(pool_factory, app=APP)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Pids of grandchildren a test made: killed at the end whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def grandchildren(pool: Pool, count: int) -> list[int]:
    key = f"{pool.namespace}:test:grandchildren"
    found = wait_for(lambda: p if len(p := pool.redis.lrange(key, 0, -1)) >= count else None, what="grandchildren")
    return [int(p) for p in found]


def process_group(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


def descriptors(pid: int) -> dict[int, str]:
    """What each open descriptor of ``pid`` is (``socket:[..]``, ``pipe:[..]``, a path)."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
    return out


def scrape(port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
        assert reply.status == 200
        return reply.read().decode()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the other side closes ``sock`` within ``timeout`` (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def read_to_end(sock: socket.socket, into: bytearray) -> Callable[[], bool]:
    """A condition for :func:`drive`: what ``sock`` has received goes into ``into``; True at EOF
    (the whole answer is in)."""

    def done() -> bool:
        sock.setblocking(False)
        try:
            while chunk := sock.recv(65536):
                into.extend(chunk)
            return True
        except BlockingIOError:
            return False

    return done


# == the metrics endpoint =========================================================================


def drive(server: MetricsServer, until: Callable[[], bool], timeout: float) -> None:
    """Run ``server`` the way the parent's loop does until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the metrics server did not get there in time"
        wait = 0.05
        stalled = server.next_deadline()
        if stalled is not None:
            wait = min(wait, max(0.0, stalled - time.monotonic()))
        readable, writable, _ = select.select(server.fds(), server.write_fds(), [], wait)
        for fd in readable + writable:
            server.handle(fd)
        server.expire()


def test_metrics_server_drops_the_oldest_idle_client_when_full_and_stalled_ones_on_time():
    server = MetricsServer(
        "127.0.0.1", 0, Metrics(PoolGauges(lambda: 2, lambda: 1, lambda: 1)), timeout=0.5, max_clients=4
    )
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
    try:
        drive(server, lambda: server.dropped == 2 and len(server.clients) == 4, timeout=5)
        # The two oldest went to make room; the four newest are held.
        assert closed_by_peer(socks[0], 1.0) and closed_by_peer(socks[1], 1.0)
        for sock in socks[2:]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        # Full of idle connections, a scrape is still answered.
        scraper = socket.create_connection(("127.0.0.1", server.port))
        scraper.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        socks.append(scraper)
        answer = bytearray()
        drive(server, read_to_end(scraper, answer), timeout=5)
        assert answer.startswith(b"HTTP/1.0 200 OK") and b'supervisor_workers{status="busy"} 1.0' in answer
        # Idle clients are dropped when their time is up, no sooner.
        held = [fd for fd in server.clients]
        started = time.monotonic()
        next_deadline = server.next_deadline()
        assert next_deadline is not None and next_deadline <= started + 0.5
        drive(server, lambda: not server.clients, timeout=5)
        assert held and time.monotonic() - started < 1.0
        for sock in socks[2:6]:
            assert closed_by_peer(sock, 1.0)
        assert server.next_deadline() is None
    finally:
        for sock in socks:
            sock.close()
        server.close()


def test_metrics_server_out_of_descriptors_pauses_the_listener_instead_of_spinning():
    server = MetricsServer("127.0.0.1", 0, Metrics(PoolGauges(lambda: 1, lambda: 0, lambda: 0)), timeout=2.0)
    scraper = socket.create_connection(("127.0.0.1", server.port))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        scraper.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        select.select([server.listener], [], [], 5)
        lowest_free = os.dup(0)  # the kernel hands out the lowest free descriptor
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor at all
        server.handle(server.listener.fileno())  # accept fails: EMFILE
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert not server.clients and server.listener.fileno() not in server.fds()
        pause_end = server.next_deadline()
        assert pause_end is not None and 0 < pause_end - time.monotonic() <= 0.5
        # After the pause the waiting connection is accepted and answered.
        answer = bytearray()
        drive(server, read_to_end(scraper, answer), timeout=5)
        assert answer.startswith(b"HTTP/1.0 200 OK")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        scraper.close()
        server.close()


def test_idle_and_half_sent_connections_do_not_lock_out_a_scrape(pool_factory):
    port = free_port()
    with pool_factory(workers=1, args=("--metrics-port", str(port)), env=METRICS_ENV).start() as pool:
        scrape(port)
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(80)]
        half = socket.create_connection(("127.0.0.1", port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        try:
            started = time.monotonic()
            body = scrape(port, timeout=2.0)
            took = time.monotonic() - started
            print(f"\nscrape with 81 stalled connections open: {took * 1000:.1f} ms")
            assert took < 2.0 and 'supervisor_workers{status="idle"} 1.0' in body
            # Every stalled connection is dropped: the 64 held ones after 2 s at most.
            assert closed_by_peer(half, 4.0)
            dropped = sum(closed_by_peer(sock, 4.0) for sock in idle)
            assert dropped == 80
            assert pool.proc is not None and pool.proc.poll() is None
            assert 'supervisor_workers{status="idle"} 1.0' in scrape(port)
        finally:
            for sock in [*idle, half]:
                sock.close()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


# == processes a handler forks =====================================================================


def test_grandchildren_get_default_handlers_and_die_with_the_stop(pool_factory, client, strays):
    with pool_factory(workers=1).start() as pool:
        (worker,) = pool.live_children()
        assert process_group(worker) == worker  # each child leads its own group
        assert process_group(pool.pid) != worker
        client.enqueue("fork", {"seconds": 120})
        client.enqueue("fork", {"seconds": 120, "ignore_term": True})
        plain, ignoring = grandchildren(pool, 2)
        strays.extend([plain, ignoring])
        assert process_group(plain) == worker and process_group(ignoring) == worker
        # The worker's SIGTERM handler was not inherited: the default disposition is back.
        assert not signal_bit(plain, "SigCgt", signal.SIGTERM) and not signal_bit(plain, "SigIgn", signal.SIGTERM)
        assert not signal_bit(plain, "SigCgt", signal.SIGUSR1)
        wait_for(lambda: signal_bit(ignoring, "SigIgn", signal.SIGTERM), what="the grandchild to ignore SIGTERM")

        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
        started = time.monotonic()
        wait_dead(plain, timeout=5)
        wait_dead(ignoring, timeout=5)
        print(f"\ngrandchildren gone {time.monotonic() - started:.3f}s after the supervisor exited")


def test_a_graceful_stop_lets_a_running_tasks_subprocess_finish(pool_factory, client):
    with pool_factory(workers=1).start() as pool:
        info = client.enqueue("subprocess", 1.0)
        wait_for(lambda: pool.started(info.id), what="the task to start")
        pool.signal(signal.SIGTERM)  # drain: SIGTERM to the child, not to its group
        assert pool.wait_exit(15) == 0
        assert pool.done(info.id) == 1, pool.tail()


def test_ctrl_c_to_the_terminals_group_reaches_the_parent_which_drains_the_children(pool_factory, client):
    # setsid: the supervisor leads a group of its own, like a shell job; killpg is what Ctrl-C does.
    with pool_factory(workers=2, prefix=("setsid",)).start() as pool:
        assert process_group(pool.pid) == pool.pid
        children = pool.live_children()
        assert all(process_group(c) == c for c in children)  # not in the terminal's group
        info = client.enqueue("subprocess", 1.0)
        wait_for(lambda: pool.started(info.id), what="the task to start")
        os.killpg(pool.pid, signal.SIGINT)
        assert pool.wait_exit(15) == 0
        assert pool.done(info.id) == 1, pool.tail()
        assert {e["pid"] for e in pool.events("exit")} == set(children)  # left when asked, none killed
        assert not pool.events("kill") and not pool.events("restart")


def test_a_grandchild_that_escapes_holds_no_descriptor_of_the_pool(pool_factory, client, strays):
    port = free_port()
    with pool_factory(workers=1, args=("--metrics-port", str(port)), env=METRICS_ENV).start() as pool:
        (worker,) = pool.live_children()
        client.enqueue("fork", {"seconds": 120, "escape": True})
        (escaped,) = grandchildren(pool, 1)
        strays.append(escaped)
        wait_for(lambda: process_group(escaped) == escaped, what="the grandchild to leave the group")
        worker_fds = descriptors(worker)
        assert any(kind.startswith("pipe:") for kind in worker_fds.values())  # the worker's health pipe
        assert any(kind.startswith("socket:") for kind in worker_fds.values())  # its Redis connection
        # The worker holds nothing of the parent's but its own pipe and Redis connection.
        parent_sockets = {k for k in descriptors(pool.pid).values() if k.startswith("socket:")}
        assert parent_sockets and not parent_sockets & set(worker_fds.values())
        # The grandchild holds no socket and no pipe at all: not the listener, not the health pipe.
        leaked = {fd: kind for fd, kind in descriptors(escaped).items() if kind.startswith(("socket:", "pipe:"))}
        assert leaked == {}, leaked
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    assert alive(escaped)  # it left the group: not ours to kill, and it must not matter
    with pool_factory(workers=1, args=("--metrics-port", str(port)), env=METRICS_ENV).start() as again:
        assert 'supervisor_workers{status="idle"} 1.0' in wait_for(lambda: scrape(port), what="a scrape")
        again.signal(signal.SIGTERM)
        assert again.wait_exit(10) == 0


# == a failed fork =================================================================================

PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A cgroup (v1 pids controller) of our own, to put a real limit on the supervisor's forks.

    Root ignores RLIMIT_NPROC; a cgroup's ``pids.max`` applies to everyone.
    """
    group = PIDS_CGROUP / f"sv-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"no writable pids cgroup here ({exc}): cannot make fork fail for real")
    try:
        yield group
    finally:
        (group / "pids.max").write_text("max")
        wait_for(lambda: not (group / "cgroup.procs").read_text().split(), timeout=10, what="an empty cgroup")
        group.rmdir()


def thread_count(pid: int) -> int:
    return int(proc_status(pid, "Threads") or 0)


def test_a_failed_fork_is_retried_and_the_pool_keeps_working(pool_factory, client, pids_cgroup):
    # The supervisor joins the cgroup before it starts (so do its children); the test does not.
    enter = ("sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(pids_cgroup))
    with pool_factory(workers=2, prefix=enter).start() as pool:
        assert pool.proc is not None
        # Once the children are up and nothing is being created, the count holds still: the pids
        # controller counts threads too, and each child starts two as it comes up (its first task
        # thread and its cancel listener). A limit written before both have started would fail the
        # child's own start instead of the third fork (the CI flake of 2026-12-04).
        pool.wait_event("spawn", count=2)
        wait_for(
            lambda: len(kids := pool.live_children()) == 2 and all(thread_count(p) >= 3 for p in kids),
            what="both children up with their task threads and cancel listeners",
        )
        current = wait_for(
            lambda: (n := int((pids_cgroup / "pids.current").read_text())) == len(
                (pids_cgroup / "tasks").read_text().split()) and n,
            what="a settled process count",
        )  # fmt: skip
        (pids_cgroup / "pids.max").write_text(str(current))  # not one process more
        pool.signal(signal.SIGTTIN)  # one worker more: its fork must fail
        failed = pool.wait_event("spawn_failed", count=2, timeout=10)
        assert failed[0]["slot"] == 2 and "EAGAIN" in failed[0]["reason"], failed[0]
        assert failed[1]["delay"] > failed[0]["delay"]  # the slot's back-off, not a spin
        print(f"\nfork failures: {[(e['reason'], e['delay']) for e in failed]}")
        # The pool runs on with the workers it has.
        ids = [client.enqueue("record", i).id for i in range(5)]
        wait_for(lambda: all(pool.done(i) for i in ids), timeout=10, what="tasks to run")
        assert pool.proc.poll() is None and len(pool.live_children()) == 2
        # Room again: the slot starts at its next try.
        (pids_cgroup / "pids.max").write_text("max")
        spawned = pool.wait_event("spawn", lambda e: e["slot"] == 2, timeout=15)
        wait_for(lambda: spawned[0]["pid"] in pool.live_children(), what="the third worker")
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    assert not [e for e in pool.events() if e.get("event") in ("restart", "kill")]


def test_a_worker_that_cannot_start_more_task_threads_runs_on_the_one_it_has(pool_factory, client, pids_cgroup):
    """Task threads beyond the first start when tasks wait for them: under a pids limit that start
    fails, and the worker says so and runs its tasks on the thread it has."""
    enter = ("sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(pids_cgroup))
    with pool_factory(
        workers=1, prefix=enter, args=("--concurrency", "4"), app="tests.apps.pool_app:app"
    ).start() as pool:
        assert pool.proc is not None
        pool.wait_event("spawn", count=1)
        # Its threads: the main one (the claim loop), the event loop's (the app has async
        # handlers), the cancel listener and the first task thread.
        wait_for(lambda: len(kids := pool.live_children()) == 1 and thread_count(kids[0]) >= 4,
                 what="the child up with its first task thread")  # fmt: skip
        current = wait_for(
            lambda: (n := int((pids_cgroup / "pids.current").read_text())) == len(
                (pids_cgroup / "tasks").read_text().split()) and n,
            what="a settled process count",
        )  # fmt: skip
        (pids_cgroup / "pids.max").write_text(str(current))  # not one thread more
        ids = [client.enqueue("sleep", 0.2).id for _ in range(4)]
        wait_for(lambda: all(pool.done(i) for i in ids), timeout=20, what="the four tasks, one at a time")
        failed = pool.wait_event("thread_start_failed", timeout=5)
        assert "running tasks on the 1 there are" in failed[0]["message"], failed[0]
        assert pool.proc.poll() is None and len(pool.live_children()) == 1
        (pids_cgroup / "pids.max").write_text("max")
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    assert not [e for e in pool.events() if e.get("event") in ("restart", "kill")]
