"""``supervisor flows show ID``: a workflow's state and its tree, each member with its state."""

from __future__ import annotations

import json
from typing import Any

import click

from supervisor.cli.common import broker_errors, connection_options, emit, json_option, settings_from
from supervisor.cli.output import state


@click.group()
def flows() -> None:
    """Look at workflows (chains, groups, chords)."""


@flows.command("show")
@click.argument("flow_id")
@json_option
@connection_options
def show_flow(flow_id: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """A flow's state, counts and tree, each member with its task id, state and result."""
    from supervisor.flows import Flows
    from supervisor.wiring import make_broker

    settings = settings_from(env_file, {"redis_url": redis_url})
    with broker_errors(settings):
        broker = make_broker(settings, client_name="supervisor-cli")
        try:
            view = Flows(broker, broker.flow_store()).view(flow_id)
        finally:
            broker.close()
    if view is None:
        raise click.ClickException(f"no flow {flow_id} (never enqueued, or finished and past its retention)")
    data = view.as_dict()
    emit(as_json, data, lambda: render_flow(data))


def render_flow(data: dict[str, Any]) -> str:
    lines = [
        f"flow {data['id']}: {state(data['state'])}  policy={data['policy']}  "
        f"finished {data['finished']}/{data['total']}  failures {data['failures']}"
    ]

    def walk(node: dict[str, Any], depth: int) -> None:
        pad = "  " * depth
        if "task" in node:
            result = json.dumps(node["result"], default=str)
            lines.append(
                f"{pad}- {node['type']} [{node['queue']}] {node['task']}: {state(node['state'])}  {result:.80}"
            )
            return
        kind = next(iter(node))
        lines.append(f"{pad}{kind} (policy {node['policy']}):" if node.get("policy") else f"{pad}{kind}:")
        for child in node[kind]:
            walk(child, depth + 1)

    walk(data["tree"], 1)
    return "\n".join(lines)
