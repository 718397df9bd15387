"""A claim sent now, its reply read later: a worker that runs its tasks on the claim loop's own
thread (concurrency 1) overlaps the claim's round trip with the tasks it still holds.

With a task thread, the claim loop claimed while the thread ran tasks: the claim's round trip
cost no time. Run on one thread, task and claim would take turns, and the round trip (~100-200
µs on loopback, one per half batch) would stand between tasks. So the claim's commands (the
completions that ride with it, the claim script, WAIT when replicas must acknowledge) are written
to a connection of the pool now, and the replies read when the worker has run what it holds.

Same results as the broker's one-round-trip pipeline (broker.py ``_send``): a NOSCRIPT reply
means that call did not run, and it is sent again through that synchronous path. A failure while
reading (a dropped connection, a timeout) may come after the claim ran: the caller treats it as a
claim whose reply was lost. The connection goes back to the pool only after its replies are read
(disconnected on any failure, so no stray reply can be read by its next user).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from supervisor.adapters.redis.calls import Call, replica_shortfall


def send_later(
    client: redis.Redis,
    scripts: dict[str, Script],
    calls: Sequence[Call],
    wait: tuple[int, int] | None,
    resend: Callable[[Sequence[Call]], list[Any]],
) -> Callable[[], list[Any]]:
    """Write ``calls`` (EVALSHA each, then WAIT ``wait`` = (replicas, timeout ms) if given) now;
    the returned call reads their replies, resending through ``resend`` those that met NOSCRIPT,
    and returns the results in order (raising a call's error, as ``_send`` does)."""
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", scripts[name].sha, len(keys), *keys, *args) for name, keys, args in calls
    ]
    if wait is not None:
        commands.append(("WAIT", *wait))
    pool = client.connection_pool
    conn: Any = pool.get_connection()  # redis-py types its Connection loosely
    try:
        conn.send_packed_command(conn.pack_commands(commands))
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise

    def read() -> list[Any]:
        replies: list[Any] = []
        try:
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # a script's own error: the others still answer
                    replies.append(exc)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        if wait is not None:
            acked = replies.pop()
            if isinstance(acked, Exception):
                raise acked
            if short := replica_shortfall(int(acked), *wait):
                raise short
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for i, result in zip(missing, resend([calls[i] for i in missing]), strict=True):
                replies[i] = result
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    return read
