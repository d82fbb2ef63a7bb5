"""The wire contract: every event lapcast publishes, and how it is encoded.

This module is the one place the contract lives. Rules it keeps:

* Every event is a frozen, keyword-only ``msgspec.Struct`` on one tagged base, so
  a payload names its own type (``"type": "LapCompleted"``) and decodes with one
  typed decoder, never into untyped dicts.
* Every event carries the envelope: ``schema_version``, ``session_id``,
  ``epoch`` (1, then +1 for every backward seek), ``seq`` (gapless from 1 within
  an epoch) and ``session_time_ms``. ``(epoch, seq)`` identifies an event.
* Times are integer milliseconds of session time. They never pass through floats.
* The schema only grows: new fields come with defaults, an existing field never
  changes its type. A payload of a newer ``schema_version`` than this code knows
  is refused with a clear error rather than half understood.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from simulator.errors import ContractError

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "CarRetired",
    "CatchupReply",
    "CatchupRequest",
    "ChampionshipSetup",
    "ChequeredFlag",
    "Codec",
    "Competitor",
    "Disqualified",
    "Encoding",
    "Entry",
    "Event",
    "EventBase",
    "Flag",
    "FlagChanged",
    "LapCompleted",
    "LapDeleted",
    "Message",
    "PointsRules",
    "SectorCompleted",
    "SessionFinished",
    "SessionKind",
    "SessionStarted",
    "TimePenalty",
    "decode_event",
    "decode_message",
    "encode",
    "events_of",
]

SCHEMA_VERSION: Final = 1

NonNegativeMs = Annotated[int, msgspec.Meta(ge=0)]
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


# --- catch-up service (MQTT v5 request/response) -----------------------------------


class CatchupRequest(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """Ask the engine for the events ``from_seq..to_seq`` (inclusive) of ``epoch``.

    ``to_seq`` None means "up to the last one journaled".
    """

    epoch: PositiveInt
    from_seq: PositiveInt
    to_seq: PositiveInt | None = None


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


# --- encoding -------------------------------------------------------------------------

Encoding = Literal["json", "msgpack"]

_json_encoder: Final = msgspec.json.Encoder()
_msgpack_encoder: Final = msgspec.msgpack.Encoder()
_json_message_decoder: Final = msgspec.json.Decoder(Message)
_msgpack_message_decoder: Final = msgspec.msgpack.Decoder(Message)
_json_event_decoder: Final = msgspec.json.Decoder(Event)
_msgpack_event_decoder: Final = msgspec.msgpack.Decoder(Event)


def encode(obj: Any, encoding: Encoding = "json") -> bytes:
    """Encode an event, a batch or any contract struct."""
    if encoding == "json":
        return _json_encoder.encode(obj)
    return _msgpack_encoder.encode(obj)


def _check_versions(message: Message) -> Message:
    for event in events_of(message):
        if event.schema_version > SCHEMA_VERSION:
            raise ContractError(
                f"unknown schema version {event.schema_version} at `$.schema_version` "
                f"of {type(event).__name__} seq {event.seq} "
                f"(this lapcast understands up to {SCHEMA_VERSION})"
            )
    return message


def _sniff(payload: bytes) -> Encoding:
    # JSON events always start with "{" (after optional whitespace); msgpack maps never do.
    stripped = payload.lstrip()
    return "json" if stripped[:1] == b"{" else "msgpack"


def decode_message(payload: bytes, encoding: Encoding | None = None) -> Message:
    """Decode one MQTT payload: an event or a batch. Encoding is sniffed when not given.

    Raises ``ContractError`` naming the offending field (msgspec's ``$.path``).
    """
    enc = encoding or _sniff(payload)
    try:
        if enc == "json":
            message = _json_message_decoder.decode(payload)
        else:
            message = _msgpack_message_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ContractError(str(exc)) from exc
    return _check_versions(message)


def decode_event(payload: bytes, encoding: Encoding | None = None) -> Event:
    """Decode exactly one event (a journal line, for example)."""
    enc = encoding or _sniff(payload)
    try:
        event: Event
        if enc == "json":
            event = _json_event_decoder.decode(payload)
        else:
            event = _msgpack_event_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ContractError(str(exc)) from exc
    _check_versions(event)
    return event


def events_of(message: Message) -> list[Event]:
    """The events a message carries, in order: one for an event, several for a batch."""
    if isinstance(message, Batch):
        return message.events
    return [message]


class Codec:
    """An encoding chosen once (``--encoding json|msgpack``), reused for every message."""

    __slots__ = ("encoding",)

    def __init__(self, encoding: Encoding = "json") -> None:
        self.encoding: Encoding = encoding

    def encode(self, obj: Any) -> bytes:
        return encode(obj, self.encoding)

    def decode(self, payload: bytes) -> Message:
        return decode_message(payload, self.encoding)
