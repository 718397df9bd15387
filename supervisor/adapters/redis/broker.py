"""The broker port implemented on Redis.

Each state change is one Lua script over the keys of one queue (see ``scripts/``), so that a task
is always in exactly one place: pending, owned (active, with a lease), scheduled, retry or
archived. Read-only views (``held_by``, ``expired``) are plain pipelined reads; the changes that
follow them are fenced by owner, so a stale view cannot do harm.

On a Redis Cluster (:func:`~supervisor.adapters.redis.connection.is_cluster`) three things change,
because a script may only touch the keys of one slot and each queue is a slot of its own:

- **Claim**: one ``claim.lua`` call per queue, in the worker's sampled weighted (or strict) order,
  stopping at the first that yields a task, instead of one call over every queue. Each queue is
  still tried with the probability its weight gives it, so weights stay exact. A batch (several
  tasks per claim) is taken only from the last queue of the order, i.e. when every other queue
  was just seen empty, which is what the single-server script checks too.
- **Doorbell**: an idle worker on one server blocks in one BRPOP over the wake-up lists of all of
  its queues. On a cluster a BRPOP may name keys of one slot only, and the queues are in different
  slots. Alternatives weighed: a per-worker wake key (the enqueuer would have to know every idle
  worker: a registry of listeners and a fan-out per enqueue), one blocking connection per queue
  (N sockets per worker, and a token popped on one while another one wins is a lost wake-up), or
  polling (asynq's choice on a cluster: latency up to the poll interval). Chosen: per-queue
  doorbell lists that all share one hash tag, ``{<ns>:wake}``, so they sit in one slot and one
  BRPOP still spans them. The enqueue script cannot push there (another slot), so the broker
  sends a tiny ``ring.lua`` call once the state change has answered: one more round trip, and
  never a token ahead of its task (rung in parallel, a doorbell on one node could wake a worker
  before the task existed on another, and the worker would sleep out its block). If a ring is
  lost (the client dies between the two, or the doorbell's node fails over) no task is lost: the
  worker's bounded BRPOP (``idle_block``) and its claim loop find the work a second or two later.
  Cost: every enqueue writes a few bytes to the doorbell slot's node; tokens are capped per queue
  like the single-server wake lists.
- **Registry**: the queue registry set is in its own slot too, so it is updated by a separate
  ``register.lua`` call sent with the doorbells rather than inside ``enqueue.lua``.
- **A node that fails fails alone** (:mod:`~supervisor.adapters.redis.nodes`): calls go out node
  by node, a node that did not answer is skipped for a back-off and probed with a short PING, and
  the per-node forms of the port (``claim_round``, ``complete_each``, ``held_by_each``; the
  sweeps' ``expired``, ``owners``, ``renew``) answer for the other nodes. The all-or-nothing
  forms (``claim_many``, ``complete_many``, ``held_by``) still raise when any node fails.

Durability across failover (``REDIS_WAIT_REPLICAS``): Redis replicates asynchronously, so a write
acknowledged by a primary that dies a moment later may never reach the replica that replaces it.
With the option on, every enqueue, completion, retry, archive and requeue is followed by ``WAIT n
timeout`` on the same connection, in the same round trip; a write that was not confirmed by ``n``
replicas raises :class:`ReplicaWaitTimeout` (a ``redis.TimeoutError``), which the worker treats
like a lost connection (back off, resend: every such call is fenced or idempotent) and the
producer sees as a failed enqueue it may resend with the same task id. Claims and lease renewals
do not wait: a claim lost in a failover only makes the task run again (at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import (
    BATCH_CHUNK,
    NODE_DOWN,
    WAKE_CAP,
    Call,
    ReplicaWaitTimeout,
    cluster_extras,
    ms,
    plan_submit,
    raw_id,
    replica_shortfall,
    ring_call,
    script_source,
    sort_replies,
)
from supervisor.adapters.redis.connection import close_after_fork, is_cluster
from supervisor.adapters.redis.endings import Endings
from supervisor.adapters.redis.errors import port_errors, translated
from supervisor.adapters.redis.flows import RedisFlowStore, done_call, done_reply
from supervisor.adapters.redis.keys import (
    MINUTE_COUNTERS_TTL,
    QueueKeys,
    doorbell_key,
    minute_of,
    periodic_key,
    queues_key,
    server_key,
    servers_key,
)
from supervisor.adapters.redis.limits import LimitedQueues
from supervisor.adapters.redis.nodes import ClusterCalls, NodeHealth, did_not_run, first_error, unanswered
from supervisor.adapters.redis.overlap import send_later
from supervisor.adapters.redis.owned import OwnedViews
from supervisor.adapters.redis.wakeclaim import claim_outcome, wait_then_claim
from supervisor.core.flow_store import MemberRecorded
from supervisor.core.flows import POLICY_CANCELED, successes_by_flow
from supervisor.core.ports import (
    CancelListener,
    CancelReply,
    Claimed,
    ClaimRound,
    Completion,
    Enqueued,
    Held,
    NewTask,
    Recorded,
)

__all__ = ["BATCH_CHUNK", "FORWARD_LIMIT", "WAKE_CAP", "RedisBroker", "ReplicaWaitTimeout"]

#: Due scheduled/retry tasks moved to pending per set per claim: bounds one script's run time.
FORWARD_LIMIT = 100
#: On a cluster whose doorbell node is down, how often an idle worker claims again instead.
DOORBELL_DOWN_POLL = 0.25


def _id(stored: bytes) -> str:
    """A stored id as the port's str: ``surrogateescape`` keeps bytes that are not UTF-8 exact."""
    return stored.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class _CompletionPlan:
    """complete.lua calls for a batch of completions, and where each task's reply lands."""

    calls: list[Call]
    positions: list[list[int]]  # per call, the indexes of its tasks in the batch
    size: int
    #: The flows whose joins lead ``calls`` (flow_done.lua, one call each), on a single server.
    joins: tuple[str, ...] = ()

    def flags(self, replies: Sequence[Any]) -> list[bool]:
        """Per completion in the batch's order: recorded (True) or fenced off (False); raises
        any failure (a join's too)."""
        return [o == Recorded.RECORDED for o in self.outcomes(first_error(replies))]

    def joined(self, replies: Sequence[Any]) -> list[tuple[str, MemberRecorded]]:
        """What each leading join did (after :meth:`flags`, which raised any failure)."""
        return [(flow_id, done_reply(reply)) for flow_id, reply in zip(self.joins, replies, strict=False)]

    def outcomes(self, replies: Sequence[Any]) -> list[Recorded]:
        """Per completion in the batch's order; UNREACHABLE where its node did not answer."""
        out = [Recorded.UNREACHABLE] * self.size
        for reply, positions in zip(replies[len(self.joins) :], self.positions, strict=True):
            if unanswered(reply):
                continue
            if isinstance(reply, Exception):
                raise reply
            for n, done in zip(positions, reply, strict=True):
                out[n] = Recorded.RECORDED if done else Recorded.REFUSED
        return out


