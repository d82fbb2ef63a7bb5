"""The wire contract: every message lapcast publishes or reads, and how it is encoded.

This module is the one place the contract lives: the events (alone or batched), the
engine's status and the answers to control commands, the control commands, the
catch-up request and reply, the projections' state documents and changes, the
consumers' health and their dead letters. ``simulator.asyncapi`` describes them, topic
by topic, for other languages (``lapcast schema``). Rules it keeps:

* Every event is a frozen, keyword-only ``msgspec.Struct`` on one tagged base, so
  a payload names its own type (``"type": "LapCompleted"``) and decodes with one
  typed decoder, never into untyped dicts.
* Every event carries the envelope: ``schema_version``, ``session_id``,
  ``epoch`` (1, then +1 for every backward seek), ``seq`` (gapless from 1 within
  an epoch) and ``session_time_ms``. ``(epoch, seq)`` identifies an event.
* Times are integer milliseconds of session time. They never pass through floats.
* The schema only grows: new fields come with defaults, an existing field never
  changes its type. A payload of a newer ``schema_version`` than this code knows
  is refused with a clear error rather than half understood. A reader ignores the
  fields it does not know (a control command excepted: it must be exactly right).
* A field a writer leaves out unless it has something to say is ``UNSET`` (never
  ``null``), so a document is byte for byte what the writer always put on the wire.
* Each message kind has one typed decoder (``decode_*``), JSON or msgpack sniffed by
  ``sniff_encoding``, raising ``ContractError`` that names the message and the field.
* A log has an id, ``log_id`` (``simulator.logid``): on the ``SessionStarted`` the engine
  publishes (so on meta), in its status and catch-up replies, in state documents and
  consumer health. ``""`` means unknown (a writer older than log ids).
"""

from __future__ import annotations

import enum
import functools
from typing import Annotated, Any, Final, Generic, Literal, TypeAlias, TypeVar

import msgspec

from simulator.errors import ContractError

__all__ = [
    "ENGINE_LOST",
    "PUBLISHED_AT",
    "SCHEMA_VERSION",
    "Accepted",
    "Batch",
    "CarRetired",
    "CatchupReply",
    "CatchupRequest",
    "ChampionshipSetup",
    "ChequeredFlag",
    "Codec",
    "Competitor",
    "ConsumerHealth",
    "ConsumerLost",
    "ConsumerState",
    "ControlCommand",
    "DeadLetter",
    "Decoder",
    "Disqualified",
    "Encoding",
    "EngineLost",
    "EngineState",
    "EngineStatus",
    "Entry",
    "Enveloped",
    "Event",
    "EventBase",
    "Flag",
    "FlagChanged",
    "LapCompleted",
    "LapDeleted",
    "Message",
    "PauseAccepted",
    "PauseCommand",
    "PointsRules",
    "Rejection",
    "ResumeAccepted",
    "ResumeCommand",
    "SectorCompleted",
    "SeekAccepted",
    "SeekCommand",
    "SessionFinished",
    "SessionKind",
    "SessionStarted",
    "SpeedAccepted",
    "SpeedCommand",
    "SpeedFactor",
    "StateChanges",
    "StateDocument",
    "StateStamp",
    "TimePenalty",
    "changes_decoder",
    "decode_catchup_reply",
    "decode_catchup_request",
    "decode_consumer_health",
    "decode_control",
    "decode_dead_letter",
    "decode_engine_status",
    "decode_event",
    "decode_message",
    "decode_meta",
    "decode_state",
    "decode_state_changes",
    "decode_state_stamp",
    "encode",
    "envelope",
    "events_of",
    "sniff_encoding",
    "state_decoder",
    "unwrap_envelope",
]

SCHEMA_VERSION: Final = 1

NonNegativeMs = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
CarNumber = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]


class Flag(enum.StrEnum):
    """Track status, as shown at the finish line."""

    GREEN = "GREEN"
    YELLOW = "YELLOW"
    FCY = "FCY"
    CODE_60 = "CODE_60"
    VSC = "VSC"
    SAFETY_CAR = "SAFETY_CAR"
    RED = "RED"
    CHEQUERED = "CHEQUERED"


