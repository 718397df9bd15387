"""The web dashboard (``pip install 'supervisor-jobs[dashboard]'``): queues, tasks, supervisors, schedules.

``create_app`` is imported lazily so that ``supervisor.dashboard.settings`` (used by the CLI to
validate configuration) works without the optional web dependencies installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.dashboard.settings import DashboardSettings, load_dashboard_settings

if TYPE_CHECKING:
    from supervisor.dashboard.app import create_app

__all__ = ["DashboardSettings", "create_app", "load_dashboard_settings"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from supervisor.dashboard.app import create_app

        return create_app
    raise AttributeError(name)