@port_errors
class RedisBroker:
    """Tasks in Redis. One instance per process: it holds one redis-py client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "sv",
        archive_max_size: int = 10_000,
        archive_max_age: float = 90 * 86400.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self._flows: RedisFlowStore | None = None
        #: Set by :meth:`join_with_completions`: joins ride with their completions, then this.
        self._after_joins: Callable[[str, MemberRecorded], None] | None = None
        self.archive_max_size = archive_max_size
        self.archive_max_age = archive_max_age
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = ms(wait_timeout)
        #: A Redis Cluster client: one slot per script call, doorbells rung separately.
        self.cluster = is_cluster(client)
        #: Wake-up tokens the state-changing scripts push themselves (0 on a cluster: ring instead).
        self.wake_cap = 0 if self.cluster else WAKE_CAP
        self._keys: dict[str, QueueKeys] = {}
        self._claim_keys: dict[tuple[str, ...], list[str]] = {}
        scripts: tuple[str, ...] = (
            "enqueue",
            "enqueue_batch",
            "claim",
            "complete",
            "retry",
            "archive",
            "requeue",
            "renew",
        )
        scripts += ("ring", "register")  # a cluster's doorbell and queue registry
        scripts += ("cancel", "end")  # cancellation and expiry (endings.py)
        scripts += ("group_add",)  # a member of a group (core/aggregation.py)
        scripts += ("flow_done",)  # a workflow member's join, with its completion (flows.py)
        self._scripts = {name: client.register_script(script_source(name)) for name in scripts}
        #: A cluster's calls, node by node (one failing node fails only its own calls).
        self._nodes = ClusterCalls(client, self._scripts, wait_replicas, self.wait_timeout_ms, NodeHealth())
        self._views = OwnedViews(client, self.keys, self._nodes if self.cluster else None)
        self._endings = Endings(
            client, self.keys, self._run, namespace, lambda: (self.archive_max_size, self.archive_max_age),
            lambda calls: self._pipeline(calls),
        )  # fmt: skip
        #: Which queues have rate limits or caps (read once a second; see adapters/redis/limits.py).
        self._limited = LimitedQueues(client, namespace, self._nodes if self.cluster else None)

    # -- keys ---------------------------------------------------------------------------------

    def keys(self, queue: str) -> QueueKeys:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys.of(self.namespace, queue)
        return k

    def doorbell(self, queue: str) -> str:
        return doorbell_key(self.namespace, queue)

    def _run(self, script: str, keys: Sequence[str], args: Sequence[Any], *, durable: bool = False) -> Any:
        """One script call; ``durable`` ones WAIT for replicas when the option is on."""
        if durable and self.wait_replicas:
            return self._pipeline([(script, keys, args)], durable=True)[0]
        return self._scripts[script](keys=keys, args=args)

    def _pipeline(self, calls: Sequence[Call], *, durable: bool = False, preload: Sequence[str] = ()) -> list[Any]:
        """Several script calls in one round trip, after loading the ``preload`` scripts.

        EVALSHA goes out directly: redis-py's pipelines would first ask SCRIPT EXISTS, an extra
        round trip every time. A NOSCRIPT reply (the server restarted and lost its script cache)
        means that call did not run, so it is safe to load the script and send it again.
        ``durable``: the writes are followed by WAIT (see the module docstring). ``preload``: see
        calls.SubmitPlan.preload (on a cluster each node reloads what it lacks, call by call).
        """
        wait = durable and self.wait_replicas > 0
        if self.cluster:
            return first_error(self._nodes.run(calls, wait, skip_down=False))
        return self._send(calls, wait, preload)

    def _send(self, calls: Sequence[Call], wait: bool, preload: Sequence[str]) -> list[Any]:
        pending = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        for _ in range(2):
            pipe: Any = self.redis.pipeline(transaction=False)
            for name in preload:
                pipe.script_load(self._scripts[name].script)
            for i in pending:
                name, keys, args = calls[i]
                pipe.execute_command("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
            if wait:
                # Same pipeline, same connection: WAIT counts the writes this connection made.
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            replies = pipe.execute(raise_on_error=False)
            for reply in replies[: len(preload)]:
                if isinstance(reply, Exception):
                    raise reply
            replies, preload = replies[len(preload) :], ()
            if wait:
                acked = replies.pop()
                if isinstance(acked, Exception):
                    raise acked
            missing = sort_replies(pending, replies, results)
            if wait and (short := replica_shortfall(int(acked), self.wait_replicas, self.wait_timeout_ms)):
                raise short
            if not missing:
                return results
            for name in {calls[i][0] for i in missing}:
                self.redis.script_load(self._scripts[name].script)
            pending = missing
        raise NoScriptError("scripts were flushed again while being reloaded")

    # -- enqueue ------------------------------------------------------------------------------

    def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        # The calls are built by calls.plan_submit, shared with the async broker; results come
        # back in input order. On a cluster, the queue registrations and doorbells follow
        # (see calls.cluster_extras).
        plan = plan_submit(tasks, self.keys, self.namespace, cluster=self.cluster)
        if len(plan.calls) == 1 and not self.cluster:
            return plan.results([self._run(*plan.calls[0], durable=True)])
        results = plan.results(self._pipeline(plan.calls, durable=True, preload=plan.preload))
        if self.cluster:
            self._ring(cluster_extras(tasks, self.namespace))  # only once the tasks are stored
        return results

    def _ring(self, calls: Sequence[Call]) -> None:
        """A cluster's doorbells and registry, after the state change they follow answered.

        Their node failing does not fail the change (the tasks are stored): a lost ring costs an
        idle worker's bounded block, a lost registration is made by the queue's next enqueue, and
        the node's failure is logged (NodeHealth). So a down doorbell node stops no producer.
        """
        first_error([r for r in self._nodes.run(calls, False) if not unanswered(r)])

    def enqueue(self, queue: str, task_id: str, data: bytes, process_at: float | None) -> bool:
        return self.enqueue_many([(queue, task_id, data, process_at)])[0]

    def enqueue_many(self, items: Sequence[tuple[str, str, bytes, float | None]]) -> list[bool]:
        if not items:
            return []
        results = self.submit([NewTask(q, tid, data, at) for q, tid, data, at in items])
        return [code in (Enqueued.ENQUEUED, Enqueued.RESENT) for code, _ in results]

    # -- the worker's path --------------------------------------------------------------------

    def claim(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> Claimed | float | None:
        _, got = self.claim_many(worker_id, queues, lease_duration, now=now)
        return got[0] if isinstance(got, list) else got

    def claim_many(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int = 1,
        completions: Sequence[Completion] = (),
        *,
        now: float | None = None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:
        if self.cluster:
            got = self._claim_per_queue(worker_id, tuple(queues), lease_duration, max_batch, completions, now, False)
            if got.lost or Recorded.UNREACHABLE in got.recorded:
                raise redis.ConnectionError(f"Redis Cluster: no reply from the node(s) of {sorted(got.lost)}")
            return [r == Recorded.RECORDED for r in got.recorded], got.claimed
        return self._claim_one_call(worker_id, tuple(queues), lease_duration, max_batch, completions, now)

    def claim_round(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int = 1,
        completions: Sequence[Completion] = (),
        *,
        now: float | None = None,
    ) -> ClaimRound:
        if self.cluster:
            return self._claim_per_queue(worker_id, tuple(queues), lease_duration, max_batch, completions, now)
        flags, got = self._claim_one_call(worker_id, tuple(queues), lease_duration, max_batch, completions, now)
        return ClaimRound([Recorded.RECORDED if f else Recorded.REFUSED for f in flags], got)

    def claim_round_later(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (),
    ) -> Callable[[], ClaimRound]:  # fmt: skip
        if self.cluster:  # node by node, each with its own failure: not worth overlapping
            got = self.claim_round(worker_id, queues, lease_duration, max_batch, completions)
            return lambda: got
        order = tuple(queues)
        keys, args = self._claim_call(worker_id, order, lease_duration, max_batch, None)
        plan = self._complete_calls(completions, worker_id) if completions else None
        calls = [*(plan.calls if plan else ()), ("claim", keys, args)]
        wait = (self.wait_replicas, self.wait_timeout_ms) if plan and self.wait_replicas else None
        read = send_later(self.redis, self._scripts, calls, wait, lambda again: self._send(again, wait is not None, ()))

        def finish() -> ClaimRound:
            with translated():
                *done, reply = read()
                flags = plan.flags(done) if plan else []
            if plan:
                self._joined(plan, done)
            recorded = [Recorded.RECORDED if f else Recorded.REFUSED for f in flags]
            return ClaimRound(recorded, claim_outcome(order, reply))

        return finish

    def _claim_one_call(
        self,
        worker_id: str,
        order: tuple[str, ...],
        lease_duration: float,
        max_batch: int,
        completions: Sequence[Completion],
        now: float | None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:
        """A single server's claim: one claim.lua call over every queue, with the completions."""
        keys, args = self._claim_call(worker_id, order, lease_duration, max_batch, now)
        if completions:
            plan = self._complete_calls(completions, worker_id)
            *done, reply = self._pipeline([*plan.calls, ("claim", keys, args)], durable=True)
            flags = plan.flags(done)
            self._joined(plan, done)
        else:
            flags, reply = [], self._run("claim", keys, args)
        return flags, claim_outcome(order, reply)

    def _claim_call(
        self, worker_id: str, order: tuple[str, ...], lease_duration: float, max_batch: int, now: float | None
    ) -> tuple[list[str], tuple[Any, ...]]:
        """claim.lua's keys and arguments over every queue of ``order`` (a single server)."""
        keys = self._claim_keys.get(order)
        if keys is None:
            keys = self._claim_keys[order] = [key for q in order for key in self.keys(q).claim_keys()]
        return keys, self._claim_args(worker_id, lease_duration, max_batch, now) + self._flow(order)

    @staticmethod
    def _claim_args(worker_id: str, lease_duration: float, max_batch: int, now: float | None) -> tuple[Any, ...]:
        return ("" if now is None else repr(now), repr(lease_duration), worker_id, FORWARD_LIMIT, max_batch)

    def _flow(self, order: tuple[str, ...]) -> tuple[str, ...]:
        """claim.lua's flow-control argument, only when one of ``order`` has limits."""
        flags = self._limited.flags(order)
        return (flags,) if flags else ()

    def _claim_per_queue(
        self,
        worker_id: str,
        order: tuple[str, ...],
        lease_duration: float,
        max_batch: int,
        completions: Sequence[Completion],
        now: float | None,
        skip_down: bool = True,
    ) -> ClaimRound:
        """A cluster's claim: one call per queue in the given order, stopping at the first task.

        The completions ride with the first queue's claim (one pipeline per node, the nodes in
        parallel). A batch comes only from the last queue of the order: every other one was just
        found empty. Each queue's node uses its own clock (TIME): the wait until the next due task
        is the shortest of each node's own "due - now". A node that does not answer fails only
        its queues (``lost`` or ``skipped``) and its completions (UNREACHABLE). ``skip_down`` False:
        claim_many's all-or-nothing contract (try every node, raise at the first failure).
        """
        plan = self._complete_calls(completions, worker_id)
        recorded: list[Recorded] = []
        earliest: float | None = None
        lost: list[str] = []
        skipped: list[str] = []
        answered = False
        for n, queue in enumerate(order):
            args = self._claim_args(worker_id, lease_duration, max_batch if n == len(order) - 1 else 1, now)
            args += self._flow((queue,))
            call: Call = ("claim", self.keys(queue).claim_keys(), args)
            if n == 0:
                durable = bool(completions and self.wait_replicas)
                *done, reply = self._nodes.run([*plan.calls, call], durable, skip_down=skip_down)
                recorded = plan.outcomes(done)
                answered = any(r != Recorded.UNREACHABLE for r in recorded)
            else:
                [reply] = self._nodes.run([call], False, skip_down=skip_down)
            if not skip_down and (unanswered(reply) or Recorded.UNREACHABLE in recorded):
                # claim_many: fail at once, as before, rather than claim elsewhere and fail after.
                raise reply if unanswered(reply) else redis.ConnectionError("Redis Cluster: a completion's node failed")
            if unanswered(reply):
                (skipped if did_not_run(reply) else lost).append(queue)
                continue
            if isinstance(reply, Exception):
                raise reply
            answered = True
            if int(reply[0]) != 0:
                claimed = [Claimed(queue, _id(reply[i]), reply[i + 1] or None) for i in range(1, len(reply), 2)]
                return ClaimRound(recorded, claimed, tuple(lost), tuple(skipped))
            if reply[1]:
                wait = max(float(reply[1]) - float(reply[2]), 0.0)
                earliest = wait if earliest is None else min(earliest, wait)
        if not order and completions:
            recorded = plan.outcomes(self._nodes.run(plan.calls, bool(self.wait_replicas), skip_down=skip_down))
            answered = any(r != Recorded.UNREACHABLE for r in recorded)
        if not answered and (order or completions):
            raise redis.ConnectionError(f"Redis Cluster: no node answered for queues {list(order)}")
        return ClaimRound(recorded, earliest, tuple(lost), tuple(skipped))

    def wait_and_claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        timeout: float,
        max_batch: int = 1,
        *,
        now: float | None = None,
    ) -> ClaimRound:
        # One pipeline, BRPOP then claim.lua (wakeclaim.py). On a cluster the doorbells' node
        # need not hold the queues: wait, then claim.
        if self.cluster:
            self.wait_for_work(queues, timeout)
            return self.claim_round(worker_id, queues, lease_duration, max_batch, now=now)
        order, timeout = tuple(queues), max(timeout, 0.01)
        keys, args = self._claim_call(worker_id, order, lease_duration, max_batch, now)
        wake = [self.keys(q).wake for q in order]
        # The read of which queues have limits rides the wait when it falls due meanwhile (an idle
        # worker's once a second): no round trip of its own (limits.py's LimitedQueues).
        ride = self._limited.due_within(timeout)
        after = [self._limited.read_command()] if ride else []
        reply, answers = wait_then_claim(self.redis, self._scripts["claim"], wake, timeout, keys, args, after)
        if ride:
            self._limited.rode(answers[0])
        return ClaimRound([], claim_outcome(order, reply))

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        # BRPOP takes whole or fractional seconds; 0 would block forever, so floor it.
        timeout = max(timeout, 0.01)
        if not self.cluster:
            return self.redis.brpop([self.keys(q).wake for q in queues], timeout=timeout) is not None
        keys = [self.doorbell(q) for q in queues]
        node = self.redis.get_node_from_key(keys[0])  # type: ignore[attr-defined]
        if not self._nodes.usable(node):
            # The doorbells' node is down: poll (claim again soon) instead of blocking on it.
            time.sleep(min(timeout, DOORBELL_DOWN_POLL))
            return True
        try:
            return self.redis.get_redis_connection(node).brpop(keys, timeout=timeout) is not None  # type: ignore[attr-defined]
        except NODE_DOWN as exc:
            self._nodes.node_failed(node, exc)
            return True

    def complete(
        self,
        claimed: Claimed,
        worker_id: str,
        *,
        unique_key: str = "",
        record: bytes | None = None,
        retention: float = 0.0,
    ) -> bool:
        return self.complete_many([Completion(claimed, unique_key, record, retention)], worker_id)[0]

    def complete_many(self, completions: Sequence[Completion], worker_id: str) -> list[bool]:
        plan = self._complete_calls(completions, worker_id)
        replies = self._pipeline(plan.calls, durable=True)
        flags = plan.flags(replies)
        self._joined(plan, replies)
        return flags

    def join_with_completions(self, after: Callable[[str, MemberRecorded], None]) -> bool:
        """On a single server, each completion batch's joins lead its pipeline (one round trip
        where there were two; Redis runs a connection's commands in order, so a completion never
        lands without its join before it). Not on a cluster: a flow's slot is elsewhere."""
        if self.cluster:
            return False
        self._after_joins = after
        return True

    def _joined(self, plan: _CompletionPlan, replies: Sequence[Any]) -> None:
        if plan.joins and self._after_joins is not None:
            for flow_id, recorded in plan.joined(replies):
                self._after_joins(flow_id, recorded)

    def complete_each(self, completions: Sequence[Completion], worker_id: str) -> list[Recorded]:
        if not self.cluster:
            return [Recorded.RECORDED if f else Recorded.REFUSED for f in self.complete_many(completions, worker_id)]
        plan = self._complete_calls(completions, worker_id)
        out = plan.outcomes(self._nodes.run(plan.calls, self.wait_replicas > 0))
        if completions and all(r == Recorded.UNREACHABLE for r in out):
            raise redis.ConnectionError("Redis Cluster: no node answered for these completions")
        return out

    def _complete_calls(self, completions: Sequence[Completion], worker_id: str) -> _CompletionPlan:
        """One complete.lua call per queue for all of ``completions`` (a queue's keys share a slot).

        Per task the script takes four arguments and at most two keys of its own, where a call
        per task took six keys and six arguments: most of a worker's CPU per task went into
        packing those commands.
        """
        minute = minute_of(time.time())
        by_queue: dict[str, tuple[list[str | bytes], list[Any], list[int]]] = {}
        for n, f in enumerate(completions):
            queue = f.claimed.queue
            entry = by_queue.get(queue)
            if entry is None:
                k = self.keys(queue)
                entry = by_queue[queue] = (
                    [k.msg, k.state, k.lease, k.owner, k.processed, k.minute(minute)],
                    [worker_id, MINUTE_COUNTERS_TTL],
                    [],
                )
            keys, args, positions = entry
            raw = raw_id(f.claimed.task_id)
            if f.unique_key:
                keys.append(self.keys(queue).unique(f.unique_key))
            keep = f.record is not None and f.retention > 0
            if keep:
                keys.append(self.keys(queue).result(raw))
            args += (raw, "1" if f.unique_key else "0", ms(f.retention) if keep else "", f.record or b"")
            positions.append(n)
        calls: list[Call] = [("complete", keys, args) for keys, args, _ in by_queue.values()]
        joins: dict[str, list[tuple[int, str, bytes]]] = {}
        if self._after_joins is not None and not self.cluster:
            joins = successes_by_flow([c.flow for c in completions if c.flow is not None])
            calls[:0] = [done_call(self.namespace, f, outcomes, POLICY_CANCELED) for f, outcomes in joins.items()]
        where = [positions for _, _, positions in by_queue.values()]
        return _CompletionPlan(calls, where, len(completions), tuple(joins))

    def retry(self, claimed: Claimed, worker_id: str, data: bytes, retry_at: float) -> bool:
        k = self.keys(claimed.queue)
        return bool(
            self._run(
                "retry",
                (k.msg, k.state, k.lease, k.owner, k.retry, k.failed, k.minute(minute_of(time.time()))),
                (raw_id(claimed.task_id), worker_id, data, repr(retry_at), MINUTE_COUNTERS_TTL),
                durable=True,
            )
        )

    def archive(
        self,
        claimed: Claimed,
        worker_id: str,
        data: bytes,
        now: float,
        store_id: str | None = None,
        *,
        unique_key: str = "",
    ) -> bool:
        k = self.keys(claimed.queue)
        keys = [k.msg, k.state, k.lease, k.owner, k.archived, k.failed, k.minute(minute_of(now))]
        if unique_key:
            keys.append(k.unique(unique_key))
        return bool(
            self._run(
                "archive",
                keys,
                (
                    raw_id(claimed.task_id),
                    worker_id,
                    raw_id(claimed.task_id) if store_id is None else store_id,
                    data,
                    repr(now),
                    self.archive_max_size,
                    repr(now - self.archive_max_age),
                    MINUTE_COUNTERS_TTL,
                ),
                durable=True,
            )
        )

    # -- recovery -----------------------------------------------------------------------------

    def requeue(self, claimed: Claimed, owner: str, data: bytes | None, *, at_head: bool) -> bool:
        k = self.keys(claimed.queue)
        call: Call = (
            "requeue",
            (k.msg, k.state, k.lease, k.owner, k.pending, k.wake),
            (raw_id(claimed.task_id), owner, b"" if data is None else data, "1" if at_head else "0", self.wake_cap),
        )
        if self.cluster:
            done = bool(self._pipeline([call], durable=True)[0])
            if done:
                self._ring([ring_call(self.namespace, claimed.queue)])  # after the task is back (see submit)
            return done
        return bool(self._run(*call, durable=True))

    def owners(self, queues: Sequence[str]) -> set[str]:
        return set(self._views.owners(queues))

    def held_by(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        return self._views.held_by(worker_ids, queues, partial=False)[0]

    def held_by_each(self, worker_ids: Sequence[str], queues: Sequence[str]) -> tuple[list[Held], list[str]]:
        return self._views.held_by(worker_ids, queues, partial=True)

    def expired(self, queues: Sequence[str], limit: int = 100, *, now: float | None = None) -> list[Held]:
        return self._views.expired(queues, limit, now)

    def renew(
        self, worker_ids: Sequence[str], queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> int:
        if not worker_ids:
            return 0
        args = (repr(lease_duration), *worker_ids, "" if now is None else repr(now))
        if self.cluster:  # one call per queue (slot); a node that does not answer keeps its leases
            calls: list[Call] = [("renew", (self.keys(q).owner, self.keys(q).lease), args) for q in queues]
            replies = self._nodes.run(calls, False)
            answered = [r for r in replies if not unanswered(r)]
            if queues and not answered:
                raise redis.ConnectionError("Redis Cluster: no node answered the lease renewal")
            return sum(int(n) for n in first_error(answered))
        keys = [key for q in queues for key in (self.keys(q).owner, self.keys(q).lease)]
        return int(self._run("renew", keys, args))

    def heartbeat_server(self, server_id: str, info: dict[str, str | int | float], ttl: float) -> None:
        key = server_key(self.namespace, server_id)
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=dict(info))  # type: ignore[arg-type]
        pipe.pexpire(key, max(int(ttl * 1000), 1))
        pipe.zadd(servers_key(self.namespace), {server_id: now + ttl})
        pipe.zremrangebyscore(servers_key(self.namespace), "-inf", now - 86400)  # long-dead entries
        pipe.execute()

    def remove_server(self, server_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(server_key(self.namespace, server_id))
        pipe.zrem(servers_key(self.namespace), server_id)
        pipe.execute()

    def close(self) -> None:
        self.redis.close()

    def close_after_fork(self) -> None:
        """In a forked copy of this process: drop our copies of the sockets, leave the original's up."""
        close_after_fork(self.redis)

    def reset(self) -> None:
        """Drop the idle connections: the interrupted call's is among them (redis-py puts it back
        when a signal breaks into it). The ones other threads hold (the cancel listener's
        subscription, a progress write, a claim whose reply is read later) are theirs: cutting
        them made each of those threads see a dropped connection at every stop signal."""
        clients: list[Any] = [n.redis_connection for n in self.redis.get_nodes()] if self.cluster else [self.redis]  # type: ignore[attr-defined]
        for client in clients:
            if client is not None:
                client.connection_pool.disconnect(inuse_connections=False)

    # -- queue administration -----------------------------------------------------------------

    def periodic_records(self) -> dict[str, str]:
        raw: dict[bytes, bytes] = self.redis.hgetall(periodic_key(self.namespace))  # type: ignore[assignment]
        return {name.decode(): value.decode() for name, value in raw.items()}

    def save_periodic_record(self, name: str, record: str) -> None:
        self.redis.hset(periodic_key(self.namespace), name, record)

    def delete_periodic_record(self, name: str) -> None:
        self.redis.hdel(periodic_key(self.namespace), name)

    def known_queues(self) -> list[str]:
        members: set[bytes] = self.redis.smembers(queues_key(self.namespace))  # type: ignore[assignment]
        return sorted(q.decode() for q in members)

    # -- the producer's reads -------------------------------------------------------------------

    def task_states(self, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The stored state of each (queue, task id), None where the task is gone; one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id in tasks:
            pipe.hget(self.keys(queue).state, raw_id(task_id))  # any id the port hands out, junk bytes too
        return list(pipe.execute())

    def result_record(self, queue: str, task_id: str) -> bytes | None:
        """The completion record kept for a task enqueued with retention (None when there is none)."""
        data: bytes | None = self.redis.get(self.keys(queue).result(task_id))  # type: ignore[assignment]
        return data

    def task_envelope(self, queue: str, task_id: str) -> bytes | None:
        """The stored envelope of a task in any live state, or None (for ``wait``: an archived task's error)."""
        data: bytes | None = self.redis.hget(self.keys(queue).msg, raw_id(task_id))  # type: ignore[assignment]
        return data

    # -- cancellation and expiry (endings.py) ----------------------------------------------------

    def cancel(self, queue: str, task_id: str) -> CancelReply:
        return self._endings.cancel(queue, task_id)

    def cancel_many(self, tasks: Sequence[tuple[str, str]]) -> list[CancelReply]:
        return self._endings.cancel_many(tasks)

    def end_task(
        self, claimed: Claimed, worker_id: str, state: str, data: bytes | None, now: float, *, unique_key: str = ""
    ) -> bool:
        return self._endings.end_task(claimed, worker_id, state, data, now, unique_key)

    def canceled_among(self, queue: str, task_ids: Sequence[str]) -> list[str]:
        return self._endings.canceled_among(queue, task_ids)

    def cancel_listener(self) -> CancelListener:
        return self._endings.listener()

    def flow_store(self) -> RedisFlowStore:
        """Workflows' keys over this broker's connection (adapters/redis/flows.py)."""
        if self._flows is None:
            self._flows = RedisFlowStore(self.redis, self.namespace)
        return self._flows

    def progress_store(self) -> RedisBroker:
        return self

    def save_progress(self, entries: Sequence[tuple[str, str, bytes]], ttl: float) -> None:
        """Each task's latest progress, in its queue's slot, in one pipelined round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id, record in entries:
            pipe.set(self.keys(queue).progress(task_id), record, ex=max(1, int(ttl)))
        pipe.execute()

    def progress_record(self, queue: str, task_id: str) -> bytes | None:
        data: bytes | None = self.redis.get(self.keys(queue).progress(task_id))  # type: ignore[assignment]
        return data
