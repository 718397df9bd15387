"""systemd's notify protocol (sd_notify), without a dependency: one datagram per message."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1`` when ``NOTIFY_SOCKET`` is set.

    The variable is removed from the environment so that children, and anything they run, do not
    inherit it (only the main process may talk to systemd under ``NotifyAccess=main``).
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", "")
        self.address: str | None = ("\0" + address[1:]) if address.startswith("@") else (address or None)
        self.watchdog_interval: float | None = None
        usec = env.pop("WATCHDOG_USEC", "")
        pid = env.pop("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2  # ping at half the timeout, as systemd advises
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        try:
            self._socket.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False  # systemd gone or socket full: never let notification break the pool

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
