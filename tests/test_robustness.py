"""No input and no Redis fault may take the daemon down (issue 9).

Real processes, a private redis-server where the test changes the server (memory limit, ACL
users), the session's server otherwise.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import msgspec
import pytest
import redis
from click.testing import CliRunner

from supervisor import Client
from supervisor.cli import main
from supervisor.core.errors import InvalidTaskError
from supervisor.core.limits import MAX_PAYLOAD_DEPTH, msgpack_depth_exceeds
from supervisor.core.ports import Enqueued, NewTask
from supervisor.core.task import TaskMessage, decode_message, encode_message
from supervisor.wiring import make_broker
from tests.conftest import make_settings
from tests.helpers import wait_for
from tests.pool import ROOT, Pool, alive

pytestmark = pytest.mark.timeout(90)


def nested(depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = [value]
    return value


def poison_envelope(task_id: str, depth: int = 2000) -> bytes:
    """An envelope a producer of ours would refuse: its Raw payload nests ``depth`` levels."""
    raw = msgspec.Raw(b"\x91" * depth + b"\xc0")  # [[[...[None]...]]] in MessagePack
    message = TaskMessage(id=task_id, type="record", queue="default", payload=raw, max_retry=3, enqueued_at=time.time())
    return encode_message(message)


# == 1. poison payloads =============================================================================


def test_the_depth_check_counts_nesting_exactly() -> None:
    at_limit = msgspec.msgpack.encode(nested(MAX_PAYLOAD_DEPTH))
    assert not msgpack_depth_exceeds(at_limit)
    assert msgpack_depth_exceeds(msgspec.msgpack.encode(nested(MAX_PAYLOAD_DEPTH + 1)))
    wide = msgspec.msgpack.encode([{"a": [1, 2, {"b": "x" * 300}]} for _ in range(500)])  # many containers, shallow
    assert not msgpack_depth_exceeds(wide)
    deep_in_map = msgspec.msgpack.encode({"ok": list(range(300)), "deep": nested(MAX_PAYLOAD_DEPTH + 5)})
    assert msgpack_depth_exceeds(deep_in_map)


def test_the_producer_refuses_a_payload_no_worker_could_decode(redis_url, namespace) -> None:
    with Client(settings=make_settings(redis_url, namespace)) as client:
        with pytest.raises(InvalidTaskError, match=f"more than {MAX_PAYLOAD_DEPTH} levels"):
            client.enqueue("noop", nested(985))
        with pytest.raises(InvalidTaskError, match="levels"):
            client.enqueue("noop", msgspec.Raw(b"\x91" * 2000 + b"\xc0"))
        with pytest.raises(InvalidTaskError, match=r"nests too deeply|levels"):
            client.enqueue("noop", nested(100_000))
        assert client.enqueue("noop", nested(MAX_PAYLOAD_DEPTH)).id  # the limit itself is fine


def test_readers_turn_any_undecodable_envelope_into_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_message(poison_envelope("x", depth=200_000))


def test_a_poison_task_on_the_queue_is_archived_and_the_pool_and_cli_keep_working(redis_url, namespace, tmp_path):
    settings = make_settings(redis_url, namespace)
    broker = make_broker(settings)
    poison = f"poison-{uuid.uuid4().hex[:6]}"
    [(code, _)] = broker.submit([NewTask("default", poison, poison_envelope(poison))])
    assert code == Enqueued.ENQUEUED
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=2) as pool, Client(settings=settings) as client:
        archived = pool.wait_event("task_archived", lambda e: e.get("task_id") == poison, timeout=15)
        assert "nested too deeply" in archived[0]["error"] or "undecodable" in archived[0]["error"]
        after = client.enqueue("record")
        wait_for(lambda: pool.done(after.id), timeout=10, what="a task after the poison one")
        assert pool.proc is not None and pool.proc.poll() is None
        assert not pool.events("restart"), pool.tail()

        env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
        runner = CliRunner()
        shown = runner.invoke(main, ["tasks", "show", poison, "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["state"] == "archived"
        listed = runner.invoke(main, ["tasks", "list", "default", "--state", "archived", "--json"], env=env)
        assert listed.exit_code == 0 and poison in listed.output, listed.output
        deleted = runner.invoke(main, ["tasks", "delete", poison], env=env)
        assert deleted.exit_code == 0, deleted.output
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_a_poison_task_held_by_a_dead_worker_is_put_back_without_killing_the_parent(redis_url, namespace, tmp_path):
    """The parent decodes a dead owner's task to count its attempt: the poison must not kill it."""
    settings = make_settings(redis_url, namespace)
    broker = make_broker(settings)
    poison = f"poison-{uuid.uuid4().hex[:6]}"
    broker.submit([NewTask("default", poison, poison_envelope(poison, depth=200_000))])
    claimed = broker.claim("other-host:4242:1:abc:0:def", ["default"], 1.0)  # a host that died holding it
    assert claimed is not None and not isinstance(claimed, float)
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1) as pool:
        pool.wait_event("task_archived", lambda e: e.get("task_id") == poison, timeout=15)
        assert pool.proc is not None and pool.proc.poll() is None, pool.tail()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_cli_enqueue_refuses_deeply_nested_json_in_one_line(redis_url, namespace) -> None:
    env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
    for depth in (200, 100_000):
        result = CliRunner().invoke(main, ["enqueue", "noop", "--payload", "[" * depth + "]" * depth], env=env)
        assert result.exit_code != 0
        assert "Traceback" not in result.output and "RecursionError" not in result.output, result.output
        assert "nest" in result.output, result.output


