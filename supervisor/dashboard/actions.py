"""The dashboard's actions: every POST, each checked against its CSRF token first.

Each action ends on the page the operator acted from (the listing's tab, page and filters, sent
back in the form's ``back`` field and accepted only as one of our own pages) with a flash
message that says what was done, or an error page that says why nothing was.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from supervisor.core.inspection import Inspection, UnknownQueue, UnknownTask
from supervisor.core.ports import CancelOutcome
from supervisor.dashboard.forms import Form

_T = TypeVar("_T")


class Pages(Protocol):
    """What the actions use of the dashboard (app.py's ``Dashboard``): its store view and replies."""

    inspector: Inspection

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse: ...

    def error(self, request: Request, status: int, message: str) -> HTMLResponse: ...

    def redirect(self, request: Request, path: str, *, flash: str = "", **query: Any) -> Response: ...

    async def form(self, request: Request) -> Form | None: ...


#: Tasks one bulk request moves at most: each request answers quickly, the page repeats it.
BULK_STEP = 500
#: The pages an action may send the browser back to.
RETURN_PAGES = ("/queue", "/task", "/")


def back_to(form: Form, default: str) -> str:
    """The page to return to: the form's ``back`` when it is one of our pages, else ``default``.

    Only a path of our own with its query is taken (no scheme, host or ``//``), so a forged form
    cannot send the browser elsewhere, nor put a line break into a header.
    """
    back = form.get("back", "")
    parts = urllib.parse.urlsplit(back)
    if not back or parts.scheme or parts.netloc or parts.path not in RETURN_PAGES or "\\" in back:
        return default
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in back):  # control characters: never into a header
        return default
    return parts.path + ("?" + parts.query if parts.query else "")


def tasks(n: int) -> str:
    return f"{n} task{'' if n == 1 else 's'}"


class Actions:
    """The POST handlers; they share the Dashboard's inspector, CSRF check and redirects."""

    def __init__(self, dashboard: Pages) -> None:
        self.d = dashboard

    async def act(self, request: Request) -> Response:
        d = self.d
        action = request.path_params["action"]
        form = await d.form(request)
        if form is None:
            return d.error(request, 403, "the form's CSRF token is missing or wrong: reload the page and try again")
        handler = {
            "pause": self.pause, "resume": self.resume, "retry": self.retry, "delete": self.delete,
            "bulk": self.bulk, "selected": self.selected, "cancel": self.cancel,
        }.get(action)  # fmt: skip
        if handler is None:
            return d.error(request, 404, f"no action {action!r}")
        try:
            return await handler(request, form)
        except (UnknownTask, UnknownQueue) as exc:
            return d.error(request, 404, str(exc))
        except ValueError as exc:
            return d.error(request, 409, str(exc))

    async def pause(self, request: Request, form: Form) -> Response:
        queue = form.get("queue", "")
        await self.d.call(self.d.inspector.pause, queue)
        back = back_to(form, "/queue?" + urllib.parse.urlencode({"name": queue}))
        flash = f"Paused queue {queue}: workers take no new tasks from it until it is resumed."
        return self.d.redirect(request, back, flash=flash)

    async def resume(self, request: Request, form: Form) -> Response:
        queue = form.get("queue", "")
        await self.d.call(self.d.inspector.resume, queue)
        back = back_to(form, "/queue?" + urllib.parse.urlencode({"name": queue}))
        return self.d.redirect(request, back, flash=f"Resumed queue {queue}: workers take its tasks again.")

    async def retry(self, request: Request, form: Form) -> Response:
        queue, task_id = form.get("queue", ""), form.get("id", "")
        view = await self.d.call(self.d.inspector.retry, task_id, queue or None)
        back = back_to(form, "/task?" + urllib.parse.urlencode({"queue": view.queue, "id": task_id}))
        return self.d.redirect(request, back, flash=f"Task {task_id} is pending again: it runs next.")

    async def delete(self, request: Request, form: Form) -> Response:
        queue, task_id = form.get("queue", ""), form.get("id", "")
        view = await self.d.call(self.d.inspector.delete, task_id, queue or None)
        default = "/queue?" + urllib.parse.urlencode({"name": view.queue, "state": view.state})
        return self.d.redirect(request, back_to(form, default), flash=f"Deleted {view.state} task {task_id}.")

    async def cancel(self, request: Request, form: Form) -> Response:
        """Cancel one task: a waiting one ends now, a running one is stopped by its worker."""
        queue, task_id = form.get("queue", ""), form.get("id", "")
        reply = await self.d.call(self.d.inspector.cancel, task_id, queue or None)
        back = back_to(form, "/task?" + urllib.parse.urlencode({"queue": queue, "id": task_id}))
        flash = {
            CancelOutcome.CANCELED: f"Canceled task {task_id}: it will not run.",
            CancelOutcome.RUNNING: f"Canceling task {task_id}: its worker ({reply.owner}) stops it.",
            CancelOutcome.ENDED: f"Task {task_id} had already ended ({reply.state}): nothing was done.",
            CancelOutcome.MISSING: f"Task {task_id} is gone (completed or deleted): nothing was done.",
        }[reply.outcome]
        return self.d.redirect(request, back, flash=flash)

    async def selected(self, request: Request, form: Form) -> Response:
        """Retry or delete the rows ticked on a listing."""
        queue, verb, ids = form.get("queue", ""), form.get("verb", ""), form.all("ids")
        back = back_to(form, "/queue?" + urllib.parse.urlencode({"name": queue}))
        if not ids:
            return self.d.redirect(request, back, flash="No task was selected: nothing was done.")
        if verb == "retry":
            done = await self.d.call(self.d.inspector.retry_ids, queue, ids)
            flash = f"Retried {tasks(done)} of the {len(ids)} selected."
        elif verb == "delete":
            done = await self.d.call(self.d.inspector.delete_ids, queue, ids)
            flash = f"Deleted {tasks(done)} of the {len(ids)} selected."
        else:
            raise ValueError(f"unknown action on selected tasks {verb!r}")
        if done < len(ids):
            flash += f" {tasks(len(ids) - done)} could not be (running, done or gone meanwhile)."
        return self.d.redirect(request, back, flash=flash)

    async def bulk(self, request: Request, form: Form) -> Response:
        """One bounded step of 'retry/delete every task in a state'; the fragment asks for the next."""
        queue, state, verb = form.get("queue", ""), form.get("state", ""), form.get("verb", "")
        try:
            done = max(int(form.get("done", "0")), 0)
        except ValueError:
            done = 0
        if verb == "retry":
            moved, left = await self.d.call(self.d.inspector.retry_some, queue, state, BULK_STEP)
        elif verb == "delete":
            moved, left = await self.d.call(self.d.inspector.delete_some, queue, state, BULK_STEP)
        else:
            raise ValueError(f"unknown bulk action {verb!r}")
        return self.d.render(
            request, "_bulk.html", queue=queue, state=state, verb=verb, done=done + moved, left=left,
            more=bool(moved and left),
        )  # fmt: skip
