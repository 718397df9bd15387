"""Every declared setting in one list, in the order the reference shows them.

Derived from the settings classes' fields (see declare.py), never written by hand.
"""

from __future__ import annotations

from supervisor.config.dashboard import DashboardSettings
from supervisor.config.declare import SECTIONS, Setting, declared
from supervisor.config.model import AsynqSettings, RedisSettings

#: The settings classes and the field name of each declaration, in reference order.
_CLASSES = (AsynqSettings, DashboardSettings, RedisSettings)


def _all() -> tuple[Setting, ...]:
    found = [declaration for cls in _CLASSES for _, declaration in declared(cls)]
    return tuple(sorted(found, key=lambda s: list(SECTIONS).index(s.section)))


#: Every setting, grouped by section in SECTIONS order (declaration order within one).
SETTINGS: tuple[Setting, ...] = _all()

#: Old names still accepted -> the variable each sets.
ALIASES: dict[str, str] = {old: s.variable for s in SETTINGS for old in s.aliases}

#: Every variable, old names included, with its help and default on one line.
KNOWN_VARIABLES: dict[str, str] = {}
for _setting in SETTINGS:
    KNOWN_VARIABLES[_setting.variable] = _setting.summary()
    for _old in _setting.aliases:
        KNOWN_VARIABLES[_old] = f"Old name of {_setting.variable}, still accepted. Default: none."
del _setting, _old


def declaration(variable: str) -> Setting:
    """The declaration of ``variable`` (an old name gives the setting it now sets)."""
    variable = ALIASES.get(variable, variable)
    for s in SETTINGS:
        if s.variable == variable:
            return s
    raise KeyError(variable)
