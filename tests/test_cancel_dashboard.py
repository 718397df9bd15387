"""The dashboard's Cancel action and its Canceled / Expired tabs (a real Redis, Starlette's client)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest

from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.ports import Claimed
from tests.brokers import LEASE

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note about httpx vs httpx2 in its test client
    from starlette.testclient import TestClient

    from supervisor.adapters.redis import RedisBroker
    from supervisor.dashboard.app import create_app
    from supervisor.dashboard.settings import DashboardSettings

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]
TOKEN_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, DashboardSettings(page_size=25))) as c:
        yield c


def csrf(tc: TestClient, page: str) -> str:
    match = TOKEN_RE.search(tc.get(page).text)
    assert match
    return match.group(1)


def test_cancel_a_pending_task_from_its_row(tc: TestClient, client: Client) -> None:
    info = client.enqueue("a", 1, queue="default")
    listing = tc.get("/queue?name=default&state=pending")
    assert 'class="row-cancel danger"' in listing.text and f"Cancel pending task {info.id}?" in listing.text
    token = csrf(tc, "/queue?name=default&state=pending")
    done = tc.post(
        "/actions/cancel", data={"queue": "default", "id": info.id, "back": "/queue?name=default&state=pending"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )  # fmt: skip
    assert done.status_code == 200 and done.headers["hx-redirect"] == "/queue?name=default&state=pending"
    assert f"Canceled task {info.id}: it will not run." in tc.get(done.headers["hx-redirect"]).text  # the flash
    page = tc.get("/queue?name=default&state=canceled")
    assert info.id in page.text and "Canceled" in page.text and "Expired" in page.text
    again = tc.post("/actions/cancel", data={"csrf": token, "queue": "default", "id": info.id}, follow_redirects=True)
    assert "had already ended (canceled)" in again.text
    assert tc.post("/actions/cancel", data={"csrf": token, "queue": "default", "id": "nope"}).status_code == 404
    assert tc.post("/actions/cancel", data={"queue": "default", "id": info.id}).status_code == 403  # no CSRF token


def test_cancel_a_running_task_from_the_active_tab(tc: TestClient, client: Client, broker: RedisBroker) -> None:
    info = client.enqueue("a", 1, queue="default")
    _, got = broker.claim_many("w1", ["default"], LEASE)
    assert isinstance(got, list) and got[0] == Claimed("default", info.id, got[0].data)
    page = tc.get("/queue?name=default&state=active")
    assert f"Cancel active task {info.id}?" in page.text
    token = csrf(tc, "/queue?name=default&state=active")
    done = tc.post("/actions/cancel", data={"csrf": token, "queue": "default", "id": info.id}, follow_redirects=True)
    assert f"Canceling task {info.id}: its worker (w1) stops it." in done.text
    assert broker.canceled_among("default", [info.id]) == [info.id]
