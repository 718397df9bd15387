"""Every declared setting in one list, in the order the reference shows them.

Derived from the settings classes' fields (see declare.py), never written by hand.
"""

from __future__ import annotations

from supervisor.config.dashboard import DashboardSettings
from supervisor.config.declare import SECTIONS, Setting, declared
from supervisor.config.model import AsynqSettings, RedisSettings

#: The settings classes whose fields declare the settings.
_CLASSES = (AsynqSettings, DashboardSettings, RedisSettings)


def _all() -> tuple[Setting, ...]:
    found = [declaration for cls in _CLASSES for _, declaration in declared(cls)]
    return tuple(sorted(found, key=lambda s: list(SECTIONS).index(s.section)))


#: Every setting, grouped by section in SECTIONS order (declaration order within one).
SETTINGS: tuple[Setting, ...] = _all()

#: Old names still accepted -> the variable each sets.
ALIASES: dict[str, str] = {old: s.variable for s in SETTINGS for old in s.aliases}


def _known() -> dict[str, str]:
    known: dict[str, str] = {}
    for s in SETTINGS:
        known[s.variable] = s.summary()
        known.update({old: f"Old name of {s.variable}, still accepted. Default: none." for old in s.aliases})
    return known


#: Every variable, old names included, with its help and default on one line.
KNOWN_VARIABLES: dict[str, str] = _known()


def declaration(variable: str) -> Setting:
    """The declaration of ``variable`` (an old name gives the setting it now sets)."""
    variable = ALIASES.get(variable, variable)
    for s in SETTINGS:
        if s.variable == variable:
            return s
    raise KeyError(variable)
