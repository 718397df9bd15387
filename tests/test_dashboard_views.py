"""The dashboard's listings and actions added for issue 24 (Starlette's TestClient, a private redis-server).

The error column, per-row and selected-rows actions with their flash messages, filters and
bounded searches, the completed tab, the Active tab's worker and running time, the Redis page,
the queue history and the theme. The pages and actions of before are in test_dashboard_http.py.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.inspector import Inspector
from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.inspection import SCAN_LIMIT
from supervisor.core.ports import Claimed
from supervisor.core.task import encode_completed
from supervisor.dashboard import present
from supervisor.dashboard.settings import DashboardSettings
from tests.dashboard_helpers import archive, envelope

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    from supervisor.dashboard.app import create_app

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOKEN_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"|"X-CSRF-Token": "([0-9a-f]{64})"')


def make_tc(settings: Settings, **options: Any) -> TestClient:
    return TestClient(create_app(settings, DashboardSettings(page_size=25, **options)))


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with make_tc(settings) as c:
        yield c


def csrf(tc: TestClient, page: str = "/") -> str:
    """Open a page (which sets the CSRF cookie) and read its token (from a form or htmx's headers)."""
    match = TOKEN_RE.search(tc.get(page).text)
    assert match
    return match.group(1) or match.group(2)


def error_cells(html: str) -> list[str]:
    return re.findall(r'<td class="error"[^>]*>(.*?)</td>', html, re.S)


# -- 1. the last-error column ----------------------------------------------------------------------

TRACEBACK_WITH_FOOTER = (
    "ConnectionError: the mail server refused us\n"
    "Traceback (most recent call last):\n"
    '  File "/app/tasks.py", line 12, in send\n'
    "    smtp.send(msg)\n"
    "ConnectionError: the mail server refused us\n"
    "(17 frames of supervisor's own code or deep recursion not shown)"
)


def test_error_summary_is_the_error_not_the_traceback_footer() -> None:
    assert present.error_summary(TRACEBACK_WITH_FOOTER) == "ConnectionError: the mail server refused us"
    bare = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'k'\n(3 frames ... not shown)"
    assert present.error_summary(bare) == "KeyError: 'k'"
    chained = bare.replace(
        "(3 frames", "\nThe above exception was the direct cause of the following exception:\n(3 frames"
    )
    assert present.error_summary(chained) == "KeyError: 'k'"
    assert present.error_summary("") == "" and present.error_summary("\n\n") == ""


def test_clip_cuts_at_a_word_boundary() -> None:
    text = "ValueError: " + " ".join(f"word{i}" for i in range(40))
    short = present.clip(text, 60)
    assert len(short) <= 60 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " ", "cut between two words"
    assert present.clip("short", 60) == "short"
    long_word = "x" * 200
    assert present.clip(long_word, 60) == "x" * 59 + "…"


def test_queue_listing_shows_the_error_clipped_with_the_full_text_in_a_title(
    tc: TestClient, broker: RedisBroker
) -> None:
    archive(broker, "default", error=TRACEBACK_WITH_FOOTER)
    long_message = "RuntimeError: " + " ".join(["the upstream service answered with garbage"] * 6)
    archive(broker, "default", error=long_message + "\nTraceback (most recent call last):\n  ...")
    page = tc.get("/queue?name=default&state=archived").text
    cells = error_cells(page)
    assert any(c == "ConnectionError: the mail server refused us" for c in cells), cells
    assert not any("frames" in c for c in cells)
    clipped = next(c for c in cells if c.startswith("RuntimeError"))
    assert clipped.endswith("…") and len(clipped) <= present.ERROR_LIMIT
    assert clipped[:-1].rstrip().split(" ")[-1] in {"the", "upstream", "service", "answered", "with", "garbage"}
    assert f'title="{long_message}"' in page


# -- 2. per-row and selected-rows actions, flash messages, pause/resume keep the tab ----------------


def test_row_actions_are_offered_where_they_apply(tc: TestClient, broker: RedisBroker, client: Client) -> None:
    archive(broker, "default")
    client.enqueue("a", None, queue="default")
    client.enqueue("a", None, queue="default", process_in="1h")
    archived = tc.get("/queue?name=default&state=archived").text
    assert archived.count('class="row-retry"') == 1 and archived.count('class="row-delete danger"') == 1
    assert 'id="retry-selected"' in archived and 'id="select-all"' in archived
    pending = tc.get("/queue?name=default&state=pending").text
    assert 'class="row-retry"' not in pending and 'class="row-delete danger"' in pending
    assert 'id="retry-selected"' not in pending and 'id="delete-selected"' in pending
    scheduled = tc.get("/queue?name=default&state=scheduled").text
    assert "now?" in scheduled and ">Run now</button>" in scheduled


def test_retry_one_row_returns_to_the_listing_with_a_flash(tc: TestClient, broker: RedisBroker) -> None:
    ids = [archive(broker, "default") for _ in range(30)]
    token = csrf(tc)
    back = "/queue?name=default&state=archived&page=2"
    done = tc.post("/actions/retry", data={"queue": "default", "id": ids[-1], "back": back},
                   headers={"HX-Request": "true", "X-CSRF-Token": token})  # fmt: skip
    assert done.status_code == 200 and done.headers["hx-redirect"] == back
    assert "sv_dashboard_flash" in done.headers["set-cookie"] and "HttpOnly" in done.headers["set-cookie"]
    page = tc.get(back)
    flash = re.search(r'<p class="flash" id="flash" role="status">(.*?)</p>', page.text)
    assert flash and flash.group(1) == f"Task {ids[-1]} is pending again: it runs next."
    assert 'class="on" data-state="archived"' in page.text and "page 1 of 2" not in page.text
    assert 'id="flash"' not in tc.get(back).text, "a flash is shown once"
    assert Inspector(broker.redis, broker.namespace).find(ids[-1]).state == "pending"


def test_back_accepts_only_our_own_pages(tc: TestClient, broker: RedisBroker) -> None:
    token = csrf(tc)
    evils = (
        "https://evil.example/",
        "//evil.example/queue",
        "/\\evil.example",
        "/actions/pause",
        "javascript:x",
        "/queue?name=default\r\nSet-Cookie: x=1",
    )
    for evil in evils:
        tid = archive(broker, "default")
        done = tc.post("/actions/delete", data={"csrf": token, "queue": "default", "id": tid, "back": evil},
                       follow_redirects=False)  # fmt: skip
        assert done.status_code == 303 and done.headers["location"] == "/queue?name=default&state=archived", evil


def test_delete_selected_rows(tc: TestClient, broker: RedisBroker, client: Client, r: redis.Redis) -> None:
    ids = [archive(broker, "default") for _ in range(5)]
    running = client.enqueue("a", None, queue="default").id
    assert isinstance(broker.claim("w", ["default"], 30), Claimed)
    token = csrf(tc)
    back = "/queue?name=default&state=archived&page=1"
    form = {"csrf": token, "queue": "default", "verb": "delete", "back": back, "ids": [ids[0], ids[2], running]}
    done = tc.post("/actions/selected", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == back
    page = tc.get(back).text
    assert "Deleted 2 tasks of the 3 selected. 1 task could not be (running, done or gone meanwhile)." in page
    k = broker.keys("default")
    assert r.zcard(k.archived) == 3 and r.hget(k.state, ids[0]) is None and r.hget(k.state, running) == b"active"


def test_retry_selected_rows(tc: TestClient, broker: RedisBroker, r: redis.Redis) -> None:
    ids = [archive(broker, "default") for _ in range(4)]
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf(tc)}
    form = {"queue": "default", "verb": "retry", "back": "/queue?name=default&state=archived", "ids": ids[:3]}
    done = tc.post("/actions/selected", data=form, headers=headers)
    assert done.headers["hx-redirect"] == "/queue?name=default&state=archived"
    assert "Retried 3 tasks of the 3 selected." in tc.get("/queue?name=default&state=archived").text
    k = broker.keys("default")
    assert r.llen(k.pending) == 3 and r.zcard(k.archived) == 1
    nothing = tc.post("/actions/selected", data={**form, "ids": []}, headers=headers)
    assert nothing.status_code == 200 and "No task was selected" in tc.get("/queue?name=default").text
    bogus = tc.post("/actions/selected", data={**form, "verb": "explode"}, headers=headers)
    assert bogus.status_code == 409 and "unknown action on selected tasks" in bogus.text
    too_many = tc.post("/actions/selected", data={**form, "ids": [f"id{i}" for i in range(1001)]}, headers=headers)
    assert too_many.status_code == 409 and "at most 1000 tasks at a time" in too_many.text


def test_selected_actions_need_the_csrf_token(tc: TestClient, broker: RedisBroker, r: redis.Redis) -> None:
    ids = [archive(broker, "default") for _ in range(2)]
    csrf(tc)  # the cookie is there, the token is not sent
    refused = tc.post("/actions/selected", data={"queue": "default", "verb": "delete", "ids": ids})
    assert refused.status_code == 403 and r.zcard(broker.keys("default").archived) == 2


def test_pause_and_resume_stay_on_the_tab_with_a_message(tc: TestClient, broker: RedisBroker) -> None:
    archive(broker, "default")
    page = tc.get("/queue?name=default&state=archived&page=1").text
    assert 'name="back" value="/queue?name=default&amp;state=archived&amp;page=1"' in page
    token = csrf(tc)
    back = "/queue?name=default&state=archived&page=1"
    paused = tc.post("/actions/pause", data={"csrf": token, "queue": "default", "back": back}, follow_redirects=False)
    assert paused.status_code == 303 and paused.headers["location"] == back
    shown = tc.get(back).text
    assert "Paused queue default: workers take no new tasks from it until it is resumed." in shown
    assert 'class="on" data-state="archived"' in shown and 'id="queue-state">paused<' in shown
    resumed = tc.post("/actions/resume", data={"csrf": token, "queue": "default", "back": back})
    assert resumed.status_code == 200 and "Resumed queue default: workers take its tasks again." in resumed.text


# -- 3. filter by type, search payload and error text (bounded, paginated) --------------------------


def test_filter_by_type_and_search_text(tc: TestClient, broker: RedisBroker, client: Client) -> None:
    for i in range(4):
        client.enqueue("mail.send", {"to": f"user{i}@example.com"}, queue="default")
        client.enqueue("report.build", {"month": i}, queue="default")
    page = tc.get("/queue?name=default&state=pending&type=mail.send").text
    assert page.count('class="task-link"') == 4 and "report.build" not in page.split('id="tasks"')[1]
    assert "4 matches: searched all 8 pending tasks." in " ".join(page.split())
    assert 'value="mail.send"' in page and 'id="clear-filter"' in page and 'id="delete-all"' not in page
    one = tc.get("/queue?name=default&state=pending&q=USER2@").text
    assert one.count('class="task-link"') == 1 and "user2@example.com" in one
    both = tc.get("/queue?name=default&state=pending&type=report.build&q=user").text
    assert "No pending tasks in default match the filter." in both
    archive(broker, "low", {"n": 1}, error="TimeoutError: the upstream took 30s")
    archive(broker, "low", {"n": 2}, error="KeyError: 'x'")
    errors = tc.get("/queue?name=low&state=archived&q=timeout").text
    assert errors.count('class="task-link"') == 1 and "TimeoutError: the upstream took 30s" in errors
    hostile = tc.get("/queue?name=default&state=pending&q=<script>alert(1)</script>").text
    assert "<script>alert(1)" not in hostile and 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in hostile


def test_search_results_are_paginated_with_the_filter_kept(tc: TestClient, client: Client) -> None:
    ids = [client.enqueue("mail.send", {"i": i}, queue="default").id for i in range(30)]
    client.enqueue("other", None, queue="default")
    first = tc.get("/queue?name=default&state=pending&type=mail.send").text
    assert first.count('class="task-link"') == 25 and "page 1 of 2 (30 matches)" in first
    assert ids[-1] in first, "the newest first"
    assert 'href="/queue?name=default&amp;state=pending&amp;type=mail.send&amp;page=2" rel="next"' in first
    second = tc.get("/queue?name=default&state=pending&type=mail.send&page=2").text
    assert second.count('class="task-link"') == 5 and ids[0] in second
    beyond = tc.get("/queue?name=default&state=pending&type=mail.send&page=9").text
    assert "page 2 of 2" in beyond


def test_search_is_bounded_and_says_so(tc: TestClient, broker: RedisBroker, r: redis.Redis) -> None:
    k = broker.keys("default")
    total = SCAN_LIMIT + 50
    pipe = r.pipeline(transaction=False)
    for i in range(total):
        tid = f"t{i:05d}"
        pipe.hset(k.msg, tid, envelope(tid, "default", {"i": i}))
        pipe.hset(k.state, tid, "pending")
        pipe.lpush(k.pending, tid)
    pipe.sadd(f"{broker.namespace}:queues", "default")
    pipe.execute()
    page = tc.get("/queue?name=default&state=pending&q=%22i%22").text
    scope = "searched the newest 10,000 of 10,050 pending tasks (a search looks at 10,000 at most)"
    assert scope in " ".join(page.split())
    assert "t10049" in page and "t00049" not in page  # the oldest 50 were not looked at
    found = Inspector(r, broker.namespace).search("default", "pending", text='"i":10003', limit=5, scan=100)
    assert found.scanned == 100 and found.total == total and not found.complete
    assert [t.id for t in found.tasks] == ["t10003"]


# -- 4. the completed tab ---------------------------------------------------------------------------


def complete_with_retention(broker: RedisBroker, client: Client, payload: Any, result: Any) -> str:
    info = client.enqueue("report.build", payload, queue="default", retention="1h")
    got = broker.claim("w", ["default"], 30)
    assert isinstance(got, Claimed) and got.task_id == info.id
    data = broker.redis.hget(broker.keys("default").msg, info.id)
    assert broker.complete(got, "w", record=encode_completed(data, result, time.time()), retention=3600)
    return info.id


def test_completed_tab_lists_kept_results(tc: TestClient, broker: RedisBroker, client: Client, r: redis.Redis) -> None:
    ids = [complete_with_retention(broker, client, {"n": i}, {"total": i}) for i in range(3)]
    page = tc.get("/queue?name=default&state=completed").text
    assert 'class="on" data-state="completed"' in page and "kept with retention" in page
    assert all(i in page for i in ids) and "report.build" in page and "{&#34;n&#34;:1}" in page
    assert 'class="row-delete danger"' in page and 'class="row-retry"' not in page
    token = csrf(tc)
    back = "/queue?name=default&state=completed"
    done = tc.post("/actions/delete", data={"csrf": token, "queue": "default", "id": ids[0], "back": back})
    assert f"Deleted completed task {ids[0]}." in done.text
    assert r.get(broker.keys("default").result(ids[0])) is None
    selected = tc.post("/actions/selected", data={"csrf": token, "queue": "default", "verb": "delete",
                                                  "ids": ids[1:], "back": back})  # fmt: skip
    assert "Deleted 2 tasks of the 2 selected." in selected.text
    assert "No completed tasks in default." in tc.get(back).text


def test_completed_tab_pages_with_a_cursor(tc: TestClient, broker: RedisBroker, client: Client) -> None:
    ids = {complete_with_retention(broker, client, i, i) for i in range(60)}
    seen: list[str] = []
    url = "/queue?name=default&state=completed"
    for _ in range(20):
        page = tc.get(url).text
        seen += re.findall(r'class="task-link" href="[^"]*">([0-9a-f]+)</a>', page)
        more = re.search(r'href="([^"]*cursor=[1-9][0-9]*)" rel="next"', page)
        if not more:
            break
        url = more.group(1).replace("&amp;", "&")
    assert set(seen) == ids


def test_completed_listing_is_bounded(broker: RedisBroker, client: Client, r: redis.Redis) -> None:
    complete_with_retention(broker, client, 1, 1)
    pipe = r.pipeline(transaction=False)
    for i in range(30_000):  # other keys of the database: a page stops after a bounded number
        pipe.set(f"{broker.namespace}:unrelated:{i}", 1)
    pipe.execute()
    tasks, cursor, examined = Inspector(r, broker.namespace).completed("default", limit=25)
    assert examined <= 10_000 and (cursor or tasks)


# -- 5. live refresh; Active shows the worker and the running time ---------------------------------


def test_listing_refreshes_itself_with_its_filter(tc: TestClient, client: Client) -> None:
    client.enqueue("mail.send", {"to": "a"}, queue="default")
    page = tc.get("/queue?name=default&state=pending&type=mail.send").text
    live = re.search(r'<div id="listing" data-live hx-get="([^"]*)" hx-trigger="every 15s"', page)  # a search: slower
    assert live and live.group(1) == "/fragments/queue?name=default&amp;state=pending&amp;type=mail.send&amp;page=1"
    client.enqueue("mail.send", {"to": "b"}, queue="default")
    fragment = tc.get(live.group(1).replace("&amp;", "&"))
    assert fragment.status_code == 200 and "<html" not in fragment.text and "<h1" not in fragment.text
    assert fragment.text.count('class="task-link"') == 2 and 'name="csrf"' in fragment.text
    assert tc.get("/fragments/queue?name=nope").status_code == 404
    assert 'hx-trigger="every 3.0s"' in tc.get("/queue?name=default&state=pending").text


def test_active_tab_shows_worker_and_running_time(tc: TestClient, broker: RedisBroker, client: Client) -> None:
    reported = client.enqueue("report.build", None, queue="default").id
    other = client.enqueue("report.build", None, queue="default").id
    assert isinstance(broker.claim("host-a:999:4026531836:r1:0:n1", ["default"], 30), Claimed)
    assert isinstance(broker.claim("host-b:77:4026531836:r2:3:n2", ["default"], 30), Claimed)
    now = time.time()
    children = [{"pid": 4242, "slot": 0, "started": now - 100, "rss": 1, "task_id": reported,
                 "task_type": "report.build", "queue": "default", "task_started": now - 12.5}]  # fmt: skip
    broker.heartbeat_server("host-a:999", {"host": "host-a", "pid": 999, "workers": 1, "active": 1, "busy": 1,
                                           "children": json.dumps(children)}, 30)  # fmt: skip
    page = tc.get("/queue?name=default&state=active").text
    assert "<th>worker</th>" in page and "running for" in page
    row = re.search(rf'<tr data-id="{reported}">(.*?)</tr>', page, re.S)
    assert row and "host-a pid 4242 (slot 0)" in row.group(1) and re.search(r">1[23]s<", row.group(1))
    unreported = re.search(rf'<tr data-id="{other}">(.*?)</tr>', page, re.S)
    assert unreported and "host-b supervisor pid 77 slot 3" in unreported.group(1)
    assert 'name="ids"' not in page, "a running task is its worker's: no selection"


# -- 6. the Redis page; schedules with their last and next runs -------------------------------------


def test_redis_page_shows_version_memory_clients_uptime(tc: TestClient, client: Client, r: redis.Redis) -> None:
    for i in range(50):
        client.enqueue("a", {"blob": "x" * 200, "i": i}, queue="big")
    client.enqueue("a", None, queue="small")
    page = tc.get("/redis")
    assert page.status_code == 200
    info = r.info()
    version = re.search(r'<dd id="redis-version">([^<]*)</dd>', page.text)
    assert version and version.group(1).startswith(info["redis_version"])
    assert re.search(r'<dd id="redis-memory">[0-9.]+[KMG]? ?\(peak', page.text) or "B (peak" in page.text
    clients = re.search(r'<dd id="redis-clients">(\d+) connected', page.text)
    assert clients and int(clients.group(1)) >= 1
    assert re.search(r'<dd id="redis-uptime">[0-9.]+[smhd]', page.text)
    big = re.search(r'<tr data-queue="big">.*?<td class="n">([0-9.]+) KB</td>', page.text)
    small = re.search(r'<tr data-queue="small">.*?<td class="n">([0-9.]+) (K?B)</td>', page.text)
    assert big and small and float(big.group(1)) > (float(small.group(1)) if small.group(2) == "KB" else 0)
    assert 'href="/redis" class="on"' in page.text


def test_schedules_show_next_and_last_runs_and_the_last_tasks_state(
    tc: TestClient, client: Client, r: redis.Redis, namespace: str
) -> None:
    from supervisor.adapters.redis.keys import periodic_key

    waiting = client.enqueue("report.build", None, queue="default").id
    now = time.time()
    records = {
        "report": {"schedule": "*/5 * * * *", "timezone": "UTC", "task_type": "report.build", "queue": "default",
                   "next_run": now + 300, "last_enqueued_at": now - 240, "last_task_id": waiting},
        "cleanup": {"schedule": "@every 1h", "timezone": "UTC", "task_type": "cleanup", "queue": "default",
                    "next_run": now + 1800, "last_enqueued_at": now - 1800, "last_task_id": "periodic:cleanup:1"},
    }  # fmt: skip
    for name, record in records.items():
        r.hset(periodic_key(namespace), name, json.dumps(record))
    page = tc.get("/schedules").text
    rows = dict(re.findall(r"<tr>\s*<td>(\w+)</td>(.*?)</tr>", page, re.S))
    assert re.search("in [45]m", rows["report"]) and re.search("[34]m[0-9]{2}s ago", rows["report"])
    assert '<span class="badge pending">pending</span>' in rows["report"]
    assert '<span class="badge done">done</span>' in rows["cleanup"] and re.search("in (29|30)m", rows["cleanup"])


# -- 8. the theme follows the system setting; the CSP stays as strict -------------------------------


def test_dark_theme_is_css_only_and_the_csp_is_unchanged(tc: TestClient) -> None:
    css = tc.get("/static/dashboard.css").text
    assert "@media (prefers-color-scheme: dark)" in css and "color-scheme: light dark" in css
    rules = css.split("}\n}", 1)[1]  # after the two palettes: colours come from their variables only
    assert not re.findall(r"#[0-9a-fA-F]{3,6}\b", rules)
    page = tc.get("/")
    assert page.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    assert "style=" not in page.text and "<style" not in page.text and " on" + "click=" not in page.text
    js = tc.get("/static/dashboard.js")
    assert js.status_code == 200 and "eval(" not in js.text and "innerHTML" not in js.text
