"""A queue's listing: which tasks one page of one tab shows, filtered or not.

A plain listing reads one page (LRANGE/ZRANGE of ``page_size`` ids). A filtered one (task type,
text in the payload or error) is a bounded search of the newest :data:`SCAN_LIMIT` tasks of the
tab, paginated over its matches, and the page says how much was searched. The completed tab
walks the kept results with a cursor (see :meth:`Inspection.completed`).
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from supervisor.core.inspection import SCAN_LIMIT, STATES, WAITING, Inspection, TaskView
from supervisor.dashboard import present

#: Tabs of a queue page: the states, and the completed tasks kept with retention.
TABS = {"pending": "Pending", "active": "Active", "scheduled": "Scheduled", "retry": "Retry",
        "archived": "Archived", "completed": "Completed", "canceled": "Canceled", "expired": "Expired"}  # fmt: skip
AT_LABELS = {"active": "lease until", "scheduled": "runs at", "retry": "retries at", "archived": "archived at",
             "completed": "completed at", "canceled": "canceled at", "expired": "expired at"}  # fmt: skip
#: Longest filter value accepted (a type name, a search word).
FILTER_LIMIT = 200


@dataclass(frozen=True)
class Query:
    """What the address of a listing asks for."""

    name: str
    state: str
    page: int = 1
    task_type: str = ""
    text: str = ""
    cursor: str = "0"

    @classmethod
    def parse(cls, params: QueryParams) -> Query:
        """The query of a listing's address; ValueError for a tab that does not exist."""
        state = params.get("state", "pending")
        if state not in TABS:
            raise ValueError(f"unknown state {state!r}")
        try:
            page = max(int(params.get("page", "1")), 1)
        except ValueError:
            page = 1
        cursor = params.get("cursor", "0")
        return cls(
            params.get("name", ""), state, page, params.get("type", "").strip()[:FILTER_LIMIT],
            params.get("q", "").strip()[:FILTER_LIMIT], cursor if cursor.isdigit() else "0",
        )  # fmt: skip

    @property
    def filtered(self) -> bool:
        return bool(self.task_type or self.text)

    def address(self, **changes: Any) -> str:
        """This listing's path and query (without the mount prefix), with ``changes``."""
        fields = {"name": self.name, "state": self.state, "type": self.task_type, "q": self.text,
                  "page": self.page, "cursor": self.cursor, **changes}  # fmt: skip
        kept = {k: v for k, v in fields.items() if v not in ("", None) and not (k == "cursor" and v == "0")}
        return "/queue?" + urllib.parse.urlencode(kept)


def build(
    inspector: Inspection, query: Query, page_size: int, running: Callable[[], dict[str, present.Running]]
) -> dict[str, Any]:
    """The template context of one listing page (raises UnknownQueue for a queue that does not exist)."""
    inspector.require_queue(query.name)
    (stats,) = inspector.stats([query.name])
    counts = {s: getattr(stats, s) for s in STATES}
    search: dict[str, Any] = {}
    next_cursor = ""
    if query.state == "completed":
        tasks, next_cursor, examined = inspector.completed(query.name, limit=page_size, cursor=query.cursor)
        total, page, pages = len(tasks), 1, 1
        search = {"examined": examined}
    elif query.filtered:
        found = inspector.search(
            query.name, query.state, task_type=query.task_type, text=query.text, limit=page_size,
            offset=(query.page - 1) * page_size,
        )  # fmt: skip
        if not found.tasks and query.page > 1 and found.matched:  # past the last page: show the last
            last = math.ceil(found.matched / page_size)
            return build(inspector, Query(**{**query.__dict__, "page": last}), page_size, running)
        tasks, total = found.tasks, found.matched
        page, pages = query.page, max(math.ceil(total / page_size), 1)
        search = {"scanned": found.scanned, "of": found.total, "complete": found.complete, "bound": SCAN_LIMIT}
    else:
        total = counts[query.state]
        pages = max(math.ceil(total / page_size), 1)
        page = min(query.page, pages)
        tasks = inspector.list_tasks(query.name, query.state, limit=page_size, offset=(page - 1) * page_size)
    where = running() if query.state == "active" else {}
    shown = Query(**{**query.__dict__, "page": page})
    return {
        "name": query.name, "state": query.state, "query": shown, "stats": stats, "counts": counts,
        "rows": [row(t, where) for t in tasks], "page": page, "pages": pages, "total": total, "tabs": TABS,
        "waiting": WAITING, "listing": shown.address(), "search": search,
        "next_cursor": next_cursor, "at_label": AT_LABELS.get(query.state, ""),
    }  # fmt: skip


def row(t: TaskView, running: dict[str, present.Running]) -> dict[str, Any]:
    m = t.message
    where = running.get(t.id)
    return {
        "view": t,
        "preview": present.preview(m.payload if m else t.raw),
        "error": present.error_summary(m.last_error) if m else "",
        "worker": where.worker if where else present.worker_name(t.owner),
        "running": (time.time() - where.started) if where else None,
    }