class SessionKind(enum.StrEnum):
    QUALIFYING = "qualifying"
    RACE = "race"
    PRACTICE = "practice"


# --- value objects carried inside events ---------------------------------------------


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One car of the entry list. ``car`` is a string: ``"007"`` and ``"7"`` differ."""

    car: CarNumber
    car_class: str
    team: str
    manufacturer: str = ""
    drivers: list[str] = []
    synthesized: bool = False


class Competitor(msgspec.Struct, frozen=True, kw_only=True):
    """A championship contender (a driver crew, scored by car) before the round."""

    car: CarNumber
    name: str
    points: int
    # Countback: how many 1st, 2nd, 3rd... places so far, best first.
    places: list[int] = []
    published: bool = True


class PointsRules(msgspec.Struct, frozen=True, kw_only=True):
    """Points for this round: a literal table (no rounding rule to get wrong)."""

    race_points: list[int]
    pole_points: int = 1
    # The class whose drivers' championship the projection follows.
    championship_class: str = ""


class ChampionshipSetup(msgspec.Struct, frozen=True, kw_only=True):
    """Standings before the round and the rules that apply to it."""

    name: str
    standings: list[Competitor]
    rules: PointsRules
    # Rounds after this one; 0 means this round decides the title.
    rounds_remaining: int = 0
    # Car that took the class pole for the race that follows (set for a race source
    # when qualifying has already happened; a qualifying source earns it live).
    pole_car: str | None = None


# --- events ---------------------------------------------------------------------------


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """The envelope every event carries."""

    schema_version: PositiveInt = SCHEMA_VERSION
    session_id: str
    epoch: PositiveInt = 1
    seq: PositiveInt
    session_time_ms: int


class SessionStarted(EventBase, frozen=True, kw_only=True):
    series: str
    event_name: str
    session_kind: SessionKind
    # ISO 8601 with its UTC offset, e.g. "2024-03-02T14:00:24.054+03:00".
    scheduled_start: str
    time_zone: str
    classes: list[str]
    entries: list[Entry]
    duration_ms: NonNegativeMs | None = None
    distance_laps: PositiveInt | None = None
    championship: ChampionshipSetup | None = None
    sectors: PositiveInt = 3
    source: str = ""
    # Values of this event that a scenario synthesized rather than took from a
    # publication, as dotted paths ("scheduled_start", "entries.25.drivers",
    # "championship.standings.51.places"). Empty for real timing exports.
    synthesized: list[str] = []
    # The log this event opens (``simulator.logid``): set by the engine as it publishes,
    # empty in a source and in journals written before log ids.
    log_id: str = ""


class LapCompleted(EventBase, frozen=True, kw_only=True):
    """A car crossed the line. ``session_time_ms`` is the moment of the crossing."""

    car: CarNumber
    driver: str
    lap: PositiveInt
    # None: the lap was not timed.
    lap_time_ms: NonNegativeMs | None
    sector_times_ms: list[NonNegativeMs | None] = []
    in_pit: bool = False
    pit_time_ms: NonNegativeMs | None = None
    flag: Flag = Flag.GREEN
    valid: bool = True
    synthesized: bool = False


class SectorCompleted(EventBase, frozen=True, kw_only=True):
    car: CarNumber
    driver: str = ""
    lap: PositiveInt
    sector: PositiveInt
    sector_time_ms: NonNegativeMs


class LapDeleted(EventBase, frozen=True, kw_only=True):
    car: CarNumber
    lap: PositiveInt
    reason: str
    synthesized: bool = False


class TimePenalty(EventBase, frozen=True, kw_only=True):
    """Added to the car's elapsed time: it delays every crossing, so it can cost laps."""

    car: CarNumber
    penalty_ms: int
    reason: str
    synthesized: bool = False


