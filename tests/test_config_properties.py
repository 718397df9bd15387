"""Properties of parsing settings, over generated values (bounded: a few hundred examples, well under a second each)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supervisor.config import SETTINGS, ConfigError, QueueWeight, Setting, load_settings, parse_queues
from supervisor.core.queues import MAX_QUEUE_NAME, queue_name_problem

pytestmark = pytest.mark.timeout(60)

bounded = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

QUEUE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
queue_names = st.text(alphabet=QUEUE_CHARS, min_size=1, max_size=40).filter(lambda n: not n.endswith(":"))


def setting_of(variable: str) -> Setting:
    (found,) = [s for s in SETTINGS if s.variable == variable]
    return found


@bounded
@given(st.lists(st.tuples(queue_names, st.integers(1, 1000)), min_size=1, max_size=6, unique_by=lambda q: q[0]))
def test_any_valid_queue_list_round_trips(queues: list[tuple[str, int]]) -> None:
    text = ",".join(f"{name}:{weight}" for name, weight in queues)
    expected = tuple(QueueWeight(name, weight) for name, weight in queues)
    assert parse_queues(text, "ASYNQ_QUEUES") == expected
    assert load_settings(environ={"ASYNQ_QUEUES": text}).asynq.queues == expected


@bounded
@given(queue_names, st.characters(codec="utf-8").filter(lambda c: c not in QUEUE_CHARS + ","))
def test_a_queue_name_outside_the_alphabet_is_refused_naming_it(name: str, bad: str) -> None:
    wrong = f"q{bad}{name}"  # inside the name: whitespace around an entry is allowed and stripped
    assert queue_name_problem(wrong) is not None
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"ASYNQ_QUEUES": f"default:3,{wrong}:1"})
    assert err.value.variable == "ASYNQ_QUEUES"
    assert "\n" not in str(err.value)
    if bad not in "=;" and not bad.isspace() and bad.isprintable():
        assert repr(bad) in err.value.expected and "queue names use only" in err.value.expected


@bounded
@given(queue_names)
def test_the_client_and_the_daemon_agree_on_queue_names(name: str) -> None:
    assert (queue_name_problem(name) is None) == (len(name) <= MAX_QUEUE_NAME)


@pytest.mark.parametrize(
    ("variable", "low", "high"),
    [
        ("ASYNQ_WORKERS", 1, 512),
        ("ASYNQ_WORKER_CONCURRENCY", 1, 1000),
        ("ASYNQ_MAX_RETRY", 0, 10_000),
        ("ASYNQ_METRICS_PORT", 0, 65535),
        ("REDIS_DB", 0, 1_000_000),
        ("REDIS_WAIT_REPLICAS", 0, 100),
    ],
)
def test_integers_round_trip_in_range_and_are_refused_outside(variable: str, low: int, high: int) -> None:
    parse = setting_of(variable).parse

    @bounded
    @given(st.integers(low, high), st.sampled_from(["", " ", "+"]))
    def inside(value: int, decoration: str) -> None:
        assert parse(f"{decoration}{value}", variable) == value

    @bounded
    @given(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)))
    def outside(value: int) -> None:
        with pytest.raises(ConfigError) as err:
            parse(str(value), variable)
        assert err.value.variable == variable and f"from {low} to {high}" in err.value.expected

    inside()
    outside()


UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@bounded
@given(st.integers(0, 10_000), st.sampled_from(sorted(UNITS)))
def test_durations_round_trip(amount: int, unit: str) -> None:
    seconds = amount * UNITS[unit]
    parse = setting_of("ASYNQ_SHUTDOWN_TIMEOUT").parse
    if seconds <= 86400:
        assert parse(f"{amount}{unit}", "ASYNQ_SHUTDOWN_TIMEOUT") == pytest.approx(seconds)
    else:
        with pytest.raises(ConfigError, match="ASYNQ_SHUTDOWN_TIMEOUT"):
            parse(f"{amount}{unit}", "ASYNQ_SHUTDOWN_TIMEOUT")


@bounded
@given(st.sampled_from(["1", "true", "yes", "on", "0", "false", "no", "off"]), st.data())
def test_booleans_in_any_case(word: str, data: st.DataObject) -> None:
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    assert load_settings(environ={"REDIS_TLS": cased}).redis.tls is (word in ("1", "true", "yes", "on"))


@pytest.mark.parametrize("declared", SETTINGS, ids=lambda s: s.variable)
def test_any_text_parses_or_raises_config_error_naming_the_label(declared: Setting) -> None:
    """No value, however odd, escapes as another exception or blames another variable."""

    @settings(max_examples=40, deadline=None)
    @given(st.text(max_size=30))
    # Found by this test: text that str.strip() strips and int() refuses, a digit int() refuses,
    # and more digits than int() reads.
    @example("\x1c5")
    @example("5\x1f")
    @example("\u0663")
    @example("5" * 5000)
    def check(text: str) -> None:
        try:
            declared.parse(text, "--the-flag")
        except ConfigError as err:
            assert err.variable == "--the-flag"
            assert err.expected

    check()
