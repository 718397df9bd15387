"""The dashboard in a real browser: Debian's chromium driven by Playwright.

A real ``supervisor start`` pool and a real ``supervisor dashboard`` process run against a
private redis-server; the test opens the overview and watches the counts move (without a page
reload) while tasks are enqueued and processed, opens an archived task, retries it and sees it
run, pauses and resumes a queue, and saves screenshots under tests/results/ (not committed).

Marked ``browser``: ``pytest -m browser`` runs only these, ``-m 'not browser'`` skips them;
``make test`` runs them (it installs chromium first when /usr/bin/chromium is missing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from supervisor.adapters.redis import RedisBroker
from supervisor.client import Client
from supervisor.config import Settings
from tests.dashboard_helpers import archive
from tests.helpers import wait_for
from tests.pool import ROOT, Pool
from tests.redis_server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULTS = ROOT / "tests" / "results"


@pytest.fixture
def pool(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Pool]:
    with Pool(redis_url, namespace, tmp_path / "pool.log", workers=2, app="tests.apps.dashboard_app:app",
              args=("--queues", "default:1,critical:1")) as p:  # fmt: skip
        yield p


@pytest.fixture
def dashboard_url(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A real ``supervisor dashboard`` process on a free loopback port; killed by pid afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, ASYNQ_NAMESPACE=namespace, ASYNQ_DASHBOARD_REFRESH="1s", PYTHONPATH=str(ROOT))
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "dashboard", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
        stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
        try:
            return httpx.get(url + "/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=20, interval=0.1, what="the dashboard to answer")
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def test_operator_session_in_chromium(
    pool: Pool, dashboard_url: str, settings: Settings, r: redis.Redis, namespace: str
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    RESULTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p, Client(settings=settings) as client:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            errors: list[str] = []  # console errors, and responses >= 400 other than the expected 404s
            page.on(
                "console", lambda m: errors.append(m.text) if m.type == "error" and "status of" not in m.text else None
            )
            expected_404: set[str] = set()
            page.on("response", lambda resp: errors.append(f"{resp.status} {resp.url}")
                    if resp.status >= 400 and resp.url not in expected_404 else None)  # fmt: skip
            page.on("dialog", lambda d: d.accept())

            # -- overview: counts move while tasks are enqueued and processed, no reload --------
            page.goto(dashboard_url + "/")
            expect(page.locator("h1")).to_have_text("Overview")
            page.evaluate("window.__sameDocument = 42")
            for i in range(3):  # waiting for later: the overview shows a second queue with scheduled tasks
                client.enqueue("work", {"report": i}, queue="critical", process_in="1h")
            ids = [client.enqueue("work", {"n": i}, queue="default").id for i in range(60)]
            succeeded = page.locator('tr[data-queue="default"] td[data-count="succeeded"]')
            seen: list[str] = []

            def all_succeeded() -> bool:
                if succeeded.count():
                    text = succeeded.inner_text()
                    if not seen or seen[-1] != text:
                        seen.append(text)
                return bool(seen) and seen[-1] == "60"

            wait_for(all_succeeded, timeout=60, interval=0.1, what=f"60 succeeded on the overview (seen {seen})")
            assert len(seen) >= 2, f"the count did not visibly move: {seen}"
            assert page.evaluate("window.__sameDocument") == 42, "the page was reloaded"
            assert all(pool.done(t) == 1 for t in ids)
            expect(page.locator('tr[data-queue="default"] td[data-state="pending"]')).to_have_text("0")
            page.screenshot(path=str(RESULTS / "dashboard-overview.png"))

            # -- an archived task: open it, read its error, retry it, see it run ------------------
            flaky = client.enqueue("flaky", {"order": 7, "note": "<script>document.title='x'</script>"}).id
            archived = page.locator('tr[data-queue="default"] td[data-state="archived"] a')
            expect(archived).to_have_text("1", timeout=20_000)
            archived.click()
            expect(page.locator("h1")).to_contain_text("Queue default")
            page.locator("a.task-link", has_text=flaky).click()
            expect(page.locator("#task-state")).to_have_text("archived")
            expect(page.locator("#last-error")).to_contain_text("refused until the test allows it: <b>not bold</b>")
            assert page.locator("#last-error b").count() == 0, "the error's markup must render as text"
            expect(page.locator("#payload")).to_contain_text("<script>document.title='x'</script>")
            assert page.title() != "x"
            page.screenshot(path=str(RESULTS / "dashboard-task.png"), full_page=True)
            r.set(f"{namespace}:test:allow", "1")
            expected_404.add(f"{dashboard_url}/task?queue=default&id={flaky}")  # once run, it is gone
            page.locator("#retry").click()
            wait_for(lambda: pool.done(flaky) == 1, timeout=20, what="the retried task to run")
            page.goto(f"{dashboard_url}/task?queue=default&id={flaky}")
            expect(page.locator("#error")).to_contain_text("no task")  # completed without retention: gone

            # -- pause and resume a queue ------------------------------------------------------------
            page.goto(dashboard_url + "/queue?name=default")
            page.locator("#toggle-pause").click()
            expect(page.locator("#queue-state")).to_have_text("paused")
            assert r.exists(f"{namespace}:{{default}}:paused")
            held = client.enqueue("work", {"held": True}, queue="default").id
            page.goto(dashboard_url + "/queue?name=default&state=pending")
            expect(page.locator("a.task-link", has_text=held)).to_be_visible()
            time.sleep(1.0)  # a window in which an unpaused pool would certainly have run it
            assert pool.done(held) == 0, "a paused queue's task ran"
            page.screenshot(path=str(RESULTS / "dashboard-paused.png"))
            page.locator("#toggle-pause").click()
            expect(page.locator("#queue-state")).to_have_text("not paused")
            wait_for(lambda: pool.done(held) == 1, timeout=20, what="the task of the resumed queue to run")

            # -- bulk retry (htmx: confirmation, CSRF header, progress fragment) -----------------------
            r.delete(f"{namespace}:test:allow")
            batch = [client.enqueue("flaky", {"batch": i}).id for i in range(3)]
            wait_for(lambda: r.zcard(f"{namespace}:{{default}}:archived") == 3, timeout=20, what="3 archived")
            page.goto(dashboard_url + "/queue?name=default&state=archived")
            confirmations: list[str] = []
            page.once("dialog", lambda d: confirmations.append(d.message))  # the auto-accept still runs
            r.set(f"{namespace}:test:allow", "1")
            page.locator("#retry-all").click()
            expect(page.locator("#bulk-done")).to_contain_text("Retried 3 archived tasks of default")
            assert confirmations == ["Retry every archived task of default (3)?"]
            wait_for(lambda: all(pool.done(t) == 1 for t in batch), timeout=20, what="the bulk-retried tasks to run")

            # -- delete one task (htmx post from the task page's form, after a confirmation) -------------
            doomed = client.enqueue("work", {"doomed": True}, queue="critical", process_in="1h").id
            page.goto(f"{dashboard_url}/task?queue=critical&id={doomed}")
            expect(page.locator("#retry")).to_have_text("Run now")
            page.locator("#delete").click()
            expect(page.locator("h1")).to_contain_text("Queue critical")  # HX-Redirect to the queue page
            assert r.hget(f"{namespace}:{{critical}}:state", doomed) is None

            # -- supervisors: the pool, its workers ----------------------------------------------------
            page.goto(dashboard_url + "/supervisors")
            supervisor = page.locator(f'section.supervisor[data-pid="{pool.pid}"]')
            expect(supervisor).to_be_visible()
            expect(supervisor.locator("table.workers tbody tr")).to_have_count(2)
            page.screenshot(path=str(RESULTS / "dashboard-supervisors.png"))

            page.goto(dashboard_url + "/")
            expect(page.locator('tr[data-queue="default"] td[data-count="succeeded"]')).to_have_text("65")
            expect(page.locator('tr[data-queue="default"] td[data-count="failed"]')).to_have_text("4")
            expect(page.locator('tr[data-queue="critical"] td[data-state="scheduled"]')).to_have_text("3")
            assert int(page.locator('tr[data-queue="default"] td[data-count="succeeded-minute"]').inner_text()) > 0
            page.screenshot(path=str(RESULTS / "dashboard-overview-final.png"))
            assert not errors, f"browser console errors: {errors}"
        finally:
            browser.close()


def open_browser(p: Any) -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def watched_page(browser: Any, errors: list[str], dialogs: list[str]) -> Any:
    """A page that records console errors (CSP refusals among them), failed responses and dialogs."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda resp: errors.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None)

    def accept(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", accept)
    return page


def test_row_and_selection_actions_in_chromium(dashboard_url: str, broker: RedisBroker, r: redis.Redis) -> None:
    from playwright.sync_api import expect, sync_playwright

    ids = [archive(broker, "default", {"n": i}) for i in range(5)]
    k = broker.keys("default")
    errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = watched_page(browser, errors, dialogs)
            page.goto(dashboard_url + "/queue?name=default&state=archived")
            # one row: retry it, after a confirmation, and come back to the same tab with a message
            page.locator(f'tr[data-id="{ids[0]}"] button.row-retry').click()
            expect(page.locator("#flash")).to_have_text(f"Task {ids[0]} is pending again: it runs next.")
            assert dialogs == [f"Retry task {ids[0]} now?"]
            expect(page.locator('nav.tabs a[data-state="archived"]')).to_have_class("on")
            expect(page.locator(f'tr[data-id="{ids[0]}"]')).to_have_count(0)
            assert r.hget(k.state, ids[0]) == b"pending"
            # tick two rows: the count and the confirmation follow; delete them
            expect(page.locator("#delete-selected")).to_be_disabled()
            page.locator(f'tr[data-id="{ids[1]}"] input[name="ids"]').check()
            page.locator(f'tr[data-id="{ids[2]}"] input[name="ids"]').check()
            expect(page.locator("#selected-count")).to_have_text("2 selected")
            page.locator("#delete-selected").click()
            expect(page.locator("#flash")).to_have_text("Deleted 2 tasks of the 2 selected.")
            assert dialogs[-1] == "Delete the 2 selected tasks? This cannot be undone."
            assert r.zcard(k.archived) == 2 and r.hget(k.state, ids[1]) is None
            # select all, retry them
            page.locator("#select-all").check()
            expect(page.locator("#selected-count")).to_have_text("2 selected")
            page.locator("#retry-selected").click()
            expect(page.locator("#flash")).to_have_text("Retried 2 tasks of the 2 selected.")
            assert r.zcard(k.archived) == 0 and r.llen(k.pending) == 3
            # pause from the Pending tab: a message, and the tab stays
            page.goto(dashboard_url + "/queue?name=default&state=pending")
            page.locator("#toggle-pause").click()
            expect(page.locator("#flash")).to_contain_text("Paused queue default")
            expect(page.locator('nav.tabs a[data-state="pending"]')).to_have_class("on")
            page.locator("#toggle-pause").click()
            expect(page.locator("#flash")).to_contain_text("Resumed queue default")
            expect(page.locator("#queue-state")).to_have_text("not paused")
            assert not errors, f"browser console errors: {errors}"
        finally:
            browser.close()


def test_filter_search_and_completed_tab_in_chromium(
    dashboard_url: str, broker: RedisBroker, settings: Settings, r: redis.Redis
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from supervisor.core.ports import Claimed
    from supervisor.core.task import encode_completed

    with Client(settings=settings) as client:
        for i in range(3):
            client.enqueue("mail.send", {"to": f"user{i}@example.com"}, queue="default")
            client.enqueue("report.build", {"month": i}, queue="default")
        kept = client.enqueue("invoice.render", {"order": 7}, queue="kept", retention="1h").id
    got = broker.claim("w", ["kept"], 30)
    assert isinstance(got, Claimed)
    record = encode_completed(r.hget(broker.keys("kept").msg, kept), {"pdf": "inv-7.pdf"}, time.time())
    assert broker.complete(got, "w", record=record, retention=3600)
    errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = watched_page(browser, errors, dialogs)
            page.goto(dashboard_url + "/queue?name=default&state=pending")
            expect(page.locator("a.task-link")).to_have_count(6)
            page.locator('#filter input[name="type"]').fill("mail.send")
            page.locator("#apply-filter").click()
            expect(page.locator("a.task-link")).to_have_count(3)
            expect(page.locator("#search-scope")).to_contain_text("3 matches: searched all 6 pending tasks")
            page.locator('#filter input[name="q"]').fill("user1@")
            page.locator('#filter input[name="q"]').press("Enter")
            expect(page.locator("a.task-link")).to_have_count(1)
            expect(page.locator("code.preview")).to_contain_text("user1@example.com")
            page.locator("#clear-filter").click()
            expect(page.locator("a.task-link")).to_have_count(6)
            # the completed tab: the kept task, its result on its page, deleted from its row
            page.goto(dashboard_url + "/queue?name=kept&state=pending")
            page.locator('nav.tabs a[data-state="completed"]').click()
            expect(page.locator("a.task-link", has_text=kept)).to_be_visible()
            page.locator("a.task-link", has_text=kept).click()
            expect(page.locator("#result")).to_contain_text("inv-7.pdf")
            page.go_back()
            page.locator(f'tr[data-id="{kept}"] button.row-delete').click()
            expect(page.locator("#flash")).to_have_text(f"Deleted completed task {kept}.")
            expect(page.locator('nav.tabs a[data-state="completed"]')).to_have_class("on")
            assert dialogs == [f"Delete completed task {kept}? This cannot be undone."]
            assert r.get(broker.keys("kept").result(kept)) is None
            assert not errors, f"browser console errors: {errors}"
        finally:
            browser.close()


def test_live_listing_and_active_tab_in_chromium(
    pool: Pool, dashboard_url: str, settings: Settings, r: redis.Redis, namespace: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p, Client(settings=settings) as client:
        browser = open_browser(p)
        try:
            page = watched_page(browser, errors, dialogs)
            # Active: which worker runs the task, for how long, and the listing follows without a reload
            client.enqueue("work", None, queue="default")  # the queue exists before the page opens
            wait_for(lambda: r.exists(f"{namespace}:{{default}}:processed"), timeout=20, what="a first task")
            page.goto(dashboard_url + "/queue?name=default&state=active")
            page.evaluate("window.__sameDocument = 42")
            held = client.enqueue("hold", None, queue="default").id
            row = page.locator(f'tr[data-id="{held}"]')
            expect(row).to_be_visible(timeout=20_000)
            worker = row.locator("td.worker")
            wait_for(lambda: any(f" pid {c} " in worker.inner_text() for c in pool.live_children()), timeout=20,
                     interval=0.1, what="the child running the task, as its supervisor reports it")  # fmt: skip
            first = row.locator("td.running-for").inner_text()
            assert first != "-"
            wait_for(lambda: row.locator("td.running-for").inner_text() != first, timeout=20, interval=0.1,
                     what="the running time to move")  # fmt: skip
            r.set(f"{namespace}:test:release", "1")
            expect(row).to_have_count(0, timeout=20_000)
            assert page.evaluate("window.__sameDocument") == 42, "the page was reloaded"
            # Archived: a new task shows up by itself, but not while rows are ticked
            client.enqueue("flaky", {"first": True}, queue="default")
            page.goto(dashboard_url + "/queue?name=default&state=archived")
            expect(page.locator("a.task-link")).to_have_count(1, timeout=20_000)
            page.evaluate("window.__polls = 0; document.addEventListener('htmx:beforeRequest', () => window.__polls++)")
            page.locator('#tasks input[name="ids"]').first.check()
            client.enqueue("flaky", {"second": True}, queue="default")
            wait_for(lambda: r.zcard(f"{namespace}:{{default}}:archived") == 2, timeout=20, what="2 archived")
            wait_for(lambda: page.evaluate("window.__polls") >= 3, timeout=20, interval=0.1, what="3 polls")
            expect(page.locator("a.task-link")).to_have_count(1)  # held back: the tick is kept
            expect(page.locator('#tasks input[name="ids"]').first).to_be_checked()
            page.locator('#tasks input[name="ids"]').first.uncheck()
            expect(page.locator("a.task-link")).to_have_count(2, timeout=20_000)
            assert not errors, f"browser console errors: {errors}"
        finally:
            browser.close()


def seed_a_day(broker: RedisBroker, settings: Settings, r: redis.Redis) -> None:
    """Queues with tasks in every state, errors, a kept result and a day of history, for screenshots."""
    from supervisor.adapters.redis.inspector import Inspector
    from supervisor.core.inspection import QueueStats

    errors = ["ConnectionError: smtp.example.com:587 refused the connection after 3 attempts",
              "ValueError: invoice 1042 has no customer e-mail address",
              "TimeoutError: the upstream report service did not answer within 30 s; the whole report will be "
              "rebuilt on the next attempt, with the same parameters and the same output file"]  # fmt: skip
    for i in range(7):
        archive(broker, "default", {"to": f"user{i}@example.com", "template": "welcome"}, error=errors[i % 3])
    with Client(settings=settings) as client:
        for i in range(40):
            client.enqueue("email:send", {"to": f"user{i}@example.com"}, queue="default")
        for i in range(12):
            client.enqueue("report:build", {"month": i + 1}, queue="critical", process_in="1h")
        client.enqueue("image:resize", {"id": 7}, queue="low")
    insp = Inspector(r, broker.namespace)
    now = time.time()
    for i in range(120):
        at = now - (120 - i) * 60
        wave = int(30 + 25 * ((i % 40) / 40))
        insp.record_history([QueueStats("default", wave, 2, 0, 1, 7, 1000 + 48 * i, 7 + i // 20, paused=False,
                                        oldest_pending_at=at - wave / 10)], at)  # fmt: skip
    for day in range(8):
        insp.record_history([QueueStats("default", 0, 0, 0, 0, 0, 20_000 * day + 900 * day * day, 40 * day,
                                        paused=False)], now - (8 - day) * 86400)  # fmt: skip


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_theme_follows_the_system_setting(
    dashboard_url: str, broker: RedisBroker, settings: Settings, r: redis.Redis, scheme: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    seed_a_day(broker, settings, r)
    RESULTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    background = {"light": "rgb(247, 248, 249)", "dark": "rgb(13, 17, 23)"}[scheme]
    with sync_playwright() as p:
        browser = open_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            for name, path in [("overview", "/"), ("queue", "/queue?name=default&state=archived"),
                               ("history", "/history?name=default&span=6h"), ("redis", "/redis"),
                               ("task", None)]:  # fmt: skip
                if path is None:
                    page.goto(dashboard_url + "/queue?name=default&state=archived")
                    page.locator("a.task-link").first.click()
                    page.wait_for_url("**/task?**")
                    page.wait_for_load_state()
                else:
                    page.goto(dashboard_url + path)
                assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background, name
                if name == "history":
                    expect(page.locator("#charts svg")).to_have_count(4)
                    expect(page.locator("#charts polyline.pending")).to_have_count(1)
                if name == "redis":
                    expect(page.locator("#redis-version")).not_to_be_empty()
                    expect(page.locator('#queue-memory tr[data-queue="default"]')).to_be_visible()
                panel = "rgb(255, 255, 255)" if scheme == "light" else "rgb(22, 27, 34)"
                assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") == panel
                page.screenshot(path=str(RESULTS / f"dashboard-{name}-{scheme}.png"), full_page=True)
            # the picture in the README (docs/dashboard.png): a listing after an action, rows ticked
            page.goto(dashboard_url + "/queue?name=default&state=archived")
            page.once("dialog", lambda d: d.accept())
            page.locator("button.row-retry").first.click()
            page.locator("#flash").wait_for()
            for box in page.locator('#tasks input[name="ids"]').all()[:2]:
                box.check()
            page.screenshot(path=str(RESULTS / f"dashboard-readme-{scheme}.png"))
            assert not errors, f"browser console errors (a CSP refusal among them?): {errors}"
        finally:
            browser.close()
