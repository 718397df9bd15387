"""An idle worker's wake-up and its next claim in one round trip (a single server, or Sentinel's primary).

A worker that found nothing to claim blocks in BRPOP on its queues' wake lists (one token per
enqueue). Sent alone, the BRPOP returns and only then does the worker send its claim: two round
trips between an enqueue and the task in hand. Here the BRPOP and the claim script go out in one
pipeline (no MULTI: a blocking command cannot block inside a transaction). Redis runs one
connection's commands in order, so the claim runs the moment BRPOP returns (a token) or times
out, and its reply comes back with BRPOP's: one round trip.

The claim's reply is what counts, whatever BRPOP said: a token whose task another worker took
is an empty claim, and a timeout may still claim (a task whose token another worker consumed,
or a scheduled task that fell due). An error BRPOP itself answers is raised only when the claim
took nothing, so that a claimed task is never dropped for it (the next wait raises it again).

NOSCRIPT (the server lost its script cache: a restart, SCRIPT FLUSH) means the claim did not
run: it is sent again through the script object, which loads it (one more round trip, once).

A failure after the pipeline was sent (a dropped connection, a timeout, a signal breaking the
read) may come after the claim ran: the caller treats it as a claim whose reply was lost.

On a Redis Cluster the doorbells and the queues live in different slots, often on different
nodes, so this is not used there: the broker waits, then claims (broker.py's module docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import text
from supervisor.core.ports import Claimed


def wait_then_claim(
    client: redis.Redis,
    claim: Script,
    wake_keys: Sequence[str],
    timeout: float,
    keys: Sequence[str],
    args: Sequence[Any],
    after: Sequence[Sequence[Any]] = (),
) -> tuple[Any, list[Any]]:
    """BRPOP on ``wake_keys`` for up to ``timeout`` seconds, then claim.lua with ``keys`` and
    ``args``, then the commands ``after`` (reads that ride the wait: they run when it ends), in
    one round trip; returns claim.lua's reply (read it with :func:`claim_outcome`) and the
    replies of ``after``, an error in place of any that failed."""
    pipe: Any = client.pipeline(transaction=False)
    pipe.execute_command("BRPOP", *wake_keys, timeout)
    pipe.execute_command("EVALSHA", claim.sha, len(keys), *keys, *args)
    for command in after:
        pipe.execute_command(*command)
    woke, reply, *answers = pipe.execute(raise_on_error=False)
    if isinstance(reply, NoScriptError):  # it did not run: load it and claim again, alone
        reply = claim(keys=keys, args=args)
    elif isinstance(reply, Exception):
        raise reply
    if isinstance(woke, Exception) and int(reply[0]) == 0:
        raise woke
    return reply, answers


def claim_outcome(order: Sequence[str], reply: Sequence[Any]) -> list[Claimed] | float | None:
    """claim.lua's reply over the queues ``order``: the claimed tasks, or the seconds until the
    next due task (on the clock the script used, Redis's), or None when nothing is scheduled."""
    index = int(reply[0])
    if index == 0:
        return max(float(reply[1]) - float(reply[2]), 0.0) if reply[1] else None
    queue = order[index - 1]
    return [Claimed(queue, text(reply[i]), reply[i + 1] or None) for i in range(1, len(reply), 2)]
