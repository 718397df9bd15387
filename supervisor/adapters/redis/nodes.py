"""Script calls on a Redis Cluster, node by node, so that one failing node fails only its own calls.

A stalled primary (SIGSTOP, a long fork, a network partition) answers nothing: every call sent to
it waits out the socket timeout (5 s by default). If every claim or completion that touched it
waited, the queues of the healthy nodes would stop with it. So the broker keeps, per node, when
it last failed (:class:`NodeHealth`):

- a call whose node failed is answered in place with the error, the other nodes' replies stand;
- a node that failed is not sent anything for a back-off (0.5 s, doubling up to 5 s): its calls
  are answered at once with :class:`Skipped` (they did not run, safe to send again);
- once the back-off is over, one PING with a short timeout (:data:`PROBE_TIMEOUT`) on a fresh
  connection decides whether it is back: a stalled node costs the caller that much, not the
  socket timeout;
- a failure reloads the slot map from another node (the failed one last), so after a failover
  the queue's calls go to the promoted replica, which is not marked down.

Each change of a node's state is logged once (warning when it fails, info when it answers again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import STALE_SLOTS, Call, by_node, replica_shortfall

log = logging.getLogger("supervisor.redis")

#: First and longest wait before a failed node is tried again.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0
#: How long the PING that decides whether a failed node is back may take.
PROBE_TIMEOUT = 0.5

#: Errors that mean "this node did not answer", as opposed to a reply that refuses the call.
NODE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class Skipped(redis.ConnectionError):
    """A call not sent, or refused before it ran (MOVED, CLUSTERDOWN): it did not run."""


def did_not_run(reply: Any) -> bool:
    return isinstance(reply, Skipped)


def unanswered(reply: Any) -> bool:
    """The call's node did not answer (it may or may not have run, unless :class:`Skipped`)."""
    return isinstance(reply, NODE_ERRORS)


