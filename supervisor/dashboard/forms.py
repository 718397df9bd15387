"""A POST's fields and the one-time message (flash) shown after an action's redirect.

Shared by the pages (app.py) and the actions (actions.py), below both.
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

FLASH_COOKIE = "sv_dashboard_flash"
#: Characters of a flash message kept (ours are one sentence).
FLASH_LIMIT = 300


class Form(dict[str, str]):
    """A POST's fields (the first value of each) and, in ``lists``, every value (selected ids)."""

    lists: dict[str, list[str]]

    def all(self, name: str) -> list[str]:
        return self.lists.get(name, [])


def set_flash(response: Response, message: str, path: str) -> None:
    """A message for the next page the browser opens (after a redirect), shown once."""
    value = urllib.parse.quote(message[:FLASH_LIMIT], safe="")
    response.set_cookie(FLASH_COOKIE, value, path=path or "/", httponly=True, samesite="strict", max_age=60)


def read_flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    return urllib.parse.unquote(raw)[:FLASH_LIMIT] if raw else None
