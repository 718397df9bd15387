"""The one error every bad setting becomes, and the exit status that goes with it."""

from __future__ import annotations

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(ValueError):
    """One bad setting, rendered as one line: ``VARIABLE='value': what is expected``.

    ``variable`` is the environment variable, CLI flag label or ``path:line`` the value came from.
    The constructor arguments are kept in ``args`` so the error survives pickling across processes.
    """

    def __init__(self, variable: str, value: str, expected: str) -> None:
        super().__init__(variable, value, expected)
        self.variable = variable
        self.value = value
        self.expected = expected

    def __str__(self) -> str:
        return f"{self.variable}={self.value!r}: {self.expected}"
