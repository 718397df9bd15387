"""``make run``: enqueue a few tasks, run the pool until they are done, show what happened.

Uses REDIS_URL (default redis://127.0.0.1:6379/0). When nothing answers there and redis-server is
installed, starts a throwaway one on a free port for the demo and says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis

from supervisor import Client, Task
from supervisor.config import load_settings
from supervisor.wiring import make_inspection

NAMESPACE = "demo"


def reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def throwaway_redis() -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "No Redis answers at REDIS_URL and redis-server is not installed "
            "(Debian/Ubuntu: sudo apt-get install redis-server)."
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="supervisor-demo-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if reachable(url):
            print(f"No Redis answered at REDIS_URL: started a throwaway redis-server on port {port} for this demo.")
            return url, proc
        time.sleep(0.05)
    proc.kill()
    sys.exit("could not start a throwaway redis-server")


def main() -> None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    server = None
    if not reachable(url):
        url, server = throwaway_redis()
    env = {**os.environ, "REDIS_URL": url, "ASYNQ_NAMESPACE": NAMESPACE}
    settings = load_settings(environ={"REDIS_URL": url, "ASYNQ_NAMESPACE": NAMESPACE})
    try:
        with Client(settings=settings) as client:
            client.enqueue_many(
                [Task("email:send", {"to": f"user{i}@example.com", "subject": "Welcome"}) for i in range(5)]
                + [
                    Task(
                        "image:resize",
                        {"image_url": f"https://img/{i}.png", "width": 64, "height": 64},
                        queue="low",
                        max_retry=3,
                    )
                    for i in range(3)
                ]
            )
            client.enqueue_critical("report:nightly", {"day": "2026-11-28"})
            client.enqueue("email:send", {"subject": "no recipient"})  # fails validation: archived
            client.enqueue("video:transcode", {"id": 1})  # no handler: archived
            print("Enqueued 11 tasks; starting `supervisor start --app examples.demo:app --workers 2`\n")
            pool = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "supervisor",
                    "start",
                    "--app",
                    "examples.demo:app",
                    "--workers",
                    "2",
                    "--log-format",
                    "text",
                ],
                env=env,
            )
            inspector = make_inspection(settings)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if sum(q.pending + q.retry + q.active for q in inspector.stats()) == 0:
                    break
                time.sleep(0.2)
            pool.send_signal(signal.SIGTERM)
            pool.wait(40)
            print("\nArchived (dead) tasks:")
            for queue in inspector.queues():
                for view in inspector.list_tasks(queue, "archived", limit=1000):
                    error = view.message.last_error.splitlines()[0] if view.message else "undecodable"
                    kind = view.message.type if view.message else "?"
                    print(f"  {queue}/{view.id} {kind}: {error}")
                inspector.delete_all(queue, "archived")
    finally:
        if server is not None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