class NodeHealth:
    """Which nodes failed lately and when each may be tried again (monotonic time)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._down: dict[str, tuple[float, float]] = {}  # name -> (next try at, back-off)

    def state(self, name: str) -> str:
        """ "up", "wait" (failed, back-off not over) or "probe" (failed, may be tried now)."""
        down = self._down.get(name)
        if down is None:
            return "up"
        return "probe" if self.clock() >= down[0] else "wait"

    def failed(self, name: str, exc: BaseException) -> None:
        previous = self._down.get(name)
        backoff = FIRST_BACKOFF if previous is None else min(previous[1] * 2, MAX_BACKOFF)
        self._down[name] = (self.clock() + backoff, backoff)
        if previous is None:
            log.warning(
                "Redis Cluster node %s did not answer (%s: %s): only the queues whose keys it holds wait; "
                "tried again in %.1f s", name, type(exc).__name__, exc, backoff,
                extra={"event": "redis_node_down", "node": name},
            )  # fmt: skip

    def recovered(self, name: str) -> None:
        if self._down.pop(name, None) is not None:
            log.info("Redis Cluster node %s answers again", name, extra={"event": "redis_node_up", "node": name})


class ClusterCalls:
    """EVALSHA calls grouped by the node serving their slot, one pipeline per node, written to
    every node before any reply is read (the nodes work in parallel).

    Not redis-py's cluster pipeline: it asks the server for the keys of every pipelined EVALSHA
    (COMMAND GETKEYS, one more round trip per call), cannot aim a keyless WAIT at the node that
    took the writes, and fails the whole pipeline when one node fails.
    """

    def __init__(
        self, cluster: Any, scripts: dict[str, Any], wait_replicas: int, wait_timeout_ms: int, health: NodeHealth
    ) -> None:
        self.cluster = cluster
        self.scripts = scripts
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.health = health

    def run(self, calls: Sequence[Call], wait: bool, *, skip_down: bool = True) -> list[Any]:
        """Every call's reply, in order; a call whose node failed gets the error in its place.

        ``skip_down``: calls for a node in its back-off are not sent (:class:`Skipped`). False for
        the all-or-nothing callers, which would otherwise turn a node's back-off into a string of
        failures the moment it answers again: they try it, as they always did.

        Errors in place: :class:`Skipped` (did not run), another connection or timeout error (the
        node did not answer: it may have run; a replica wait that fell short is one too), or a
        ``ResponseError`` the script raised. NOSCRIPT is handled here: the node lost its script
        cache, so the scripts are loaded and those calls (which did not run) sent again once.
        """
        results: list[Any] = [None] * len(calls)
        batches = []
        for node, indexes in by_node(calls, self.cluster.get_node_from_key):
            if not skip_down or self.usable(node):
                batches.append((node, indexes))
            else:
                for i in indexes:
                    results[i] = Skipped(f"Redis Cluster node {node.name} failed a moment ago")
        for _ in range(2):
            missing: list[tuple[Any, list[int]]] = []
            for (node, indexes), replies in zip(batches, self._exchange(batches, calls, wait), strict=True):
                if isinstance(replies, BaseException):
                    for i in indexes:
                        results[i] = replies
                    continue
                lost = [i for i, r in zip(indexes, replies, strict=True) if isinstance(r, NoScriptError)]
                for i, reply in zip(indexes, replies, strict=True):
                    results[i] = reply
                if lost:  # that node restarted or failed over and lost its script cache
                    client = self.cluster.get_redis_connection(node)
                    for name in {calls[i][0] for i in lost}:
                        client.script_load(self.scripts[name].script)
                    missing.append((node, lost))
            if not missing:
                return results
            batches = missing
        raise NoScriptError("scripts were flushed again while being reloaded")

    def usable(self, node: Any) -> bool:
        """The node may be sent calls: it has not failed, or it did and answers a PING again."""
        state = self.health.state(node.name)
        if state == "up":
            return True
        if state == "wait":
            return False
        client = self.cluster.get_redis_connection(node)
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": PROBE_TIMEOUT, "socket_connect_timeout": PROBE_TIMEOUT}
        conn = pool.connection_class(**kwargs)
        try:
            conn.send_command("PING")
            conn.read_response()
        except (redis.RedisError, OSError) as exc:
            self.node_failed(node, exc)
            return False
        finally:
            conn.disconnect()
        self.health.recovered(node.name)
        return True

    def node_failed(self, node: Any, exc: BaseException) -> None:
        """Mark ``node`` down and reload the slot map, asking the other nodes first."""
        self.health.failed(node.name, exc)
        self.refresh(node.name)

    def refresh(self, failed: str | None = None) -> None:
        try:
            self.cluster.nodes_manager.initialize(last_failed_node_name=failed)
        except redis.RedisError:
            pass  # no node answered: the next call tries again

    def _exchange(
        self, batches: list[tuple[Any, list[int]]], calls: Sequence[Call], wait: bool
    ) -> list[list[Any] | BaseException]:
        """Write every node's pipeline, then read each; per batch its replies or the node's error."""
        sent: list[tuple[Any, Any, list[int]] | BaseException] = []
        out: list[list[Any] | BaseException] = []
        stale = False
        try:
            for node, indexes in batches:
                sent.append(self._write(node, indexes, calls, wait))
            for (node, _), entry in zip(batches, sent, strict=True):
                if isinstance(entry, BaseException):
                    out.append(entry)
                    continue
                client, conn, indexes = entry
                try:
                    replies = self._read(client, conn, len(indexes), wait)
                except NODE_ERRORS as exc:
                    conn.disconnect()
                    self.node_failed(node, exc)
                    out.append(exc)
                    continue
                if any(isinstance(r, STALE_SLOTS) for r in replies):
                    stale = True  # AskError covers MOVED too: the slot moved, the call did not run
                    replies = [
                        Skipped(f"{type(r).__name__}: {r}") if isinstance(r, STALE_SLOTS) else r for r in replies
                    ]
                self.health.recovered(node.name)
                out.append(replies)
        except BaseException:
            for entry in sent:
                if not isinstance(entry, BaseException):
                    entry[1].disconnect()  # replies may be left unread on it
            raise
        finally:
            for entry in sent:
                if not isinstance(entry, BaseException):
                    entry[0].connection_pool.release(entry[1])
        if stale:
            self.refresh()
        return out

    def _write(
        self, node: Any, indexes: list[int], calls: Sequence[Call], wait: bool
    ) -> tuple[Any, Any, list[int]] | BaseException:
        client = self.cluster.get_redis_connection(node)
        try:
            conn = client.connection_pool.get_connection()
        except NODE_ERRORS as exc:
            self.node_failed(node, exc)
            return exc
        commands: list[tuple[Any, ...]] = []
        for i in indexes:
            name, keys, args = calls[i]
            commands.append(("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args))
        if wait:
            # Same connection as the writes: WAIT counts the writes this connection made.
            commands.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except NODE_ERRORS as exc:
            conn.disconnect()
            client.connection_pool.release(conn)
            self.node_failed(node, exc)
            return exc
        return client, conn, indexes

    def _read(self, client: Any, conn: Any, n: int, wait: bool) -> list[Any]:
        replies: list[Any] = []
        for _ in range(n):
            try:
                replies.append(client.parse_response(conn, "EVALSHA"))
            except redis.ResponseError as exc:
                replies.append(exc)
        if wait:
            try:
                acked = int(client.parse_response(conn, "WAIT"))
            except redis.ResponseError as exc:
                return [exc] * n
            if short := replica_shortfall(acked, self.wait_replicas, self.wait_timeout_ms):
                return [r if isinstance(r, Exception) else short for r in replies]
        return replies


def first_error(replies: Sequence[Any]) -> list[Any]:
    """``replies`` when none is an error; else raises the first error (the all-or-nothing calls)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return list(replies)
