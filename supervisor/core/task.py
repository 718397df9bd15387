"""The task envelope: what travels through Redis, encoded with msgspec (MessagePack).

The envelope is immutable once enqueued except for the fields that record its history
(``retried``, ``last_error``, ``last_failed_at``); the worker or the supervisor re-encodes it
with those updated when a task is retried or archived. The payload stays a :class:`msgspec.Raw`
so the envelope can be read (by the worker, the CLI, the supervisor) without knowing the
payload's type; only the handler's declared type decodes it.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

import msgspec

from supervisor.core.errors import InvalidTaskError
from supervisor.core.limits import MAX_PAYLOAD_DEPTH, check_payload


class TaskState(enum.StrEnum):
    """Where a task is in its life. The string is what Redis stores."""

    PENDING = "pending"
    ACTIVE = "active"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    ARCHIVED = "archived"
    #: Ended by a cancel (Client.cancel, the CLI, the dashboard): never run again, never retried.
    CANCELED = "canceled"
    #: Not started before its ``expires`` time: never run.
    EXPIRED = "expired"

    #: Waiting in its group to become part of an aggregated task (core/aggregation.py).
    AGGREGATING = "aggregating"


#: States a task never leaves by itself (beside a completion, which keeps no state): what a
#: workflow join counts as finished. Canceled and expired tasks are kept like archived ones.
ENDED_STATES = frozenset({TaskState.CANCELED, TaskState.EXPIRED})


def has_ended(state: str | bytes | None) -> bool:
    """True for a task canceled or expired (a state as stored, text or bytes)."""
    text = state.decode() if isinstance(state, bytes) else state
    return text in ENDED_STATES


#: The "none" of the envelope's times and durations. One object: msgspec's ``omit_defaults`` tells a
#: float field at its default by identity, so a 0.0 made elsewhere would be written out (8 bytes
#: and its name, four times in every envelope); :func:`~supervisor.core.building.build_task` uses this one.
NO_TIME: float = 0.0


class TaskMessage(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """The envelope of one task.

    Times are seconds since the epoch (floats); ``timeout`` is seconds (0: the worker's default);
    ``deadline`` is an absolute time after which the task is archived instead of run (0: none).
    ``headers`` carries cross-cutting context such as the W3C trace context.
    """

    id: str
    type: str
    queue: str
    payload: msgspec.Raw
    max_retry: int
    enqueued_at: float
    retried: int = 0
    timeout: float = NO_TIME
    deadline: float = NO_TIME
    last_error: str = ""
    last_failed_at: float = NO_TIME
    headers: dict[str, str] = {}
    #: Key of the unique lock this task holds ('' = none): released when it completes or is archived.
    unique_key: str = ""
    #: Seconds to keep the task's result after it completes (0: keep nothing).
    retention: float = NO_TIME
    #: Time after which the task is not started any more: it ends ``expired`` (0: never).
    expires: float = NO_TIME
    #: ``<flow id>:<node>`` for a member of a workflow (core/flows.py); '' for a plain task.
    flow: str = ""
    #: The budget of a per-key rate limit or cap this task draws from ('' = none): ``<group>:<key>``,
    #: counted against the limit ``key:<group>`` of its queue (core/flow.py).
    limit_key: str = ""
    #: The group a member waits in, or the group an aggregated task was made of ('' = none).
    group: str = ""
    #: How many members an aggregated task was made of (0: not an aggregated task); its payload
    #: is then the list of their payloads.
    members: int = 0


class CompletedTask(msgspec.Struct):
    """What is kept of a completed task that asked for retention: its envelope and its result."""

    message: msgspec.Raw
    result: msgspec.Raw
    completed_at: float


_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(TaskMessage)
_completed_decoder = msgspec.msgpack.Decoder(CompletedTask)


def log_fields(message: TaskMessage, event: str, **more: Any) -> dict[str, Any]:
    """The structured fields every log line about a task carries (``extra=`` of a log call)."""
    return {
        "event": event,
        "task_id": message.id,
        "task_type": message.type,
        "queue": message.queue,
        "attempt": message.retried + 1,
        **more,
    }


def new_task_id() -> str:
    """A random task id (UUID4, 32 hex digits): unique without coordination."""
    return uuid.uuid4().hex


def encode_payload(payload: Any) -> msgspec.Raw:
    """Encode a handler payload (a Struct, dataclass, dict, list, scalar...) to MessagePack.

    Raises :class:`TypeError` for values msgspec cannot encode, and :class:`InvalidTaskError`
    for values MessagePack cannot hold (integers past 64 bits, text with lone surrogates) or
    that a worker could not be trusted to decode (see :mod:`supervisor.core.limits`),
    before anything reaches Redis.
    """
    try:
        encoded = _encoder.encode(payload)
    except RecursionError:
        raise InvalidTaskError(f"payload nests lists/maps more than {MAX_PAYLOAD_DEPTH} levels deep") from None
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"payload cannot be encoded with msgspec: {exc}") from exc
    except OverflowError:
        raise InvalidTaskError("payload holds an integer outside [-2**63, 2**64 - 1] (MessagePack's range)") from None
    except UnicodeEncodeError as exc:
        raise InvalidTaskError(f"payload holds text that is not valid UTF-8 (lone surrogates): {exc}") from None
    try:
        check_payload(encoded)
    except ValueError as exc:
        raise InvalidTaskError(str(exc)) from None
    return msgspec.Raw(encoded)


def bytes_payload(raw: bytes) -> msgspec.Raw:
    """``raw`` as a MessagePack bin payload, unchecked: to keep unreadable bytes for an operator."""
    return msgspec.Raw(_encoder.encode(raw))


def encode_message(message: TaskMessage) -> bytes:
    """The bytes stored in Redis for ``message``."""
    return _encoder.encode(message)


def decode_message(data: bytes) -> TaskMessage:
    """Decode stored bytes; raises :class:`msgspec.DecodeError` (or ValidationError) for garbage.

    Whatever the bytes are, nothing else escapes: a payload nested deeper than the stack allows
    (written by another producer or an older version) raises DecodeError too, so every reader
    (worker, supervisor, CLI) archives or shows it instead of dying on it.
    """
    message: TaskMessage = _guarded(_envelope_decoder.decode, data)
    return message


def _guarded(decode: Any, data: bytes) -> Any:
    try:
        return decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise
    except RecursionError:
        raise msgspec.DecodeError("nested too deeply to decode (more levels than the stack allows)") from None
    except Exception as exc:  # a decoder bug or an exotic input must not take a reader down
        raise msgspec.DecodeError(f"cannot be decoded: {type(exc).__name__}: {exc}") from None


def decode_value(data: bytes, decoder: Any = None) -> Any:
    """Decode MessagePack ``data`` (untyped, or with ``decoder``) with the guarantees of :func:`decode_message`."""
    return _guarded(decoder.decode if decoder is not None else msgspec.msgpack.decode, data)


def encode_completed(envelope: bytes, result: Any, completed_at: float) -> bytes:
    """The record kept for a task with retention; raises TypeError if msgspec cannot encode ``result``."""
    return _encoder.encode(CompletedTask(msgspec.Raw(envelope), encode_payload(result), completed_at))


def decode_completed(data: bytes) -> CompletedTask:
    """Decode a kept result record; raises msgspec.DecodeError for anything unreadable."""
    record: CompletedTask = _guarded(_completed_decoder.decode, data)
    return record
