"""The dashboard over HTTP (Starlette's TestClient), against a private redis-server.

Every page and action, authentication, CSRF refusal, escaping of hostile payloads, the bind
refusal of ``supervisor dashboard`` (exit 78), mounting under a prefix, and the Inspector
queries it added (per-minute counters, bounded bulk steps).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.inspector import Inspector
from supervisor.adapters.redis.keys import MINUTE_COUNTERS_TTL, minute_of
from supervisor.client import Client
from supervisor.config import EX_CONFIG, ConfigError, Settings
from supervisor.core.ports import Claimed
from supervisor.dashboard.settings import DashboardSettings, is_loopback, load_dashboard_settings
from tests.dashboard_helpers import archive, envelope

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note about httpx vs httpx2 in its test client
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    from supervisor.dashboard.app import BULK_STEP, create_app

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ROOT = Path(__file__).resolve().parent.parent
TOKEN_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings) as c:
        yield c


def make_tc(settings: Settings, **options: Any) -> TestClient:
    return TestClient(create_app(settings, DashboardSettings(page_size=25, **options)))


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with make_tc(settings) as c:
        yield c


def csrf(tc: TestClient, page: str = "/queue?name=default") -> str:
    """Open a page (which sets the CSRF cookie) and read its form token."""
    response = tc.get(page)
    match = TOKEN_RE.search(response.text)
    assert match, response.text[:500]
    return match.group(1)


# -- pages ---------------------------------------------------------------------------------------


def test_overview_lists_queues_with_counts_and_chart(tc: TestClient, client: Client, broker: RedisBroker) -> None:
    client.enqueue("a", 1, queue="default")
    client.enqueue("a", 2, queue="default")
    client.enqueue("b", 3, queue="low", process_in="1h")
    archive(broker, "low")
    page = tc.get("/")
    assert page.status_code == 200
    assert 'hx-trigger="every 3.0s"' in page.text  # refreshed live, not by reloading
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', page.text, re.S)
    assert row and re.search(r'data-state="pending"><a [^>]*>2</a>', row.group(1))
    low = re.search(r'<tr data-queue="low">(.*?)</tr>', page.text, re.S)
    assert low and re.search(r'data-state="scheduled"><a [^>]*>1</a>', low.group(1))
    assert re.search(r'data-state="archived"><a [^>]*>1</a>', low.group(1))
    assert re.search(r'data-count="failed">1<', low.group(1))
    assert "<svg" in page.text and 'class="failed" points="' in page.text
    fragment = tc.get("/fragments/overview")
    assert fragment.status_code == 200 and "<html" not in fragment.text and 'data-queue="low"' in fragment.text
    stats = tc.get("/api/stats").json()
    low_stats = next(q for q in stats["queues"] if q["queue"] == "low")
    assert low_stats["archived"] == 1 and low_stats["scheduled"] == 1 and low_stats["failed"] == 1


def test_static_assets_are_served_from_the_package(tc: TestClient) -> None:
    page = tc.get("/")
    assert "https://" not in re.sub(r'href="https?://[^"]*"', "", page.text.split("<main>")[0])
    js = tc.get("/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:100]
    assert tc.get("/static/dashboard.css").status_code == 200
    assert tc.get("/static/htmx.LICENSE.txt").status_code == 200


def test_vendored_htmx_is_the_pinned_file() -> None:
    data = (ROOT / "supervisor/dashboard/static/htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert "2.0.11" in (ROOT / "supervisor/dashboard/static/VENDORED.md").read_text()


def test_security_headers(tc: TestClient) -> None:
    response = tc.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_supervisors_page_shows_supervisors_workers_and_active_tasks(
    tc: TestClient, broker: RedisBroker, namespace: str
) -> None:
    now = time.time()
    workers = [
        {"pid": 4242, "slot": 0, "started": now - 100, "rss": 30 * 1048576, "task_id": "tid-running",
         "task_type": "report:build", "queue": "default", "task_started": now - 12.5},
        {"pid": 4243, "slot": 1, "started": now - 100, "rss": 31 * 1048576},
    ]  # fmt: skip
    broker.heartbeat_server(
        "host-a:999",
        {"host": "host-a", "pid": 999, "workers": 2, "active": 3, "busy": 1, "processed": 77, "state": "running",
         "queues": "default:1", "started": now - 100, "children": json.dumps(workers), "rss": 100 * 1048576,
         "version": "0.1.0"},
        30,
    )  # fmt: skip
    page = tc.get("/supervisors")
    assert page.status_code == 200 and "<h1>Supervisors</h1>" in page.text
    assert '<dd data-count="active">3</dd>' in page.text and '<dd data-count="busy">1</dd>' in page.text
    assert "host-a" in page.text and "pid 999" in page.text and "0.1.0" in page.text and "100.0 MB" in page.text
    assert "tid-running" in page.text and "report:build" in page.text
    assert re.search(r">1[23]s<", page.text), "the running task's elapsed time"
    assert "idle" in page.text
    assert "host-a" in tc.get("/fragments/supervisors").text
    old = tc.get("/servers", follow_redirects=False)  # the page's old address, kept for bookmarks
    assert old.status_code == 303 and old.headers["location"].endswith("/supervisors")
    overview = tc.get("/").text
    assert '<span id="active-count">3</span> tasks active on 2 workers' in overview
    assert '<span id="busy-count">1</span> busy' in overview


def test_a_heartbeat_of_an_older_supervisor_counts_its_busy_as_active_tasks(
    tc: TestClient, broker: RedisBroker
) -> None:
    """Before the glossary, ``busy`` counted tasks: it is shown as active tasks, not as busy workers."""
    broker.heartbeat_server(
        "host-b:7", {"host": "host-b", "pid": 7, "workers": 2, "busy": 5, "processed": 1, "state": "running",
                     "started": time.time(), "children": "[]"}, 30,
    )  # fmt: skip
    page = tc.get("/supervisors").text
    assert '<dd data-count="active">5</dd>' in page and '<dd data-count="busy">-</dd>' in page


def test_schedules_page(tc: TestClient, r: redis.Redis, namespace: str) -> None:
    from supervisor.adapters.redis.keys import periodic_key

    record = {"schedule": "*/5 * * * *", "timezone": "UTC", "task_type": "report:build", "queue": "default",
              "next_run": time.time() + 300, "last_enqueued_at": time.time() - 240,
              "last_task_id": "t-<1>"}  # fmt: skip
    r.hset(periodic_key(namespace), "report", json.dumps(record))
    page = tc.get("/schedules")
    assert page.status_code == 200
    assert "*/5 * * * *" in page.text and "report:build" in page.text and re.search("in [45]m", page.text)
    assert "t-&lt;1&gt;" in page.text and "t-<1>" not in page.text


def test_queue_page_states_and_pagination(tc: TestClient, broker: RedisBroker) -> None:
    ids = [archive(broker, "default", {"n": i}) for i in range(60)]
    first = tc.get("/queue?name=default&state=archived")
    assert first.status_code == 200 and "page 1 of 3 (60 tasks)" in first.text
    assert first.text.count('class="task-link"') == 25
    assert ids[0] in first.text and ids[25] not in first.text  # oldest archived first
    last = tc.get("/queue?name=default&state=archived&page=3")
    assert last.text.count('class="task-link"') == 10 and ids[-1] in last.text and 'rel="first"' in last.text
    beyond = tc.get("/queue?name=default&state=archived&page=99")
    assert "page 3 of 3" in beyond.text
    assert "{&#34;n&#34;:0}" in first.text or "{&#34;n&#34;: 0}" in first.text  # payload preview, escaped
    for state in ("pending", "active", "scheduled", "retry"):
        page = tc.get(f"/queue?name=default&state={state}")
        assert page.status_code == 200 and f"No {state} tasks in default" in page.text
    assert tc.get("/queue?name=default&state=bogus").status_code == 400
    assert tc.get("/queue?name=nope").status_code == 404


def test_search_by_task_id(tc: TestClient, client: Client) -> None:
    info = client.enqueue("a", None, queue="low")
    found = tc.get(f"/search?id={info.id}&queue=low", follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/task?queue=low&id={info.id}"
    anywhere = tc.get(f"/search?id={info.id}", follow_redirects=False)
    assert anywhere.status_code == 303
    missing = tc.get("/search?id=nope&queue=low")
    assert missing.status_code == 404 and "no task" in missing.text


def test_task_page_shows_everything(settings: Settings, broker: RedisBroker, client: Client) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    tid = archive(broker, "default", {"to": "a@example.com", "n": [1, 2]}, error="Traceback ...\nValueError: bad",
                  headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"})  # fmt: skip
    with make_tc(settings, trace_url="http://jaeger.local/trace/{trace_id}") as tc:
        page = tc.get(f"/task?queue=default&id={tid}")
    assert page.status_code == 200
    text = page.text
    assert 'id="task-state">archived<' in text and "3 retried of max 3" in text
    assert "&#34;to&#34;: &#34;a@example.com&#34;" in text  # pretty-printed JSON, escaped quotes
    assert "ValueError: bad" in text
    assert f'href="http://jaeger.local/trace/{trace}"' in text
    assert 'id="retry"' in text and 'id="delete"' in text
    # a completed task kept with retention shows its result
    info = client.enqueue("a", {"x": 1}, queue="default", retention="1h")
    got = broker.claim("w", ["default"], 30)
    assert isinstance(got, Claimed)
    from supervisor.core.task import encode_completed

    data = broker.redis.hget(broker.keys("default").msg, info.id)
    assert broker.complete(got, "w", record=encode_completed(data, {"total": 42}, time.time()), retention=3600)
    with make_tc(settings) as tc:
        done = tc.get(f"/task?queue=default&id={info.id}")
    assert 'id="task-state">completed<' in done.text and "&#34;total&#34;: 42" in done.text
    assert tc.get("/task?queue=default&id=missing").status_code == 404


def test_hostile_payload_and_error_render_as_text(tc: TestClient, broker: RedisBroker) -> None:
    evil = "<script>document.title='pwned'</script>"
    tid = archive(broker, "default", {"html": evil, evil: 1}, error=f"RuntimeError: {evil}")
    for url in (f"/task?queue=default&id={tid}", "/queue?name=default&state=archived"):
        text = tc.get(url).text
        assert "<script>document" not in text
        assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in text
        assert text.count("<script") == 2  # ours: htmx and dashboard.js, loaded from /static


def test_undecodable_bytes_are_shown_safely(tc: TestClient, broker: RedisBroker, r: redis.Redis) -> None:
    # a payload of raw bytes (how the worker keeps a message that was no envelope), and bytes inside one
    tid = archive(broker, "default", b"\xc1<b>\x00\xff")
    text = tc.get(f"/task?queue=default&id={tid}").text
    assert "shown as bytes" in text and r"b&#39;\xc1&lt;b&gt;\x00\xff&#39;" in text
    tid = archive(broker, "default", {"blob": b"\x00<x>"})
    assert r"&#34;blob&#34;: &#34;b&#39;\\x00&lt;x&gt;&#39;&#34;" in tc.get(f"/task?queue=default&id={tid}").text
    # an envelope that is not one at all (bytes pushed by something else)
    k = broker.keys("default")
    r.hset(k.msg, "junk", b"\x00<i>raw\xfe")
    r.hset(k.state, "junk", "archived")
    r.zadd(k.archived, {"junk": time.time()})
    page = tc.get("/task?queue=default&id=junk")
    assert page.status_code == 200 and "undecodable" in page.text and r"\x00&lt;i&gt;raw\xfe" in page.text
    assert "(undecodable)" in tc.get("/queue?name=default&state=archived").text


# -- actions -------------------------------------------------------------------------------------


def test_pause_and_resume(tc: TestClient, client: Client, settings: Settings, r: redis.Redis) -> None:
    client.enqueue("a", None, queue="default")
    paused_key = Inspector(r, settings.asynq.namespace).keys("default").paused
    token = csrf(tc)
    done = tc.post("/actions/pause", data={"csrf": token, "queue": "default"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/queue?name=default"
    assert r.exists(paused_key)
    page = tc.get("/queue?name=default")
    assert 'id="queue-state">paused<' in page.text and "Resume queue" in page.text
    assert tc.post("/actions/resume", data={"csrf": token, "queue": "default"}).status_code == 200
    assert not r.exists(paused_key)
    assert tc.post("/actions/pause", data={"csrf": token, "queue": "nope"}).status_code == 404


def test_retry_and_delete_one_task(tc: TestClient, broker: RedisBroker, settings: Settings, r: redis.Redis) -> None:
    insp = Inspector(r, settings.asynq.namespace)
    tid = archive(broker, "default")
    token = csrf(tc)
    retried = tc.post("/actions/retry", data={"csrf": token, "queue": "default", "id": tid}, follow_redirects=False)
    assert retried.status_code == 303 and insp.find(tid).state == "pending"
    again = tc.post("/actions/retry", data={"csrf": token, "queue": "default", "id": tid})
    assert again.status_code == 409 and "only scheduled, retry or archived" in again.text
    # htmx asks for an HX-Redirect rather than a 303
    deleted = tc.post("/actions/delete", data={"queue": "default", "id": tid},
                      headers={"HX-Request": "true", "X-CSRF-Token": token})  # fmt: skip
    assert deleted.status_code == 200 and deleted.headers["hx-redirect"] == "/queue?name=default&state=pending"
    assert r.hget(insp.keys("default").state, tid) is None


def test_run_a_scheduled_task_now(tc: TestClient, client: Client, settings: Settings, r: redis.Redis) -> None:
    info = client.enqueue("a", None, queue="default", process_in="1h")
    page = tc.get(f"/task?queue=default&id={info.id}")
    assert "Run now" in page.text
    tc.post("/actions/retry", data={"csrf": TOKEN_RE.search(page.text).group(1), "queue": "default", "id": info.id})  # type: ignore[union-attr]
    assert Inspector(r, settings.asynq.namespace).find(info.id).state == "pending"


@pytest.mark.parametrize("verb", ["retry", "delete"])
def test_bulk_actions_go_in_bounded_steps(tc: TestClient, broker: RedisBroker, r: redis.Redis, verb: str) -> None:
    k = broker.keys("default")
    total = BULK_STEP * 2 + 7
    ids = [uuid.uuid4().hex for _ in range(total)]
    pipe = r.pipeline(transaction=False)  # faster than 1,007 claims; the same keys archive.lua writes
    for i, tid in enumerate(ids):
        pipe.hset(k.msg, tid, envelope(tid, "default", i))
        pipe.hset(k.state, tid, "archived")
        pipe.zadd(k.archived, {tid: time.time() + i})
    pipe.sadd(f"{broker.namespace}:queues", "default")
    pipe.execute()
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf(tc)}
    form: dict[str, str] = {"queue": "default", "state": "archived", "verb": verb}
    steps = []
    while True:
        step = tc.post("/actions/bulk", data=form, headers=headers)
        assert step.status_code == 200, step.text
        steps.append(step.text)
        next_vals = re.search(r"hx-vals='([^']*)'", step.text)
        if not next_vals:
            break
        form = json.loads(next_vals.group(1).replace("&#34;", '"'))
        assert len(steps) < 10
    assert len(steps) == 3 and "1000" in steps[1] and "7 left" not in steps[2]
    word = "Retried" if verb == "retry" else "Deleted"
    assert f"{word} {total} archived tasks of default" in steps[-1]
    assert r.zcard(k.archived) == 0
    assert r.llen(k.pending) == (total if verb == "retry" else 0)


def test_bulk_confirmation_is_asked(tc: TestClient, broker: RedisBroker) -> None:
    archive(broker, "default")
    page = tc.get("/queue?name=default&state=archived").text
    assert 'hx-confirm="Delete every archived task of default (1)? This cannot be undone."' in page
    assert 'hx-confirm="Retry every archived task of default (1)?"' in page


# -- CSRF and auth -------------------------------------------------------------------------------


def test_posts_without_a_valid_csrf_token_are_refused(
    tc: TestClient, settings: Settings, client: Client, r: redis.Redis
) -> None:
    client.enqueue("a", None, queue="default")
    paused_key = Inspector(r, settings.asynq.namespace).keys("default").paused
    token = csrf(tc)
    assert tc.post("/actions/pause", data={"queue": "default"}).status_code == 403  # no token
    assert tc.post("/actions/pause", data={"csrf": "0" * 64, "queue": "default"}).status_code == 403  # wrong
    other = make_tc(settings)  # a token valid for another browser's cookie
    assert other.post("/actions/pause", data={"csrf": token, "queue": "default"}).status_code == 403
    with make_tc(settings) as fresh:  # right token, cookie missing (a cross-site form post)
        assert fresh.post("/actions/pause", data={"csrf": token, "queue": "default"}).status_code == 403
    assert tc.get("/actions/pause").status_code == 405  # state changes are POST only
    assert not r.exists(paused_key)
    assert tc.post("/actions/pause", data={"csrf": token, "queue": "default"}).status_code == 200
    assert r.exists(paused_key)


def test_basic_auth(settings: Settings) -> None:
    with make_tc(settings, username="ops", password="s3cret") as tc:
        refused = tc.get("/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert tc.get("/", auth=("ops", "wrong")).status_code == 401
        assert tc.get("/", auth=("nobody", "s3cret")).status_code == 401
        assert tc.get("/static/htmx.min.js").status_code == 401  # nothing is public
        assert tc.post("/actions/pause", data={"queue": "default"}).status_code == 401
        bad = {"Authorization": "Basic !!!not-base64"}
        assert tc.get("/", headers=bad).status_code == 401
        assert tc.get("/", auth=("ops", "s3cret")).status_code == 200


def test_bearer_token(settings: Settings) -> None:
    with make_tc(settings, token="t0ken-abc") as tc:
        assert tc.get("/api/stats").status_code == 401
        assert tc.get("/api/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = tc.get("/api/stats", headers={"Authorization": "Bearer t0ken-abc"})
        assert ok.status_code == 200 and "queues" in ok.json()
        basic = base64.b64encode(b"x:t0ken-abc").decode()
        assert tc.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 401


# -- mounted in a user's app ---------------------------------------------------------------------


def test_mounted_under_a_prefix(settings: Settings, client: Client, r: redis.Redis) -> None:
    client.enqueue("a", None, queue="default")
    dashboard = create_app(settings, DashboardSettings(username="ops", password="pw"))
    user_app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("user home")),
                                 Mount("/ops/jobs", app=dashboard)])  # fmt: skip
    with TestClient(user_app) as tc:
        assert tc.get("/").text == "user home"
        assert tc.get("/ops/jobs/").status_code == 401
        page = tc.get("/ops/jobs/queue?name=default", auth=("ops", "pw"))
        assert page.status_code == 200
        assert 'href="/ops/jobs/static/dashboard.css"' in page.text and 'action="/ops/jobs/actions/pause"' in page.text
        assert "Path=/ops/jobs/" in page.headers["set-cookie"]
        token = TOKEN_RE.search(page.text).group(1)  # type: ignore[union-attr]
        done = tc.post("/ops/jobs/actions/pause", data={"csrf": token, "queue": "default"}, auth=("ops", "pw"),
                       follow_redirects=False)  # fmt: skip
        assert done.status_code == 303 and done.headers["location"] == "/ops/jobs/queue?name=default"
        assert r.exists(Inspector(r, settings.asynq.namespace).keys("default").paused)
        assert tc.get("/ops/jobs/static/htmx.min.js", auth=("ops", "pw")).status_code == 200


def test_redis_unreachable_is_a_clear_503() -> None:
    from tests.conftest import make_settings
    from tests.redis_server import free_port

    with make_tc(make_settings(f"redis://127.0.0.1:{free_port()}/0", "x")) as tc:
        page = tc.get("/")
    assert page.status_code == 503 and "cannot reach Redis" in page.text


# -- Inspector queries the dashboard added ---------------------------------------------------------


def test_per_minute_counters_are_kept_by_the_scripts(broker: RedisBroker, settings: Settings, r: redis.Redis) -> None:
    archive(broker, "default")  # archive.lua: failed
    broker.enqueue("default", "ok", envelope("ok", "default"), None)
    broker.enqueue("default", "again", envelope("again", "default"), None)
    for _ in range(2):
        got = broker.claim("w", ["default"], 30)
        assert isinstance(got, Claimed)
        if got.task_id == "ok":
            assert broker.complete(got, "w")  # complete.lua: processed
        else:
            assert broker.retry(got, "w", envelope("again", "default", retried=1), time.time() + 60)  # retry.lua
    now = time.time()
    history = Inspector(r, settings.asynq.namespace).throughput(["default"], minutes=60, now=now)["default"]
    assert len(history) == 60 and history[-1].minute == minute_of(now)
    assert sum(m.succeeded for m in history) == 1 and sum(m.failed for m in history) == 2
    key = broker.keys("default").minute(history[-1].minute if history[-1].failed else history[-2].minute)
    assert 0 < r.ttl(key) <= MINUTE_COUNTERS_TTL


def test_per_minute_rate_slides_over_the_minute_boundary() -> None:
    from supervisor.adapters.redis.inspector import Minute
    from supervisor.dashboard.present import chart, per_minute

    history = [Minute(100, 60, 6), Minute(101, 10, 0)]
    assert per_minute(history, now=101 * 60 + 0) == (70, 6)  # the whole previous minute still counts
    assert per_minute(history, now=101 * 60 + 30) == (40, 3)  # half of it
    assert per_minute(history, now=101 * 60 + 59.99) == (10, 0)
    c = chart([history, [Minute(100, 0, 0), Minute(101, 30, 0)]], width=100, height=50)
    assert c.peak == 60 and c.total_succeeded == 100 and c.total_failed == 6 and c.minutes == 2
    assert c.succeeded == "0.0,4.0 100.0,19.3" and c.failed == "0.0,45.4 100.0,50.0"  # 60 and 40; 6 and 0


# -- settings and the command --------------------------------------------------------------------

EVERY_DASHBOARD_VARIABLE: dict[str, tuple[str, str, Any]] = {
    "ASYNQ_DASHBOARD_HOST": ("::1", "host", "::1"),
    "ASYNQ_DASHBOARD_PORT": ("9999", "port", 9999),
    "ASYNQ_DASHBOARD_USERNAME": ("ops", "username", "ops"),
    "ASYNQ_DASHBOARD_PASSWORD": ("pw", "password", "pw"),
    "ASYNQ_DASHBOARD_TOKEN": ("tok", "token", "tok"),
    "ASYNQ_DASHBOARD_SECRET": ("k" * 32, "secret", "k" * 32),
    "ASYNQ_DASHBOARD_ROOT_PATH": ("/jobs/", "root_path", "/jobs"),
    "ASYNQ_DASHBOARD_TRACE_URL": ("http://j/{trace_id}", "trace_url", "http://j/{trace_id}"),
    "ASYNQ_DASHBOARD_REFRESH": ("10s", "refresh", 10.0),
    "ASYNQ_DASHBOARD_PAGE_SIZE": ("100", "page_size", 100),
}


def test_every_dashboard_variable_is_known_and_read() -> None:
    from supervisor.config import KNOWN_VARIABLES

    assert set(EVERY_DASHBOARD_VARIABLE) == {v for v in KNOWN_VARIABLES if v.startswith("ASYNQ_DASHBOARD_")}
    for name, (value, attribute, expected) in EVERY_DASHBOARD_VARIABLE.items():
        env = {name: value}
        if name in ("ASYNQ_DASHBOARD_USERNAME", "ASYNQ_DASHBOARD_PASSWORD"):
            env = {"ASYNQ_DASHBOARD_USERNAME": "ops", "ASYNQ_DASHBOARD_PASSWORD": "pw"}
        assert getattr(load_dashboard_settings(environ=env), attribute) == expected, name


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ASYNQ_DASHBOARD_HOST": "0.0.0.0"}, "refusing to listen beyond loopback without credentials"),
        ({"ASYNQ_DASHBOARD_USERNAME": "ops"}, "basic auth needs ASYNQ_DASHBOARD_PASSWORD too"),
        ({"ASYNQ_DASHBOARD_PORT": "70000"}, "expected an integer from 1 to 65535"),
        ({"ASYNQ_DASHBOARD_TRACE_URL": "http://x/"}, "{trace_id}"),
        ({"ASYNQ_DASHBOARD_REFRESH": "1ms"}, "from 500ms to 1h"),
    ],
)
def test_bad_dashboard_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_dashboard_settings(environ=env)


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", "192.168.1.2"))
    assert load_dashboard_settings(environ={"ASYNQ_DASHBOARD_HOST": "0.0.0.0", "ASYNQ_DASHBOARD_TOKEN": "t"}).host


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "dashboard", *args], env={**clean, **(env or {})}, cwd=ROOT,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_cli_refuses_a_public_bind_without_credentials(redis_url: str) -> None:
    for args, env in [
        (("--host", "0.0.0.0"), {}),
        ((), {"ASYNQ_DASHBOARD_HOST": "192.168.0.10"}),
        ((), {"ASYNQ_DASHBOARD_HOST": "0.0.0.0", "ASYNQ_DASHBOARD_USERNAME": "ops"}),
        (("--port", "0"), {}),
    ]:
        done = run_cli(*args, "--redis-url", redis_url, env=env)
        assert done.returncode == EX_CONFIG, (args, env, done.stderr)
        assert done.stderr.count("\n") == 1 and "configuration error" in done.stderr
        assert "Traceback" not in done.stderr


def test_cli_check_json(redis_url: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ASYNQ_DASHBOARD_HOST=0.0.0.0\nASYNQ_DASHBOARD_TOKEN=secret-token\nASYNQ_DASHBOARD_PORT=9191\n")
    done = run_cli("--check", "--json", "--redis-url", redis_url, "--env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["ok"] is True and info["host"] == "0.0.0.0" and info["port"] == 9191 and info["auth"] == "token"
    assert "secret-token" not in done.stdout
