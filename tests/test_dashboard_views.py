"""The dashboard's listings and actions added for issue 24 (Starlette's TestClient, a private redis-server).

The error column, per-row and selected-rows actions with their flash messages, filters and
bounded searches, the completed tab, the Active tab's worker and running time, the Redis page,
the queue history and the theme. The pages and actions of before are in test_dashboard_http.py.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor.adapters.redis import RedisBroker
from supervisor.config import Settings
from supervisor.dashboard import present
from supervisor.dashboard.settings import DashboardSettings
from tests.dashboard_helpers import archive

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    from supervisor.dashboard.app import create_app

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TOKEN_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def make_tc(settings: Settings, **options: Any) -> TestClient:
    return TestClient(create_app(settings, DashboardSettings(page_size=25, **options)))


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with make_tc(settings) as c:
        yield c


def csrf(tc: TestClient, page: str = "/queue?name=default") -> str:
    match = TOKEN_RE.search(tc.get(page).text)
    assert match
    return match.group(1)


def error_cells(html: str) -> list[str]:
    return re.findall(r'<td class="error"[^>]*>(.*?)</td>', html, re.S)


# -- 1. the last-error column ----------------------------------------------------------------------

TRACEBACK_WITH_FOOTER = (
    "ConnectionError: the mail server refused us\n"
    "Traceback (most recent call last):\n"
    '  File "/app/tasks.py", line 12, in send\n'
    "    smtp.send(msg)\n"
    "ConnectionError: the mail server refused us\n"
    "(17 frames of supervisor's own code or deep recursion not shown)"
)


def test_error_summary_is_the_error_not_the_traceback_footer() -> None:
    assert present.error_summary(TRACEBACK_WITH_FOOTER) == "ConnectionError: the mail server refused us"
    bare = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'k'\n(3 frames ... not shown)"
    assert present.error_summary(bare) == "KeyError: 'k'"
    chained = bare.replace(
        "(3 frames", "\nThe above exception was the direct cause of the following exception:\n(3 frames"
    )
    assert present.error_summary(chained) == "KeyError: 'k'"
    assert present.error_summary("") == "" and present.error_summary("\n\n") == ""


def test_clip_cuts_at_a_word_boundary() -> None:
    text = "ValueError: " + " ".join(f"word{i}" for i in range(40))
    short = present.clip(text, 60)
    assert len(short) <= 60 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " ", "cut between two words"
    assert present.clip("short", 60) == "short"
    long_word = "x" * 200
    assert present.clip(long_word, 60) == "x" * 59 + "…"


def test_queue_listing_shows_the_error_clipped_with_the_full_text_in_a_title(
    tc: TestClient, broker: RedisBroker
) -> None:
    archive(broker, "default", error=TRACEBACK_WITH_FOOTER)
    long_message = "RuntimeError: " + " ".join(["the upstream service answered with garbage"] * 6)
    archive(broker, "default", error=long_message + "\nTraceback (most recent call last):\n  ...")
    page = tc.get("/queue?name=default&state=archived").text
    cells = error_cells(page)
    assert any(c == "ConnectionError: the mail server refused us" for c in cells), cells
    assert not any("frames" in c for c in cells)
    clipped = next(c for c in cells if c.startswith("RuntimeError"))
    assert clipped.endswith("…") and len(clipped) <= present.ERROR_LIMIT
    assert clipped[:-1].rstrip().split(" ")[-1] in {"the", "upstream", "service", "answered", "with", "garbage"}
    assert f'title="{long_message}"' in page
