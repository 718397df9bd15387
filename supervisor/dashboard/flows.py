"""The dashboard's workflow page (``/flow?id=``): a flow's state and its tree, each member with
its state, linked to its task page; and the progress a task reported, for the task page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from supervisor.core.progress import ProgressStore, decode_progress
from supervisor.flows import Flows

_T = TypeVar("_T")


class Dashboard(Protocol):
    """What the pages use of the dashboard (app.py's Dashboard)."""

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse: ...

    def error(self, request: Request, status: int, message: str) -> HTMLResponse: ...


class FlowPages:
    """Pages over the write side's reads (a flow store and the progress store), which the
    operator's Inspection does not cover."""

    def __init__(self, dashboard: Dashboard, flows: Flows | None, progress: ProgressStore | None) -> None:
        self.dashboard = dashboard
        self.flows = flows
        self.progress_store = progress

    async def flow(self, request: Request) -> Response:
        d = self.dashboard
        flow_id = request.query_params.get("id", "").strip()
        if self.flows is None:
            return d.error(request, 404, "this dashboard was built without a flow store")
        if not flow_id:
            return d.error(request, 404, "give a flow id: /flow?id=...")
        view = await d.call(self.flows.view, flow_id)
        if view is None:
            return d.error(request, 404, f"no flow {flow_id} (never enqueued, or finished and past its retention)")
        return d.render(request, "flow.html", title=f"Flow {flow_id}", flow=view.as_dict())

    def progress(self, queue: str, task_id: str) -> dict[str, Any] | None:
        """A task's last reported progress for its page (None when none, or no store)."""
        if self.progress_store is None:
            return None
        record = self.progress_store.progress_record(queue, task_id)
        if record is None:
            return None
        try:
            return decode_progress(record).to_dict()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return {"fraction": 0.0, "note": f"unreadable progress record: {exc}", "data": None, "at": 0.0}