class Disqualified(EventBase, frozen=True, kw_only=True):
    car: CarNumber
    reason: str
    synthesized: bool = False


class FlagChanged(EventBase, frozen=True, kw_only=True):
    flag: Flag
    previous: Flag | None = None


class ChequeredFlag(EventBase, frozen=True, kw_only=True):
    """The leader completed the distance or the time: each car finishes at its next crossing."""

    leader: CarNumber
    laps: int


class CarRetired(EventBase, frozen=True, kw_only=True):
    car: CarNumber
    laps: int
    reason: str = "never took the chequered flag"


class SessionFinished(EventBase, frozen=True, kw_only=True):
    pass


Event: TypeAlias = (
    SessionStarted
    | LapCompleted
    | SectorCompleted
    | LapDeleted
    | TimePenalty
    | Disqualified
    | FlagChanged
    | ChequeredFlag
    | CarRetired
    | SessionFinished
)


class Batch(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """Consecutive events of one epoch in one MQTT message (the engine's ``--batch``)."""

    events: list[Event]


Message: TypeAlias = Event | Batch


class Enveloped(msgspec.Struct, frozen=True, kw_only=True, tag="envelope", tag_field="type"):
    """An events message under MQTT 3.1.1, which has no user properties: the engine's
    publish time (``published_at_ns``, what v5 carries as a user property) around the
    message, an event or a batch in the engine's encoding, spliced in byte for byte (the
    journal's line of an event is the same bytes). Under v5 no message is enveloped."""

    published_at_ns: int
    message: msgspec.Raw


# --- catch-up service (MQTT v5 request/response) -----------------------------------
# A request goes to ``.../catchup/request`` with an MQTT v5 ResponseTopic below
# ``.../catchup/reply/`` (the engine answers nowhere else) and a CorrelationData of the
# requester's choosing; every reply chunk goes to that topic with the same correlation
# data, in ``seq`` order. Replies are always JSON.



class CatchupRequest(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """Ask the engine for the events ``from_seq..to_seq`` (inclusive) of ``epoch``.

    ``to_seq`` None means "up to the last one journaled".
    """

    epoch: PositiveInt
    from_seq: PositiveInt
    to_seq: PositiveInt | None = None
    # MQTT 3.1.1 has no ResponseTopic or CorrelationData: the request carries them.
    # Under v5 they stay unset and the properties say it.
    reply_to: str | None = None
    correlation: str | None = None  # hex


class CatchupReply(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """One chunk of an answer; ``final`` marks the last chunk of the answer.

    ``error`` is set (and ``events`` empty) when the request was refused.
    ``last_seq`` is the last seq the engine has journaled for ``epoch``.
    """

    epoch: int
    events: list[Event] = []
    final: bool = True
    last_seq: int = 0
    current_epoch: int = 1
    error: str | None = None
    # The log the engine is replaying (``simulator.logid``); empty from an engine (or a
    # journal) older than log ids.
    log_id: str = ""
    # The request's ``correlation`` (hex), when it came in the payload (MQTT 3.1.1).
    correlation: str | None = None


# --- control commands (``.../control``) and their answers (on ``.../status``) ---------


class _ControlBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="command",
                   forbid_unknown_fields=True, omit_defaults=True):
    """A control command, JSON, as a person or a tool sends it. Unknown fields are refused:
    a command half understood would do the wrong thing.

    ``issued_at``: when it was sent (wall clock, ms since the epoch). The engine ignores
    a command older than a few seconds: MQTT 3.1.1 clears the retain flag of a message
    forwarded live, so a retained command replayed to a reconnecting engine is told
    apart by its age instead."""

    issued_at: int | None = None


class PauseCommand(_ControlBase, frozen=True, kw_only=True, tag="pause"):
    """Freeze the session clock (``{"command": "pause"}``)."""


class ResumeCommand(_ControlBase, frozen=True, kw_only=True, tag="resume"):
    """Start the session clock again."""


class SpeedCommand(_ControlBase, frozen=True, kw_only=True, tag="speed"):
    """``factor``: a number above 0 (also as text, ``"60"``), or ``"max"``: as fast as
    the broker acknowledges."""

    factor: float | str


class SeekCommand(_ControlBase, frozen=True, kw_only=True, tag="seek"):
    """``to``: session time, ``H:MM:SS[.fff]`` or seconds as text, or integer milliseconds.
    Backward, before an event already published, starts the next epoch."""

    to: int | str


ControlCommand: TypeAlias = PauseCommand | ResumeCommand | SpeedCommand | SeekCommand

# What the status echoes back: a speed as a factor or "max".
SpeedFactor: TypeAlias = float | Literal["max"]


class _AcceptedBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    """A command the engine carried out, as the status echoes it (normalised)."""


class PauseAccepted(_AcceptedBase, frozen=True, kw_only=True, tag="pause"):
    pass


class ResumeAccepted(_AcceptedBase, frozen=True, kw_only=True, tag="resume"):
    pass


class SpeedAccepted(_AcceptedBase, frozen=True, kw_only=True, tag="speed"):
    factor: SpeedFactor


class SeekAccepted(_AcceptedBase, frozen=True, kw_only=True, tag="seek"):
    to_ms: NonNegativeMs


Accepted: TypeAlias = PauseAccepted | ResumeAccepted | SpeedAccepted | SeekAccepted


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """A command refused, and why; it changed nothing. ``command`` is None when the
    payload named none (not JSON, or no ``command`` field)."""

    command: str | None
    reason: str


# --- the engine's status (``.../status``, retained) --------------------------------------

Encoding = Literal["json", "msgpack"]

# ``lost``: the engine died or lost its broker (its last will, or its own word with a
# reason); ``error``: it stopped on a fault, ``reason`` says which.
EngineState: TypeAlias = Literal["running", "paused", "finished", "stopped", "lost", "error"]


class EngineStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where the replay stands: published on every change and every half second.

    ``epoch``/``last_seq`` is the end of the log the engine has had acknowledged by the
    broker: a consumer believes a seq only as far as this says. ``accepted`` or
    ``rejected`` answers the control command just received; ``reason`` comes with
    ``lost`` and ``error``.
    """

    state: EngineState
    session_id: str
    epoch: NonNegativeInt
    last_seq: NonNegativeInt
    total_events: NonNegativeInt
    # Where the session clock stands, 0..end_ms.
    session_time_ms: NonNegativeMs
    end_ms: NonNegativeMs
    speed: SpeedFactor
    # How far behind its schedule the engine is (0 when on time, paused or at max).
    lag_ms: NonNegativeMs
    events_published: NonNegativeInt
    batch: PositiveInt
    encoding: Encoding
    reason: str | msgspec.UnsetType = msgspec.UNSET
    accepted: Accepted | msgspec.UnsetType = msgspec.UNSET
    rejected: Rejection | msgspec.UnsetType = msgspec.UNSET
    # The log being replayed (``simulator.logid``): the same for every run of the same
    # source with the same options, different for any other log.
    log_id: str = ""


class EngineLost(msgspec.Struct, frozen=True, kw_only=True):
    """The engine's last will on ``.../status``: the broker publishes it when the engine's
    connection dies. Nothing else is known then."""

    state: Literal["lost"]


# --- what consumers publish ---------------------------------------------------------------

V = TypeVar("V")
R = TypeVar("R")


class StateDocument(msgspec.Struct, Generic[V], frozen=True, kw_only=True):
    """A projection's whole view, retained on ``.../state/{projection}``, stamped with
    the ``(epoch, seq)`` of the last event it reflects: a late joiner sees it all at once
    and knows how fresh it is. ``state`` is the view (``lapcast fold --json`` prints the
    same); a plug-in's view is whatever it returns."""

    projection: str
    session_id: str
    epoch: PositiveInt
    seq: PositiveInt
    session_time_ms: int
    # The latest engine publish time (``published_at_ns``) among the events reflected.
    published_at_ns: NonNegativeInt
    # The log the stamp is a position in (empty: unknown, an engine older than log ids).
    log_id: str = ""
    state: V


class StateStamp(msgspec.Struct, frozen=True, kw_only=True):
    """The stamp of a state document alone, decoded without its view (latency probes
    read thousands of them a second)."""

    projection: str = ""
    session_id: str = ""
    epoch: NonNegativeInt = 0
    seq: NonNegativeInt = 0
    published_at_ns: NonNegativeInt = 0
    log_id: str = ""


class StateChanges(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """The rows of a view that changed since the previous publication, on
    ``.../state/{projection}/changes`` (not retained): keyed by car for a list of rows,
    by key for a mapping; ``null`` for a row that is gone."""

    projection: str
    session_id: str
    epoch: PositiveInt
    seq: PositiveInt
    changes: dict[str, R | None]


ConsumerState: TypeAlias = Literal["live", "catching-up", "stopped", "lost"]


class ConsumerHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer's health, retained on ``.../consumers/{name}/status``, at least once a
    second. ``epoch``/``last_seq``: what it has folded; ``head_*``: the end of the log as
    it knows it; ``lag_ms``: how long it has been behind (0 when caught up)."""

    consumer: str
    session_id: str
    client_id: str
    state: ConsumerState
    events_applied: NonNegativeInt
    epoch: NonNegativeInt
    last_seq: NonNegativeInt
    head_epoch: NonNegativeInt
    head_seq: NonNegativeInt
    lag_events: NonNegativeInt
    lag_ms: int
    pending: NonNegativeInt
    dead_letters: NonNegativeInt
    refused: NonNegativeInt
    duplicates: NonNegativeInt
    catchups: NonNegativeInt
    reconnects: NonNegativeInt
    checkpoints: NonNegativeInt
    # The log the folded state belongs to (empty until the engine has named it).
    log_id: str = ""
    # Why the consumer last dropped its state and folded from the start, e.g.
    # ``log changed``; absent when it never did.
    reset: str | msgspec.UnsetType = msgspec.UNSET


class ConsumerLost(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer's last will on its status topic: its connection died."""

    state: Literal["lost"]
    consumer: str
    session_id: str
    client_id: str


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What a consumer refused, on ``.../dead-letter``: the topic, why, and the original
    bytes (base64, cut at 64 KiB: ``truncated``; ``size`` is the original length)."""

    consumer: str
    topic: str
    reason: str
    payload_base64: str
    size: NonNegativeInt
    truncated: bool = False


# --- encoding -------------------------------------------------------------------------

# The MQTT v5 user property on every events message: the engine's wall clock
# (``time.time_ns()``) when it handed the message to the broker, for latency probes.
PUBLISHED_AT: Final = "published_at_ns"

T = TypeVar("T")

_json_encoder: Final = msgspec.json.Encoder()
_msgpack_encoder: Final = msgspec.msgpack.Encoder()


def encode(obj: Any, encoding: Encoding = "json") -> bytes:
    """Encode an event, a batch or any contract struct."""
    if encoding == "json":
        return _json_encoder.encode(obj)
    return _msgpack_encoder.encode(obj)


def sniff_encoding(payload: bytes) -> Encoding:
    """JSON or msgpack? Every contract message is an object: JSON starts with ``{``
    (after optional whitespace), a msgpack map never does."""
    return "json" if payload.lstrip()[:1] == b"{" else "msgpack"


_sniff = sniff_encoding  # the name this module used before


# --- the MQTT 3.1.1 envelope of an events message ---------------------------------------
# Recognised by its first bytes, so that a consumer tells an enveloped message from a
# bare one (a v5 engine's) at the cost of one prefix comparison.

_JSON_ENVELOPE: Final = b'{"type":"envelope","published_at_ns":'
_MSGPACK_ENVELOPE: Final = _msgpack_encoder.encode(
    Enveloped(published_at_ns=0, message=msgspec.Raw(b"\xc0")))[:15]
_envelope_json: Final = msgspec.json.Decoder(Enveloped)
_envelope_msgpack: Final = msgspec.msgpack.Decoder(Enveloped)


def envelope(payload: bytes, published_at_ns: int, encoding: Encoding = "json") -> bytes:
    """``payload`` (an encoded event or batch) inside an ``Enveloped``, same encoding."""
    if encoding == "json":  # the bytes msgspec would write, without building a Struct
        return b"%s%d,\"message\":%s}" % (_JSON_ENVELOPE, published_at_ns, payload)
    return _msgpack_encoder.encode(Enveloped(published_at_ns=published_at_ns,
                                             message=msgspec.Raw(payload)))


def unwrap_envelope(payload: bytes) -> tuple[bytes, int | None]:
    """The message inside an envelope and its publish time; a bare message as it is.

    A malformed envelope is returned whole (the caller's decoding then refuses it).
    """
    if payload.startswith(_JSON_ENVELOPE):
        decoder: msgspec.json.Decoder[Enveloped] | msgspec.msgpack.Decoder[Enveloped] = \
            _envelope_json
    elif payload.startswith(_MSGPACK_ENVELOPE):
        decoder = _envelope_msgpack
    else:
        return payload, None
    try:
        wrapped = decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return payload, None
    return bytes(wrapped.message), wrapped.published_at_ns


class Decoder(Generic[T]):
    """The typed decoder of one message kind, JSON or msgpack (sniffed unless given),
    built once and reused. ``ContractError`` names the message and the field."""

    __slots__ = ("_json", "_msgpack", "what")

    def __init__(self, type_: Any, what: str) -> None:
        self.what = what
        self._json: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self._msgpack: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(type_)

    def decode(self, payload: bytes, encoding: Encoding | None = None) -> T:
        enc = encoding or sniff_encoding(payload)
        try:
            if enc == "json":
                return self._json.decode(payload)
            return self._msgpack.decode(payload)
        except msgspec.DecodeError as exc:
            raise ContractError(f"{self.what}: {exc}" if self.what else str(exc)) from exc


def _check_versions(events: list[Event], where: str = "") -> None:
    for event in events:
        if event.schema_version > SCHEMA_VERSION:
            raise ContractError(
                f"{where}unknown schema version {event.schema_version} at "
                f"`$.{'events[].' if where else ''}schema_version` "
                f"of {type(event).__name__} seq {event.seq} "
                f"(this lapcast understands up to {SCHEMA_VERSION})"
            )


# Events keep msgspec's bare message (no prefix): their errors are quoted as they are.
_message: Final[Decoder[Message]] = Decoder(Message, "")
_event: Final[Decoder[Event]] = Decoder(Event, "")


def decode_message(payload: bytes, encoding: Encoding | None = None) -> Message:
    """Decode one MQTT payload: an event or a batch. Encoding is sniffed when not given.

    Raises ``ContractError`` naming the offending field (msgspec's ``$.path``).
    """
    message = _message.decode(payload, encoding)
    _check_versions(events_of(message))
    return message


def decode_event(payload: bytes, encoding: Encoding | None = None) -> Event:
    """Decode exactly one event (a journal line, for example)."""
    event = _event.decode(payload, encoding)
    _check_versions([event])
    return event


def events_of(message: Message) -> list[Event]:
    """The events a message carries, in order: one for an event, several for a batch."""
    if isinstance(message, Batch):
        return message.events
    return [message]


def decode_meta(payload: bytes, encoding: Encoding | None = None) -> SessionStarted:
    """The retained ``.../meta``: the session's ``SessionStarted``."""
    event = decode_event(payload, encoding)
    if not isinstance(event, SessionStarted):
        raise ContractError(f"meta: expected a SessionStarted, got a {type(event).__name__}")
    return event


_catchup_request: Final[Decoder[CatchupRequest]] = Decoder(CatchupRequest, "catch-up request")
_catchup_reply: Final[Decoder[CatchupReply]] = Decoder(CatchupReply, "catch-up reply")


def decode_catchup_request(payload: bytes) -> CatchupRequest:
    return _catchup_request.decode(payload)


def decode_catchup_reply(payload: bytes) -> CatchupReply:
    """A reply chunk; an event of a newer schema version in it is refused."""
    reply = _catchup_reply.decode(payload)
    _check_versions(reply.events, "catch-up reply: ")
    return reply


_control: Final[Decoder[ControlCommand]] = Decoder(ControlCommand, "control command")


def decode_control(payload: bytes) -> ControlCommand:
    """A control command as sent; the engine then checks its values (``"to"`` parses,
    the factor is above 0, the seek is within the session)."""
    return _control.decode(payload, "json")


class _Status(msgspec.Struct):
    state: str = ""


_status_state: Final[Decoder[_Status]] = Decoder(_Status, "engine status")
_engine_status: Final[Decoder[EngineStatus]] = Decoder(EngineStatus, "engine status")
_engine_lost: Final[Decoder[EngineLost]] = Decoder(EngineLost, "engine status")


def decode_engine_status(payload: bytes) -> EngineStatus | EngineLost:
    """The retained ``.../status``: a full status, or the engine's bare last will."""
    try:
        return _engine_status.decode(payload, "json")
    except ContractError:
        if _status_state.decode(payload, "json").state != "lost":
            raise
        return _engine_lost.decode(payload, "json")


_consumer_health: Final[Decoder[ConsumerHealth]] = Decoder(ConsumerHealth, "consumer health")
_consumer_lost: Final[Decoder[ConsumerLost]] = Decoder(ConsumerLost, "consumer health")


def decode_consumer_health(payload: bytes) -> ConsumerHealth | ConsumerLost:
    """The retained ``.../consumers/{name}/status``: a health report, or the last will."""
    try:
        return _consumer_health.decode(payload, "json")
    except ContractError:
        if _status_state.decode(payload, "json").state != "lost":
            raise
        return _consumer_lost.decode(payload, "json")


@functools.cache
def state_decoder(view_type: Any = Any) -> Decoder[StateDocument[Any]]:
    """The decoder of a state document whose view is ``view_type`` (``Any``: untyped),
    one per type, cached."""
    name = getattr(view_type, "__name__", str(view_type))
    return Decoder(StateDocument[view_type], f"state document ({name})")


@functools.cache
def changes_decoder(row_type: Any = Any) -> Decoder[StateChanges[Any]]:
    """The decoder of state changes whose rows are ``row_type`` (``Any``: untyped)."""
    name = getattr(row_type, "__name__", str(row_type))
    return Decoder(StateChanges[row_type], f"state changes ({name})")


def decode_state(payload: bytes, view_type: Any = Any) -> StateDocument[Any]:
    return state_decoder(view_type).decode(payload, "json")


_state_stamp: Final[Decoder[StateStamp]] = Decoder(StateStamp, "state document")


def decode_state_stamp(payload: bytes) -> StateStamp:
    """Only the stamp of a state document (its view is skipped, not decoded)."""
    return _state_stamp.decode(payload, "json")


def decode_state_changes(payload: bytes, row_type: Any = Any) -> StateChanges[Any]:
    return changes_decoder(row_type).decode(payload, "json")


_dead_letter: Final[Decoder[DeadLetter]] = Decoder(DeadLetter, "dead letter")


def decode_dead_letter(payload: bytes) -> DeadLetter:
    return _dead_letter.decode(payload, "json")


# The bytes of the last wills, set when connecting (they never change).
ENGINE_LOST: Final = encode(EngineLost(state="lost"))


class Codec:
    """An encoding chosen once (``--encoding json|msgpack``), reused for every message."""

    __slots__ = ("encoding",)

    def __init__(self, encoding: Encoding = "json") -> None:
        self.encoding: Encoding = encoding

    def encode(self, obj: Any) -> bytes:
        return encode(obj, self.encoding)

    def decode(self, payload: bytes) -> Message:
        return decode_message(payload, self.encoding)