# == 2. Redis errors ================================================================================


def start(redis_url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``supervisor start`` that is expected to exit at once."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
    command = [sys.executable, "-m", "supervisor", "start", "--app", "tests.apps.pool_app:app", "-w", "1", *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


def one_line_78(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 78, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_start_exits_78_naming_what_redis_refuses(own_redis, namespace, tmp_path) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    admin.acl_setuser("narrow", enabled=True, passwords=["+pw"], keys=["other:*"], commands=["+@all"])
    admin.acl_setuser("noscripts", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-evalsha", "-eval"])
    admin.acl_setuser("noconfig", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"])
    base = own_redis.url.rsplit("/", 1)[0].replace("redis://", "")
    one_line_78(start(f"redis://narrow:pw@{base}/0", namespace), "lacks a permission", "keys")
    one_line_78(start(f"redis://noscripts:pw@{base}/0", namespace), "lacks a permission", "eval")
    one_line_78(start(f"redis://{base}/99", namespace), "no such database")
    one_line_78(start(f"redis://narrow:wrong@{base}/0", namespace), "refused the credentials")
    admin.close()
    # A user without CONFIG (managed Redis services often deny it) is all we need.
    with Pool(f"redis://noconfig:pw@{base}/0", namespace, tmp_path / "sv.log", workers=1) as pool:
        with Client(redis_url=f"redis://noconfig:pw@{base}/0", settings=make_settings(own_redis.url, namespace)) as c:
            info = c.enqueue("record")
        wait_for(lambda: pool.done(info.id), timeout=10, what="a task run as a user without CONFIG")


def test_redis_out_of_memory_while_tasks_run_keeps_the_pool_up_and_loses_nothing(own_redis, namespace, tmp_path):
    settings = make_settings(own_redis.url, namespace)
    admin = redis.Redis.from_url(own_redis.url)
    with Pool(own_redis.url, namespace, tmp_path / "sv.log", workers=2) as pool, Client(settings=settings) as client:
        ids = [client.enqueue("sleep", 0.02).id for _ in range(100)]
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(used // 2))  # below usage: every write that grows memory fails
        # A loop that has failed six times in a row has lived through ~1.5 s of back-off.
        pool.wait_event(
            "redis_down", lambda e: "OutOfMemoryError" in e.get("message", "") and e["failures"] >= 6, timeout=15
        )
        assert pool.proc is not None and pool.proc.poll() is None, pool.tail()
        assert all(alive(pid) for pid in pool.live_children())
        admin.config_set("maxmemory", "0")
        wait_for(lambda: all(pool.done(i) for i in ids), timeout=30, what="every task after memory came back")
        assert not pool.events("restart"), pool.tail()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0
    admin.close()


def test_a_redis_user_losing_its_permissions_at_run_time_does_not_crash_loop_children(own_redis, namespace, tmp_path):
    admin = redis.Redis.from_url(own_redis.url)
    admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
    url = own_redis.url.replace("redis://", "redis://app:pw@")
    with Pool(url, namespace, tmp_path / "sv.log", workers=2) as pool:
        children = pool.live_children()
        admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-evalsha", "-eval"])
        pool.wait_event(
            "redis_down", lambda e: "NoPermissionError" in e.get("message", "") and e["failures"] >= 6, timeout=15
        )
        assert pool.live_children() == children and not pool.events("restart"), pool.tail()
        admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])
        with Client(settings=make_settings(url, namespace)) as client:
            info = client.enqueue("record")
        wait_for(lambda: pool.done(info.id), timeout=15, what="a task once the permission is back")
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    admin.close()


# == 4. one clock ===================================================================================


def test_a_supervisor_whose_clock_runs_ahead_recovers_no_healthy_lease(redis_url, namespace, tmp_path):
    settings = make_settings(redis_url, namespace)
    with Pool(redis_url, namespace, tmp_path / "a.log", workers=1) as honest, Client(settings=settings) as client:
        task = client.enqueue("sleep", 8.0)  # several 3 s leases long: renewed by its own supervisor
        wait_for(lambda: honest.started(task.id), timeout=10, what="the long task to start")
        with Pool(redis_url, namespace, tmp_path / "b.log", workers=1, app="tests.apps.skewed_app:app") as skewed:
            wait_for(lambda: honest.done(task.id), timeout=20, what="the long task to finish")
            assert not skewed.events("lease_recovery"), skewed.tail()
            assert [what for t, what, _, _ in honest.ran() if t == task.id] == ["started", "done"]
            skewed.signal(signal.SIGTERM)
            assert skewed.wait_exit(10) == 0
        honest.signal(signal.SIGTERM)
        assert honest.wait_exit(10) == 0


# == 5. configuration that passes validation but can't work =========================================


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ASYNQ_QUEUES", "critical=6,default=3", "write critical:6"),
        ("ASYNQ_QUEUES", "my queue", "whitespace"),
        ("ASYNQ_TASK_TIMEOUT", "10000000000000000000000s", "expected a duration from"),
        ("ASYNQ_HEARTBEAT_INTERVAL", "1ms", "expected a duration from"),
        ("ASYNQ_HEARTBEAT_INTERVAL", "10000000000000000s", "expected a duration from"),
        ("ASYNQ_MAX_MEMORY_PER_CHILD", "30", "a fresh worker already uses"),
        ("ASYNQ_CONCURRENCY", "10000", "expected an integer from 1 to"),
        ("REDIS_URL", "redis://127.0.0.1:99999/0", "Port out of range"),
        ("REDIS_URL", "redis://[::1/0", "not a valid URL"),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc", "database number"),
    ],
)
def test_unworkable_settings_exit_78_with_one_line(variable, value, fragment, namespace) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ASYNQ_NAMESPACE": namespace, variable: value}
    env.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")  # never reached: configuration fails first
    for command in (["start", "--app", "tests.apps.pool_app:app"], ["stats"]):
        if command == ["stats"] and not variable.startswith("REDIS_"):
            continue
        result = subprocess.run(
            [sys.executable, "-m", "supervisor", *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        one_line_78(result, fragment)


def test_the_client_and_the_daemon_share_one_queue_name_rule(redis_url, namespace) -> None:
    with Client(settings=make_settings(redis_url, namespace)) as client:
        for bad in ("my queue", "critical=6", "a{b}", "a,b"):
            with pytest.raises(InvalidTaskError):
                client.enqueue("noop", queue=bad)
        with pytest.raises(InvalidTaskError, match=r"timeout must be within \(0s, 30 days\]"):
            client.enqueue("noop", timeout=1e22)
