"""Liveness and readiness probes: `supervisor health --live` never needs Redis, `--ready` does."""

from __future__ import annotations

import json
import re
import signal

import pytest
from click.testing import CliRunner

from supervisor.cli import main
from tests.helpers import wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(60)


def probe(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(main, ["health", *args, "--json"])
    return result.exit_code, json.loads(result.output)


def _live_workers(result: tuple[int, dict[str, object]]) -> object:
    code, body = result
    status = body.get("status")
    return status.get("alive") if code == 0 and isinstance(status, dict) else None


def test_liveness_passes_with_redis_stopped_while_readiness_fails(own_redis, namespace, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    assert probe("--live")[0] == 1  # nothing runs yet
    with Pool(own_redis.url, namespace, tmp_path / "sv.log", workers=2) as pool:
        wait_for(lambda: probe("--ready")[0] == 0, timeout=10, what="ready")
        # Readiness reads the Redis heartbeat, liveness the status file: each is written when the
        # parent's loop gets to it, so one may pass a moment before the other.
        wait_for(lambda: _live_workers(probe("--live")) == 2, timeout=5, what="live with both workers")
        code, live = probe("--live")
        assert code == 0 and live["status"]["pid"] == pool.pid and live["status"]["alive"] == 2

        own_redis.stop()
        code, ready = probe("--ready")
        assert code == 1 and not ready["healthy"]
        port = own_redis.url.rsplit(":", 1)[1].split("/")[0]
        assert f":{port}" in str(ready["reason"])  # names the address actually used
        # Liveness keeps passing through the outage: the loop turns, the children live.
        pool.wait_event("redis_down", timeout=10)
        for _ in range(3):
            code, live = probe("--live")
            assert code == 0, live
            assert pool.proc is not None and pool.proc.poll() is None

        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0
    code, live = probe("--live")
    assert code == 1 and "no supervisor" in str(live["reason"])


def test_liveness_fails_when_the_process_is_gone(redis_url, namespace, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1) as pool:
        wait_for(lambda: probe("--live")[0] == 0, timeout=10, what="live")
        pool.signal(signal.SIGKILL)  # no clean exit: its status file stays behind
        pool.wait_exit(10)
        code, live = probe("--live")
        assert code == 1 and f"pid {pool.pid} is gone" in str(live["reason"])


def test_scheduler_backs_off_while_redis_is_down_at_start(namespace, tmp_path):
    """Redis down from the start: the scheduler's retries (and their log lines) space out."""
    from tests.redis_server import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    with Pool(dead, namespace, tmp_path / "sv.log", workers=1, app="tests.apps.periodic_app:app") as pool:
        lines = pool.wait_event(
            "redis_down", lambda e: e.get("operation") == "periodic scheduling", timeout=15, count=4
        )
        delays = [float(re.search(r"retrying in ([\d.]+)s", e["message"]).group(1)) for e in lines[:4]]
        assert delays == [0.5, 1.0, 2.0, 4.0]
        assert f"{dead.rsplit('/', 1)[0].split('//')[1]}" in lines[0]["message"]  # names the real address
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0
