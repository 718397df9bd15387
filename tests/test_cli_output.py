"""The helpers behind the human output: readable times, cut errors, tables aligned with colour."""

from __future__ import annotations

import sys

from supervisor.cli import output


def test_ago_and_duration():
    now = 1_800_000_000.0
    assert output.ago(now - 180, now) == "3 min ago"
    assert output.ago(now + 7200, now) == "in 2 h"
    assert output.ago(now - 0.2, now) == "just now"
    assert output.ago(now - 3 * 86400 - 3600, now) == "3 d 1 h ago"
    assert output.ago(None, now) == "-" and output.ago(0, now) == "-"
    assert output.duration(0.45) == "450 ms" and output.duration(12.3) == "12 s" and output.duration(5.25) == "5.2 s"


def test_iso_is_utc_with_zone():
    assert output.iso(0.25) == "1970-01-01T00:00:00.250Z"
    assert output.iso(0) is None and output.iso(None) is None


def test_shorten_cuts_at_a_word():
    text = "ConnectionError: the upstream service refused the request\nTraceback ..."
    short = output.shorten(text, 40)
    assert short == "ConnectionError: the upstream service …" and len(short) <= 40
    assert output.shorten("short", 40) == "short"


def test_table_aligns_on_visible_width_with_colour(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = output.table(("state", "n"), [(output.state("archived"), 1234), ("ok", 5)], numeric=(1,))
    plain = [output._ANSI.sub("", line) for line in text.splitlines()]
    assert plain == ["state         n", "archived  1,234", "ok            5"]
    assert "\x1b[31marchived" in text  # red on a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in output.table(("state",), [(output.state("archived"),)])
