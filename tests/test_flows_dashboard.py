"""The dashboard's flow page and a task's progress on its page (Starlette's TestClient, private Redis)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import msgspec
import pytest

from supervisor import Client, chord, task
from supervisor.adapters.redis.broker import RedisBroker
from supervisor.config import Settings
from supervisor.core.progress import encode_progress
from supervisor.core.task import decode_message
from supervisor.dashboard.settings import DashboardSettings
from supervisor.flows import Flows

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    from supervisor.dashboard.app import create_app

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, DashboardSettings())) as c:
        yield c


def test_flow_page_shows_the_tree_with_each_members_state(
    tc: TestClient, settings: Settings, broker: RedisBroker
) -> None:
    with Client(settings=settings) as client:
        members = [task("thumb", 1, queue="fp"), task("thumb", 2, queue="fp")]
        flow_id = client.enqueue_flow(chord(members, task("album", queue="fp"), policy="ignore"))
    flows = Flows(broker, broker.flow_store())
    _, claimed = broker.claim_many("w", ["fp"], 30.0, 1)
    assert isinstance(claimed, list) and claimed[0].data is not None
    first = decode_message(claimed[0].data)
    flows.member_succeeded(first, msgspec.msgpack.encode("<b>one</b>"))
    page = tc.get(f"/flow?id={flow_id}")
    assert page.status_code == 200
    html = page.text
    assert 'id="flow-state">running' in html and "1 of 3" in html
    assert html.count('class="badge succeeded"') == 1 and html.count('class="badge waiting"') == 1
    assert "&lt;b&gt;one&lt;/b&gt;" in html and "<b>one</b>" not in html  # results are escaped
    assert f"id={first.id}" in html and "album" in html
    assert "group <small>policy ignore</small>" in html and html.count("policy ignore") == 1  # the group's own
    member_page = tc.get(f"/task?queue=fp&id={flow_id}.1").text
    assert f'href="/flow?id={flow_id}" id="flow-link"' in member_page and "(member 1)" in member_page
    assert tc.get("/flow?id=nosuchflow").status_code == 404
    assert tc.get("/flow").status_code == 404


def test_task_page_shows_its_progress(tc: TestClient, settings: Settings, broker: RedisBroker) -> None:
    with Client(settings=settings) as client:
        info = client.enqueue("long", 1)
    broker.save_progress([("default", info.id, encode_progress(0.42, "rows", {"done": 42}, 1.0))], 60)
    html = tc.get(f"/task?queue=default&id={info.id}").text
    assert 'id="progress"' in html and "42%" in html and "rows" in html
