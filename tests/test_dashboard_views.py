"""The dashboard's listings and actions added for issue 24 (Starlette's TestClient, a private redis-server).

The error column, per-row and selected-rows actions with their flash messages, filters and
bounded searches, the completed tab, the Active tab's worker and running time, the Redis page,
the queue history and the theme. The pages and actions of before are in test_dashboard_http.py.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.inspector import Inspector
from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.ports import Claimed
from supervisor.dashboard import present
from supervisor.dashboard.settings import DashboardSettings
from tests.dashboard_helpers import archive

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
    for evil in ("https://evil.example/", "//evil.example/queue", "/\\evil.example", "/actions/pause", "javascript:x"):
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
