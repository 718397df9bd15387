"""Workflows through real supervisors (``supervisor start``) on a private Redis: results passed
along a chain, a group inside a chain, the failure policies, and a chord whose callback runs once
with every result while children and a parent are SIGKILLed at random moments."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from supervisor import AsyncClient, Client, chain, chord, group, task
from supervisor.cli import main
from supervisor.config import Settings
from supervisor.flows import FlowView
from tests.helpers import wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(120)
APP = "tests.apps.flows_app:app"


def callbacks(r: redis.Redis, namespace: str) -> list[list[Any]]:
    return [json.loads(x) for x in r.lrange(f"{namespace}:test:callbacks", 0, -1)]


def finished(client: Client, flow_id: str) -> FlowView | None:
    view = client.flow(flow_id)
    return view if view is not None and view.finished == view.total else None


def progressed(client: Client, flow_id: str, before: int) -> bool:
    view = client.flow(flow_id)
    return view is not None and view.finished > before


def test_chain_with_a_group_inside_passes_results_along(
    client: Client, pool_factory: Callable[..., Pool], r: redis.Redis, namespace: str, redis_url: str
) -> None:
    flow = chain(task("add", 1), task("add"), group(task("square"), task("add")), task("collect"))
    with pool_factory(app=APP, workers=1):
        flow_id = client.enqueue_flow(flow)
        view = wait_for(lambda: finished(client, flow_id), timeout=30)
    assert view.state == "succeeded"
    assert [m.result for m in view.members] == [2, 3, 9, 4, "collected"]
    assert [payload for _, payload in callbacks(r, namespace)] == [[9, 4]]
    runner = CliRunner(env={"REDIS_URL": redis_url,
                            "ASYNQ_NAMESPACE": namespace})  # fmt: skip
    shown = runner.invoke(main, ["flows", "show", flow_id, "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["state"] == "succeeded" and data["finished"] == 5
    steps = data["tree"]["chain"]
    assert [s["result"] for s in steps[:2]] == [2, 3] and steps[3]["type"] == "collect"
    assert [m["result"] for m in steps[2]["group"]] == [9, 4]
    text = runner.invoke(main, ["flows", "show", flow_id], catch_exceptions=False).output
    assert "group:" in text and "collect" in text
    missing = runner.invoke(main, ["flows", "show", "nosuchflow"])
    assert missing.exit_code == 1 and "no flow nosuchflow" in missing.output


def test_fail_policy_skips_the_callback_and_ignore_runs_it_with_the_failure(
    client: Client, pool_factory: Callable[..., Pool], r: redis.Redis, namespace: str
) -> None:
    with pool_factory(app=APP, workers=1):
        failed = client.enqueue_flow(chord([task("add", 1), task("fail")], task("collect")))
        ignored = client.enqueue_flow(chord([task("add", 1), task("fail")], task("collect")), policy="ignore")
        cont = client.enqueue_flow(chain(task("fail"), task("collect")), policy="continue")
        views = [wait_for(lambda f=f: finished(client, f), timeout=30) for f in (failed, ignored, cont)]
    assert [v.state for v in views] == ["failed", "completed_with_failures", "completed_with_failures"]
    assert views[0].members[2].state == "canceled"
    got = sorted((json.dumps(p) for _, p in callbacks(r, namespace)), key=len)
    assert len(got) == 2, got  # the ignore chord's callback and the continued chain's next step
    chained, chord_payload = json.loads(got[0]), json.loads(got[1])
    for marker in (chained, chord_payload[1]):
        assert marker["flow_failure"]["state"] == "failed" and "always fails" in marker["flow_failure"]["error"]
    assert chord_payload[0] == 2


def test_a_failing_member_cancels_the_rest_of_its_group_and_the_callback(
    client: Client, pool_factory: Callable[..., Pool], r: redis.Redis, namespace: str
) -> None:
    """A group of 20 slow members, one failing at once: those not started are canceled (never
    run), those running are stopped or finish, the callback never runs, the flow shows it all."""
    members = [task("fail")] + [task("slow", i) for i in range(19)]
    with pool_factory(app=APP, workers=1):
        flow_id = client.enqueue_flow(chord(members, task("collect")))
        view = wait_for(lambda: finished(client, flow_id), timeout=30)
    started = {x.decode() for x in r.lrange(f"{namespace}:test:started", 0, -1)}
    states = [m.state for m in view.members]
    assert view.state == "failed" and states[0] == "failed" and states[-1] == "canceled", states
    assert callbacks(r, namespace) == []
    for m in view.members[1:-1]:
        assert m.state in (("succeeded", "canceled") if m.task_id in started else ("canceled",)), (m, started)
    assert len(started) < 10 and states.count("canceled") >= 19 - len(started) + 1, (states, started)
    assert view.failures == 1 and view.finished == view.total == 21


def test_chord_callback_runs_once_with_every_result_through_kills(
    client: Client, pool_factory: Callable[..., Pool], r: redis.Redis, namespace: str
) -> None:
    """3 runs of a 300-member chord; children SIGKILLed at random, and once the whole supervisor."""
    size = 300
    rng = random.Random()
    pool = pool_factory(app=APP, workers=2).start()
    total_kills = 0
    try:
        for run in range(3):
            flow_id = client.enqueue_flow(chord([task("member", i) for i in range(size)], task("collect")))
            kill_parent_at = rng.randrange(20, size - 50) if run == 1 else None
            kills = 0
            while True:
                view = client.flow(flow_id)
                assert view is not None
                if view.finished >= size:
                    break
                if kill_parent_at is not None and view.finished >= kill_parent_at:
                    pool.cleanup()  # the parent and every child, SIGKILL by pid
                    pool = pool_factory(app=APP, workers=2).start()
                    kill_parent_at = None
                elif kills < 4 and rng.random() < 0.3 and (children := pool.live_children()):
                    os.kill(rng.choice(children), signal.SIGKILL)
                    kills += 1
                wait_for(lambda f=flow_id, v=view.finished: progressed(client, f, v), timeout=30)
            total_kills += kills + (run == 1)
            assert kill_parent_at is None
            view = wait_for(lambda f=flow_id: finished(client, f), timeout=30)
            assert view.state == "succeeded"
            runs = [p for task_id, p in callbacks(r, namespace) if task_id.startswith(flow_id)]
            assert runs == [list(range(size))], f"run {run}: {len(runs)} callback runs"
        assert total_kills >= 2, "the kills must land while members run"
    finally:
        pool.cleanup()


def test_async_client_enqueues_and_reads_a_flow(settings: Settings) -> None:
    async def go() -> None:
        async with AsyncClient(settings=settings) as ac:
            flow_id = await ac.enqueue_flow(chain(task("add", 1, queue="aq"), task("add", queue="aq")), policy="ignore")
            view = await ac.flow(flow_id)
            assert view is not None and view.policy == "ignore" and view.state == "running"
            assert [m.state for m in view.members] == ["released", "waiting"]
            assert await ac.progress(view.members[0].task_id, queue="aq") is None
            assert await ac.flow("nosuchflow") is None

    asyncio.run(go())
