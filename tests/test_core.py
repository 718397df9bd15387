"""Unit tests for the pure core: queue order, lifecycle decisions, retry delays and the task envelope.

Nothing here touches Redis or the clock: every time is an argument the test controls.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import msgspec
import pytest

from supervisor.core import lifecycle
from supervisor.core import retry as retry_mod
from supervisor.core.queues import QueuePlan
from supervisor.core.retry import exponential_backoff, fixed_delay
from supervisor.core.task import (
    TaskMessage,
    TaskState,
    decode_message,
    encode_message,
    encode_payload,
    new_task_id,
)

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0


def message(**overrides: object) -> TaskMessage:
    fields: dict[str, object] = {
        "id": "task-1",
        "type": "email.send",
        "queue": "default",
        "payload": encode_payload({"to": "a@example.com", "n": 3}),
        "max_retry": 3,
        "enqueued_at": NOW - 100.0,
    }
    fields.update(overrides)
    return TaskMessage(**fields)  # type: ignore[arg-type]


# -- QueuePlan --------------------------------------------------------------------------------


class TestQueuePlan:
    def test_strict_sorts_by_weight_descending(self) -> None:
        plan = QueuePlan.from_pairs([("low", 1), ("critical", 6), ("default", 3)], strict=True)
        assert plan.names == ("critical", "default", "low")
        assert plan.weights == (6, 3, 1)
        assert plan.strict is True

    def test_strict_ties_keep_the_given_order(self) -> None:
        plan = QueuePlan.from_pairs([("b", 2), ("a", 5), ("c", 2), ("d", 5)], strict=True)
        assert plan.names == ("a", "d", "b", "c")

    def test_strict_order_is_always_the_plan_order(self) -> None:
        plan = QueuePlan.from_pairs([("low", 1), ("critical", 6), ("default", 3)], strict=True)
        rng = random.Random(7)
        for _ in range(200):
            assert plan.order(rng) == [0, 1, 2]

    def test_weighted_keeps_names_in_the_given_order(self) -> None:
        plan = QueuePlan.from_pairs([("low", 1), ("critical", 6)])
        assert plan.names == ("low", "critical")
        assert plan.weights == (1, 6)
        assert plan.strict is False

    def test_single_queue_order(self) -> None:
        plan = QueuePlan.from_pairs([("only", 4)])
        assert plan.order(random.Random(1)) == [0]

    def test_weighted_first_choice_follows_weights(self) -> None:
        weights = {"critical": 6, "default": 3, "low": 1}
        plan = QueuePlan.from_pairs(list(weights.items()))
        rng = random.Random(20240601)
        draws = 20_000
        first: Counter[str] = Counter()
        for _ in range(draws):
            order = plan.order(rng)
            assert sorted(order) == list(range(len(plan.names))), order
            first[plan.names[order[0]]] += 1
        total = sum(weights.values())
        for name, weight in weights.items():
            assert abs(first[name] / draws - weight / total) < 0.02, (name, first)

    def test_weighted_whole_orders_follow_sampling_without_replacement(self) -> None:
        # P(order) = product over positions of weight / weight still left.
        weights = (6, 3, 1)
        plan = QueuePlan.from_pairs(list(zip(("a", "b", "c"), weights, strict=True)))
        rng = random.Random(99)
        draws = 20_000
        seen = Counter(tuple(plan.order(rng)) for _ in range(draws))
        assert set(seen) <= set(itertools.permutations(range(3)))
        for perm in itertools.permutations(range(3)):
            left = sum(weights)
            p = 1.0
            for i in perm:
                p *= weights[i] / left
                left -= weights[i]
            assert abs(seen[perm] / draws - p) < 0.02, (perm, seen[perm] / draws, p)

    def test_weighted_orders_are_permutations_for_many_queues(self) -> None:
        plan = QueuePlan.from_pairs([(f"q{i}", i + 1) for i in range(7)])
        rng = random.Random(3)
        for _ in range(2_000):
            assert sorted(plan.order(rng)) == list(range(7))

    def test_same_seed_same_orders(self) -> None:
        plan = QueuePlan.from_pairs([("a", 1), ("b", 2), ("c", 3)])
        one = [plan.order(random.Random(5)) for _ in range(3)]
        rng1, rng2 = random.Random(11), random.Random(11)
        assert [plan.order(rng1) for _ in range(50)] == [plan.order(rng2) for _ in range(50)]
        assert one[0] == one[1] == one[2]

    @pytest.mark.parametrize(
        ("pairs", "match"),
        [
            ([], "at least one"),
            ([("a", 1), ("a", 2)], "duplicate"),
            ([("a", 1), ("b", 0)], "positive"),
            ([("a", -3)], "positive"),
        ],
    )
    def test_from_pairs_rejects(self, pairs: list[tuple[str, int]], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            QueuePlan.from_pairs(pairs)
        with pytest.raises(ValueError, match=match):
            QueuePlan.from_pairs(pairs, strict=True)


# -- lifecycle --------------------------------------------------------------------------------


class TestAfterFailure:
    def test_retries_while_retries_are_left(self) -> None:
        msg = message(max_retry=2)
        decision = lifecycle.after_failure(msg, "boom", NOW, 30.0)
        assert isinstance(decision, lifecycle.RetryLater)
        assert decision.at == NOW + 30.0
        assert decision.message.retried == 1
        assert decision.message.last_error == "boom"
        assert decision.message.last_failed_at == NOW
        # everything else is kept
        assert decision.message.id == msg.id
        assert decision.message.payload == msg.payload
        assert decision.message.max_retry == 2
        # the input is not mutated
        assert msg.retried == 0
        assert msg.last_error == ""

    def test_counts_up_then_archives(self) -> None:
        msg = message(max_retry=2)
        first = lifecycle.after_failure(msg, "e1", NOW, 1.0)
        assert isinstance(first, lifecycle.RetryLater)
        second = lifecycle.after_failure(first.message, "e2", NOW + 10, 1.0)
        assert isinstance(second, lifecycle.RetryLater)
        assert second.message.retried == 2
        assert second.message.last_error == "e2"
        third = lifecycle.after_failure(second.message, "e3", NOW + 20, 1.0)
        assert isinstance(third, lifecycle.Archive)
        # archiving does not count another retry
        assert third.message.retried == 2
        assert third.message.last_error == "e3"
        assert third.message.last_failed_at == NOW + 20

    def test_zero_max_retry_archives_at_once(self) -> None:
        decision = lifecycle.after_failure(message(max_retry=0), "boom", NOW, 5.0)
        assert isinstance(decision, lifecycle.Archive)
        assert decision.message.retried == 0
        assert decision.message.last_error == "boom"

    def test_final_archives_without_counting(self) -> None:
        msg = message(max_retry=5, retried=1)
        decision = lifecycle.after_failure(msg, "skip", NOW, 30.0, final=True)
        assert isinstance(decision, lifecycle.Archive)
        assert decision.message.retried == 1
        assert decision.message.last_error == "skip"
        assert decision.message.last_failed_at == NOW

    def test_negative_delay_retries_now(self) -> None:
        decision = lifecycle.after_failure(message(), "boom", NOW, -5.0)
        assert isinstance(decision, lifecycle.RetryLater)
        assert decision.at == NOW


class TestAfterWorkerDeath:
    def test_runs_again_now_counting_an_attempt(self) -> None:
        msg = message(max_retry=3, retried=1)
        decision = lifecycle.after_worker_death(msg, "killed by SIGKILL", NOW)
        assert isinstance(decision, lifecycle.RunAgainNow)
        assert decision.message.retried == 2
        assert decision.message.last_error == "killed by SIGKILL"
        assert decision.message.last_failed_at == NOW

    def test_archives_when_out_of_retries(self) -> None:
        msg = message(max_retry=3, retried=3)
        decision = lifecycle.after_worker_death(msg, "oom", NOW)
        assert isinstance(decision, lifecycle.Archive)
        assert decision.message.retried == 3
        assert decision.message.last_error == "oom"
        assert decision.message.last_failed_at == NOW

    def test_repeated_deaths_end_archived(self) -> None:
        msg = message(max_retry=2)
        outcomes = []
        for i in range(3):
            decision = lifecycle.after_worker_death(msg, f"death {i}", NOW + i)
            outcomes.append(type(decision))
            msg = decision.message
        assert outcomes == [lifecycle.RunAgainNow, lifecycle.RunAgainNow, lifecycle.Archive]
        assert msg.retried == 2
        assert msg.last_error == "death 2"


class TestTimeLimits:
    def test_own_timeout(self) -> None:
        assert lifecycle.time_limit(message(timeout=10.0), 60.0, NOW) == 10.0

    def test_default_timeout(self) -> None:
        assert lifecycle.time_limit(message(), 60.0, NOW) == 60.0

    def test_deadline_cuts_short(self) -> None:
        assert lifecycle.time_limit(message(timeout=10.0, deadline=NOW + 4.0), 60.0, NOW) == 4.0
        assert lifecycle.time_limit(message(deadline=NOW + 7.5), 60.0, NOW) == 7.5

    def test_far_deadline_does_not_extend(self) -> None:
        assert lifecycle.time_limit(message(timeout=10.0, deadline=NOW + 1000.0), 60.0, NOW) == 10.0

    def test_passed_deadline_gives_zero(self) -> None:
        assert lifecycle.time_limit(message(timeout=10.0, deadline=NOW - 5.0), 60.0, NOW) == 0.0

    def test_past_deadline(self) -> None:
        assert lifecycle.past_deadline(message(), NOW) is False  # no deadline
        assert lifecycle.past_deadline(message(deadline=NOW + 1.0), NOW) is False
        assert lifecycle.past_deadline(message(deadline=NOW), NOW) is True
        assert lifecycle.past_deadline(message(deadline=NOW - 1.0), NOW) is True

    def test_retries_left(self) -> None:
        assert lifecycle.retries_left(message(max_retry=1, retried=0)) is True
        assert lifecycle.retries_left(message(max_retry=1, retried=1)) is False


# -- retry delays -----------------------------------------------------------------------------


class TestRetryDelays:
    @pytest.mark.parametrize("n", [1, 5])
    def test_exponential_backoff_bounds(self, n: int) -> None:
        low, high = n**4 + 15, n**4 + 15 + 30 * (n + 1)
        seen = set()
        for _ in range(3_000):
            d = exponential_backoff(n)
            assert isinstance(d, float)
            assert low <= d <= high
            # the jitter moves in steps of n+1
            assert (d - low) % (n + 1) == 0
            seen.add(d)
        # it is jittered, not constant (31 possible values)
        assert len(seen) > 10

    @pytest.mark.parametrize("n", [1, 2, 5, 25])
    def test_exponential_backoff_extremes(self, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[int, int]] = []

        def pick(which: str):  # type: ignore[no-untyped-def]
            def randint(a: int, b: int) -> int:
                calls.append((a, b))
                return a if which == "low" else b

            return randint

        monkeypatch.setattr(retry_mod.random, "randint", pick("low"))
        assert exponential_backoff(n, RuntimeError("x")) == float(n**4 + 15)
        monkeypatch.setattr(retry_mod.random, "randint", pick("high"))
        assert exponential_backoff(n) == float(n**4 + 15 + 30 * (n + 1))
        assert calls == [(0, 30), (0, 30)]

    def test_exponential_backoff_grows(self) -> None:
        assert min(exponential_backoff(5) for _ in range(50)) > max(exponential_backoff(1) for _ in range(50))

    def test_fixed_delay(self) -> None:
        delay = fixed_delay(2.5)
        assert delay(1, None) == 2.5
        assert delay(10, ValueError("x")) == 2.5
        assert fixed_delay(0)(3) == 0

    @pytest.mark.parametrize("seconds", [-0.001, -1, -100.0])
    def test_fixed_delay_rejects_negative(self, seconds: float) -> None:
        with pytest.raises(ValueError, match="negative"):
            fixed_delay(seconds)


# -- the task envelope ------------------------------------------------------------------------


class TestEnvelope:
    def test_round_trip_with_defaults(self) -> None:
        msg = message()
        data = encode_message(msg)
        assert isinstance(data, bytes)
        back = decode_message(data)
        assert back == msg
        assert back.retried == 0
        assert back.headers == {}
        assert msgspec.msgpack.decode(back.payload) == {"to": "a@example.com", "n": 3}

    def test_round_trip_with_every_field(self) -> None:
        msg = message(
            retried=2,
            timeout=12.5,
            deadline=NOW + 3600,
            last_error="Traceback ...\nValueError: x",
            last_failed_at=NOW - 1.25,
            headers={"traceparent": "00-abc-def-01"},
        )
        back = decode_message(encode_message(msg))
        assert back == msg
        assert back.headers == {"traceparent": "00-abc-def-01"}
        assert back.last_failed_at == NOW - 1.25

    def test_defaults_are_omitted(self) -> None:
        plain = msgspec.msgpack.decode(encode_message(message()))
        assert "retried" not in plain
        assert "last_error" not in plain
        assert plain["id"] == "task-1"

    def test_unknown_fields_are_ignored(self) -> None:
        raw = msgspec.msgpack.decode(encode_message(message()))
        raw["added_by_a_newer_version"] = [1, 2]
        back = decode_message(msgspec.msgpack.encode(raw))
        assert back == message()

    @pytest.mark.parametrize(
        "garbage",
        [
            b"",
            b"\xc1",  # never-used MessagePack byte
            b"not msgpack at all",
            b"\x81\xa2id",  # truncated map
            b"\xff\xfe\xfd",
            encode_message(message())[:-3],  # truncated envelope
            msgspec.msgpack.encode({"id": "x"}),  # missing required fields
            msgspec.msgpack.encode([1, 2, 3]),
        ],
    )
    def test_garbage_raises_decode_error(self, garbage: bytes) -> None:
        with pytest.raises(msgspec.DecodeError):
            decode_message(garbage)

    def test_unencodable_payload_raises_type_error(self) -> None:
        with pytest.raises(TypeError, match="cannot be encoded"):
            encode_payload(object())

    def test_new_task_ids_are_unique_hex(self) -> None:
        ids = {new_task_id() for _ in range(1_000)}
        assert len(ids) == 1_000
        for tid in itertools.islice(ids, 20):
            assert len(tid) == 32
            int(tid, 16)

    def test_task_states_match_the_lua_scripts(self) -> None:
        assert [s.value for s in TaskState] == [
            "pending", "active", "scheduled", "retry", "archived", "canceled", "expired", "aggregating"
        ]  # fmt: skip
        assert TaskState.ACTIVE == "active"


def test_restart_backoff_doubles_for_idle_crashes_and_resets_after_work_or_a_healthy_minute() -> None:
    from supervisor.process.backoff import RestartBackoff

    b = RestartBackoff(initial=0.1, cap=1.0, healthy_after=60)
    assert [b.after_exit(0.5, crashed=True) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.after_exit(0.5, crashed=True, did_work=True) == 0.0  # it was doing useful work
    assert b.after_exit(0.5, crashed=True) == 0.1
    assert b.after_exit(61, crashed=True) == 0.0  # a healthy minute
    assert b.after_exit(0.5, crashed=False) == 0.0  # a planned exit
