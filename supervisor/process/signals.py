"""Signals as events for the parent's main loop.

Handlers only append the signal number to a list; ``signal.set_wakeup_fd`` writes a byte to a
pipe so that the loop's ``select`` returns at once. Nothing is logged or decided inside a handler.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

#: Everything the parent reacts to. As PID 1, a signal without a handler is ignored by the
#: kernel, so every stop signal must have one.
HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


class SignalInbox:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._pending: list[int] = []
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)
            signal.siginterrupt(sig, False)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def drain(self) -> list[int]:
        """Signals received since the last call, in order; empties the wake-up pipe."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        got, self._pending = self._pending, []
        return got

    def restore_defaults_in_child(self) -> None:
        """In a freshly forked child: the parent's handlers and wake-up pipe are not ours."""
        signal.set_wakeup_fd(-1)
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self.read_fd)
        os.close(self.write_fd)
