"""The dashboard's own settings (``ASYNQ_DASHBOARD_*``), validated like the daemon's.

Declared with every other setting in :mod:`supervisor.config` (so the reference, ``.env.example``
and the check for unknown names see them) and re-exported here for the web app. Free of web
imports, so ``supervisor dashboard`` can refuse bad configuration (exit 78) before Starlette or
uvicorn are imported, and the CLI can tell a missing optional extra apart from a bad setting.
"""

from __future__ import annotations

from supervisor.config import DashboardSettings, is_loopback, load_dashboard_settings

DEFAULT_HOST = DashboardSettings().host
DEFAULT_PORT = DashboardSettings().port

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardSettings", "is_loopback", "load_dashboard_settings"]
