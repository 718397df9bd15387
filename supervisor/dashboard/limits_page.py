"""The dashboard's Limits page: every rate limit and cap, read-only (change them with the CLI).

Its own module, with its own store port (:class:`~supervisor.core.flow.LimitStore`), beside the
pages that read through :class:`~supervisor.core.inspection.Inspection`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from supervisor.core.flow import LimitStore, limits_report

_T = TypeVar("_T")


class Pages(Protocol):
    """What a page needs of the dashboard: a store call off the event loop, and a template."""

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse: ...


class LimitsPage:
    def __init__(self, pages: Pages, store: LimitStore) -> None:
        self.pages = pages
        self.store = store

    async def show(self, request: Request) -> Response:
        rows = await self.pages.call(limits_report, self.store)
        return self.pages.render(request, "limits.html", title="Limits", rows=rows)
