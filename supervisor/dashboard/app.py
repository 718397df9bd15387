"""The dashboard as an ASGI application: ``create_app()`` serves it alone or mounted in your app.

Every read and every action goes through the read-side port :class:`~supervisor.core.inspection.Inspection`,
the same code as the ``supervisor`` CLI, so there is one implementation of the key layout.
Redis calls are blocking (redis-py), so handlers run them in Starlette's thread pool.

Mount it under a prefix in your own Starlette/FastAPI app::

    from starlette.routing import Mount
    from supervisor.dashboard import create_app, DashboardSettings
    routes = [Mount("/jobs", app=create_app(dashboard=DashboardSettings(username="ops", password="...")))]
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from supervisor.config import Settings, load_settings
from supervisor.core.aggregation import GroupStore
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.flow import LimitStore
from supervisor.core.heartbeat import supervisor_record
from supervisor.core.inspection import WAITING, Inspection, Sample, UnknownQueue, UnknownTask
from supervisor.core.progress import ProgressStore
from supervisor.dashboard import charts, listing, present
from supervisor.dashboard.actions import BULK_STEP, Actions
from supervisor.dashboard.flows import FlowPages
from supervisor.dashboard.forms import FLASH_COOKIE, Form, read_flash, set_flash
from supervisor.dashboard.limits_page import LimitsPage
from supervisor.dashboard.security import CSRF_FIELD, CSRF_HEADER, Csrf, SecurityMiddleware
from supervisor.dashboard.settings import DashboardSettings
from supervisor.flows import Flows

_T = TypeVar("_T")

#: Largest form body accepted (a few short fields, or the ids of one page's selected rows).
MAX_FORM_BYTES = 128 * 1024
#: The spans the history page shows, in minutes.
HISTORY_SPANS = {"1h": 60, "6h": 360, "24h": 1440}


class Dashboard:
    """The handlers, with the Inspector, templates and CSRF signer they share."""

    def __init__(self, inspector: Inspection, options: DashboardSettings, groups: GroupStore | None = None) -> None:
        self.inspector = inspector
        self.options = options
        #: Task aggregation's waiting groups, shown on the overview (None: not shown).
        self.groups = groups
        self.csrf = Csrf(options.secret)
        #: The workflow page and task progress (dashboard/flows.py), set by create_app.
        self.flow_pages: FlowPages | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("supervisor.dashboard", "templates"),
            autoescape=True,  # every value is escaped unless a template says otherwise (none does)
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals["clip_at"] = present.ERROR_LIMIT
        self.templates.filters.update(
            when=present.when,
            ago=present.ago,
            clip=present.clip,
            mb=present.megabytes,
            size=present.size,
            duration=present.duration,
            q=_quote,
        )

    # -- plumbing -----------------------------------------------------------------------------------

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await run_in_threadpool(fn, *args)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        nonce, new = self.csrf.nonce(request)
        page = not template.startswith("_")  # a fragment (a live refresh) leaves the flash to its page
        flash = read_flash(request) if page else None
        html = self.templates.get_template(template).render(
            base=base,
            csrf=self.csrf.token_for(nonce),
            csrf_field=CSRF_FIELD,
            refresh=self.options.refresh,
            now=time.time(),
            path=request.url.path,
            url=request.url.path + ("?" + request.url.query if request.url.query else ""),
            flash=flash,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if new:
            self.csrf.set_cookie(response, nonce, base + "/")
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=base + "/")
        return response

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, title="Error", message=message)

    def redirect(self, request: Request, path: str, *, flash: str = "", **query: Any) -> Response:
        """303 to a page; to an htmx request, the same as an HX-Redirect header (htmx then navigates).

        ``path`` may carry its own query (a listing's address sent back by its form, see
        :func:`~supervisor.dashboard.actions.back_to`). ``flash``: a message the next page shows once.
        """
        base = request.scope.get("root_path", "").rstrip("/")
        url = base + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        response: Response
        if request.headers.get("hx-request"):
            response = Response(status_code=200, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        if flash:
            set_flash(response, flash, base + "/")
        return response

    async def redis_down(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 503, f"cannot reach Redis: {exc}")

    async def form(self, request: Request) -> Form | None:
        """The url-encoded form of a POST, or None when its CSRF token is missing or wrong."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        lists = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        fields = Form({k: v[0] for k, v in lists.items()})
        fields.lists = lists
        submitted = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
        return fields if self.csrf.valid(request, submitted) else None

    # -- pages --------------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        return self.render(request, "overview.html", title="Overview", **await self.call(self._overview))

    async def overview_fragment(self, request: Request) -> Response:
        return self.render(request, "_overview.html", **await self.call(self._overview))

    def _overview(self) -> dict[str, Any]:
        queues = self.inspector.stats()
        now = time.time()
        history = self.inspector.throughput([q.queue for q in queues], minutes=60, now=now)
        supervisors = self._supervisors()
        return {
            "queues": queues,
            "rate": {q: present.per_minute(h, now) for q, h in history.items()},
            "chart": present.chart(list(history.values())),
            "supervisors": supervisors,
            "active": present.total(supervisors, "active"),
            "busy": present.total(supervisors, "busy"),
            "workers": present.total(supervisors, "workers"),
            "groups": self.groups.group_heads([q.queue for q in queues])[1] if self.groups is not None else [],
        }

    async def api_stats(self, request: Request) -> Response:
        data = await self.call(self._overview)
        return JSONResponse(
            {
                "queues": [
                    {**q.__dict__, "succeeded_per_minute": data["rate"][q.queue][0],
                     "failed_per_minute": data["rate"][q.queue][1]}
                    for q in data["queues"]
                ],
                "supervisors": data["supervisors"],
                "groups": [
                    {"queue": g.queue, "type": g.task_type, "group": g.name, "size": g.size} for g in data["groups"]
                ],
            }
        )  # fmt: skip

    async def supervisors(self, request: Request) -> Response:
        return self.render(
            request, "supervisors.html", title="Supervisors", supervisors=await self.call(self._supervisors)
        )

    async def supervisors_fragment(self, request: Request) -> Response:
        return self.render(request, "_supervisors.html", supervisors=await self.call(self._supervisors))

    async def old_servers(self, request: Request) -> Response:
        """The page's address before it was named Supervisors: kept for bookmarks."""
        return self.redirect(request, "/supervisors")

    def _supervisors(self) -> list[dict[str, Any]]:
        """Every live supervisor's heartbeat, typed and in the glossary's words (core/heartbeat.py)."""
        records = [supervisor_record(s) for s in self.inspector.servers()]
        return sorted(records, key=lambda s: (str(s.get("host", "")), str(s.get("pid", ""))))

    async def schedules(self, request: Request) -> Response:
        entries = await self.call(self._schedules)
        return self.render(request, "schedules.html", title="Schedules", entries=entries)

    def _schedules(self) -> list[dict[str, Any]]:
        """The periodic entries, each with what became of the last task it enqueued."""
        out = []
        for e in self.inspector.periodic():
            last, queue, state = e.get("last_task_id"), e.get("queue"), ""
            if isinstance(last, str) and isinstance(queue, str) and last:
                try:
                    state = self.inspector.find(last, queue).state
                except (UnknownTask, UnknownQueue):
                    state = "done"  # ran, and no result was kept (or deleted)
            out.append({**e, "last_state": state})
        return out

    async def history(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        span = request.query_params.get("span", "24h")
        if span not in HISTORY_SPANS:
            return self.error(request, 400, f"unknown span {span!r}; expected one of {', '.join(HISTORY_SPANS)}")
        try:
            samples, days = await self.call(self._history, name, HISTORY_SPANS[span])
        except UnknownQueue as exc:
            return self.error(request, 404, str(exc))
        end = time.time()
        start = end - HISTORY_SPANS[span] * 60
        shown = [s for s in samples if s.at >= start]
        graphs = [charts.sizes(shown, start, end), charts.done_per_minute(shown, start, end),
                  charts.latency(shown, start, end), charts.per_day(days)]  # fmt: skip
        return self.render(request, "history.html", title=f"Queue {name}: history", name=name, span=span,
                           spans={k: k for k in HISTORY_SPANS}, charts=graphs)  # fmt: skip

    def _history(self, name: str, minutes: int) -> tuple[list[Sample], list[Sample]]:
        self.inspector.require_queue(name)
        return self.inspector.history(name, minutes=minutes + 1, days=31)

    async def store(self, request: Request) -> Response:
        nodes, memory = await self.call(self._store)
        return self.render(request, "redis.html", title="Redis", nodes=nodes, memory=memory)

    def _store(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return self.inspector.store_info(), self.inspector.queue_memory(self.inspector.queues())

    async def queue(self, request: Request) -> Response:
        return await self._listing(request, "queue.html")

    async def queue_fragment(self, request: Request) -> Response:
        """The listing alone, for its live refresh."""
        return await self._listing(request, "_tasks.html")

    async def _listing(self, request: Request, template: str) -> Response:
        try:
            query = listing.Query.parse(request.query_params)
        except ValueError as exc:
            return self.error(request, 400, str(exc))
        try:
            data = await self.call(listing.build, self.inspector, query, self.options.page_size, self._running)
        except UnknownQueue as exc:
            return self.error(request, 404, str(exc))
        return self.render(request, template, title=f"Queue {query.name}", bulk_step=BULK_STEP, **data)

    def _running(self) -> dict[str, present.Running]:
        """Where each running task runs, from what the live supervisors last reported."""
        return present.running_tasks(self._supervisors())

    async def search(self, request: Request) -> Response:
        task_id = request.query_params.get("id", "").strip()
        queue = request.query_params.get("queue") or None
        if not task_id:
            return self.redirect(request, "/queue", name=queue) if queue else self.redirect(request, "/")
        try:
            view = await self.call(self.inspector.find, task_id, queue)
        except (UnknownTask, UnknownQueue) as exc:
            return self.error(request, 404, str(exc))
        return self.redirect(request, "/task", queue=view.queue, id=view.id)

    async def task(self, request: Request) -> Response:
        queue, task_id = request.query_params.get("queue", ""), request.query_params.get("id", "")
        try:
            view = await self.call(self.inspector.find, task_id, queue or None)
        except (UnknownTask, UnknownQueue) as exc:
            return self.error(request, 404, str(exc))
        m = view.message
        trace = present.trace_id(m.headers) if m else None
        trace_url = self.options.trace_url.replace("{trace_id}", trace) if trace and self.options.trace_url else ""
        return self.render(
            request,
            "task.html",
            title=f"Task {view.id}",
            view=view,
            message=m,
            payload=present.show_payload(m.payload) if m else present.Shown(present.show_bytes(view.raw or b""), False),
            result=present.show_payload(view.result) if view.result is not None else None,
            trace=trace,
            trace_url=trace_url,
            waiting=WAITING,
            progress=await self.call(self.flow_pages.progress, view.queue, view.id) if self.flow_pages else None,
        )


def _flow_reads(settings: Settings) -> tuple[Flows, ProgressStore]:
    """Workflows and progress are kept by the write side: one broker connection for their reads."""
    from supervisor.wiring import make_broker

    broker = make_broker(settings, client_name="supervisor-dashboard")
    return Flows(broker, broker.flow_store()), broker.progress_store()


def _quote(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


def create_app(
    settings: Settings | None = None,
    dashboard: DashboardSettings | None = None,
    *,
    inspection: Inspection | None = None,
    flows: Flows | None = None,
    progress: ProgressStore | None = None,
    limits: LimitStore | None = None,
) -> Starlette:
    """The dashboard app. ``settings``: Redis and namespace (default: from the environment);
    ``dashboard``: credentials and display options (default: none, loopback use or your app's auth).
    """
    settings = settings or load_settings()
    options = dashboard or DashboardSettings()
    groups: GroupStore | None = None
    if inspection is None:
        from supervisor.wiring import make_group_store, make_inspection

        inspection = make_inspection(settings, client_name="supervisor-dashboard")
        flows, progress = _flow_reads(settings)
        groups = make_group_store(settings, client_name="supervisor-dashboard")
    if limits is None:
        from supervisor.wiring import make_limit_store

        limits = make_limit_store(settings, client_name="supervisor-dashboard")
    d = Dashboard(inspection, options, groups)
    d.flow_pages = FlowPages(d, flows, progress)
    static = StaticFiles(directory=str(resources.files("supervisor.dashboard") / "static"))
    routes = [
        Route("/", d.overview, name="overview"),
        Route("/fragments/overview", d.overview_fragment),
        Route("/supervisors", d.supervisors),
        Route("/fragments/supervisors", d.supervisors_fragment),
        Route("/servers", d.old_servers),
        Route("/schedules", d.schedules),
        Route("/limits", LimitsPage(d, limits).show),
        Route("/redis", d.store),
        Route("/history", d.history),
        Route("/queue", d.queue),
        Route("/fragments/queue", d.queue_fragment),
        Route("/task", d.task),
        Route("/search", d.search),
        Route("/flow", d.flow_pages.flow),
        Route("/api/stats", d.api_stats),
        Route("/actions/{action}", Actions(d).act, methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, settings=options)],
        exception_handlers={BrokerUnavailable: d.redis_down},
    )
    app.state.dashboard = d
    return app
