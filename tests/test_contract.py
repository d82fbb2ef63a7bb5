"""The wire contract: every event round-trips in JSON and msgpack; bad payloads name the field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.contract import (
    SCHEMA_VERSION,
    Batch,
    CarRetired,
    ChampionshipSetup,
    ChequeredFlag,
    Codec,
    Competitor,
    Disqualified,
    Entry,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    PointsRules,
    SectorCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
    TimePenalty,
    decode_event,
    decode_message,
    encode,
    events_of,
)
from simulator.errors import ContractError

ENVELOPE: dict[str, Any] = {"session_id": "bahrain-2024", "epoch": 2, "session_time_ms": 110_492}


def one_of_each() -> list[Event]:
    """One event of every type, with every optional part filled in somewhere."""
    setup = ChampionshipSetup(
        name="Hypercar drivers",
        standings=[Competitor(car="8", name="Buemi / Hartley / Hirakawa", points=133,
                              places=[2, 3, 1]),
                   Competitor(car="7", name="Conway / Kobayashi / López", points=118,
                              places=[3, 1], published=False)],
        rules=PointsRules(race_points=[38, 27, 23, 18, 15, 12, 9, 6, 3, 2],
                          championship_class="HYPERCAR"),
        rounds_remaining=0, pole_car="8")
    return [
        SessionStarted(**ENVELOPE, seq=1, series="FIA WEC", event_name="8 Hours of Bahrain",
                       session_kind=SessionKind.RACE,
                       scheduled_start="2024-03-02T14:00:24.054+03:00",
                       time_zone="Asia/Bahrain", classes=["HYPERCAR", "LMGT3"],
                       entries=[Entry(car="8", car_class="HYPERCAR", team="Toyota Gazoo Racing",
                                      manufacturer="Toyota",
                                      drivers=["Sébastien BUEMI", "Brendon HARTLEY"]),
                                Entry(car="007", car_class="LMGT3", team="Bond",
                                      synthesized=True)],
                       duration_ms=28_800_000, distance_laps=235, championship=setup,
                       source="test"),
        LapCompleted(**ENVELOPE, seq=2, car="8", driver="Sébastien BUEMI", lap=208,
                     lap_time_ms=110_492, sector_times_ms=[35_000, None, 33_000], in_pit=True,
                     pit_time_ms=76_688, flag=Flag.FCY, valid=False, synthesized=True),
        LapCompleted(**ENVELOPE, seq=3, car="7", driver="", lap=1, lap_time_ms=None),
        SectorCompleted(**ENVELOPE, seq=4, car="8", driver="Buemi", lap=3, sector=2,
                        sector_time_ms=42_010),
        LapDeleted(**ENVELOPE, seq=5, car="54", lap=175, reason="faster than the best"),
        TimePenalty(**ENVELOPE, seq=6, car="51", penalty_ms=295_000, reason="tyres"),
        Disqualified(**ENVELOPE, seq=7, car="99", reason="weight", synthesized=True),
        FlagChanged(**ENVELOPE, seq=8, flag=Flag.SAFETY_CAR, previous=Flag.GREEN),
        FlagChanged(**ENVELOPE, seq=9, flag=Flag.GREEN),
        ChequeredFlag(**ENVELOPE, seq=10, leader="8", laps=235),
        CarRetired(**ENVELOPE, seq=11, car="78", laps=36),
        SessionFinished(**ENVELOPE, seq=12),
    ]


def lap_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "LapCompleted", "schema_version": 1, "session_id": "s", "epoch": 1, "seq": 5,
        "session_time_ms": 1000, "car": "8", "driver": "Buemi", "lap": 3,
        "lap_time_ms": 110_492,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


class TestRoundTrip:
    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_every_event_type(self, encoding: str) -> None:
        """Every event type decodes to what was encoded, in both encodings."""
        events = one_of_each()
        assert {type(e) for e in events} == set(Event.__args__)  # type: ignore[attr-defined]
        for event in events:
            payload = encode(event, encoding)  # type: ignore[arg-type]
            assert decode_event(payload, encoding) == event  # type: ignore[arg-type]
            assert decode_message(payload) == event  # encoding sniffed

    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_batch(self, encoding: str) -> None:
        """A batch carries consecutive events and gives them back in order."""
        codec = Codec(encoding)  # type: ignore[arg-type]
        batch = Batch(events=one_of_each())
        decoded = codec.decode(codec.encode(batch))
        assert isinstance(decoded, Batch)
        assert events_of(decoded) == one_of_each()
        assert events_of(one_of_each()[0]) == [one_of_each()[0]]

    def test_json_is_tagged_and_exact(self) -> None:
        """JSON names the type, carries the envelope and writes times as integers."""
        payload = json.loads(encode(one_of_each()[1]))
        assert payload["type"] == "LapCompleted"
        assert payload["schema_version"] == SCHEMA_VERSION
        assert (payload["epoch"], payload["seq"]) == (2, 2)
        assert payload["lap_time_ms"] == 110_492 and isinstance(payload["lap_time_ms"], int)
        assert b"110492" in encode(one_of_each()[1])

    def test_added_fields_are_ignored(self) -> None:
        """A payload with a field this version does not know still decodes (fields only grow)."""
        event = decode_event(json.dumps(lap_payload(tyre="soft")).encode())
        assert isinstance(event, LapCompleted) and event.lap == 3

    def test_defaults(self) -> None:
        """Optional fields take their defaults: epoch 1, schema 1, green, valid."""
        payload = lap_payload(epoch=..., schema_version=...)
        event = decode_event(json.dumps(payload).encode())
        assert isinstance(event, LapCompleted)
        assert (event.epoch, event.schema_version, event.flag, event.valid) == (
            1, 1, Flag.GREEN, True)


class TestMalformed:
    @pytest.mark.parametrize(("changes", "field"), [
        ({"lap": 0}, "`$.lap`"),
        ({"lap": "3"}, "`$.lap`"),
        ({"lap": ...}, "`lap`"),
        ({"lap_time_ms": 110.492}, "`$.lap_time_ms`"),
        ({"lap_time_ms": -1}, "`$.lap_time_ms`"),
        ({"seq": 0}, "`$.seq`"),
        ({"car": ""}, "`$.car`"),
        ({"flag": "PURPLE"}, "`$.flag`"),
        ({"sector_times_ms": [1, "x"]}, "`$.sector_times_ms[1]`"),
        ({"type": "LapStarted"}, "`$.type`"),
        ({"session_time_ms": "1:50.492"}, "`$.session_time_ms`"),
    ])
    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_names_the_field(self, changes: dict[str, Any], field: str, encoding: str) -> None:
        """A malformed event raises ContractError naming the offending field."""
        payload = lap_payload(**changes)
        raw = json.dumps(payload).encode() if encoding == "json" else msgspec.msgpack.encode(
            payload)
        with pytest.raises(ContractError) as info:
            decode_event(raw, encoding)  # type: ignore[arg-type]
        assert field in str(info.value)
        with pytest.raises(ContractError):
            decode_message(raw)

    def test_in_a_batch(self) -> None:
        """A bad event inside a batch is named by its index."""
        batch = {"type": "Batch", "events": [lap_payload(), lap_payload(seq=6, lap=-2)]}
        with pytest.raises(ContractError, match=r"`\$\.events\[1\]\.lap`"):
            decode_message(json.dumps(batch).encode())

    @pytest.mark.parametrize("encoding", ["json", "msgpack"])
    def test_unknown_schema_version(self, encoding: str) -> None:
        """A newer schema version is refused, naming `$.schema_version`."""
        payload = lap_payload(schema_version=SCHEMA_VERSION + 1)
        raw = json.dumps(payload).encode() if encoding == "json" else msgspec.msgpack.encode(
            payload)
        message = r"unknown schema version 2 at `\$\.schema_version`"
        with pytest.raises(ContractError, match=message):
            decode_event(raw)
        with pytest.raises(ContractError, match="schema version"):
            decode_message(json.dumps({"type": "Batch", "events": [payload]}).encode())

    @pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[1, 2]", b"\xc1", b"null"])
    def test_garbage(self, raw: bytes) -> None:
        """Bytes that are no event at all raise ContractError, never another exception."""
        with pytest.raises(ContractError):
            decode_message(raw)
        with pytest.raises(ContractError):
            decode_event(raw, "json")


class TestExactTimes:
    def test_lap_time_is_exact(self) -> None:
        """1:50.492 travels as exactly 110492 ms in both encodings."""
        lap = one_of_each()[1]
        assert isinstance(lap, LapCompleted)
        for encoding in ("json", "msgpack"):
            decoded = decode_event(encode(lap, encoding), encoding)  # type: ignore[arg-type]
            assert isinstance(decoded, LapCompleted)
            assert decoded.lap_time_ms == 110_492
            assert type(decoded.lap_time_ms) is int


# --- hypothesis -----------------------------------------------------------------------

cars = st.text(alphabet="0123456789ABZ", min_size=1, max_size=4)
names = st.text(max_size=20)
ms = st.integers(0, 2**53)
envelope = st.fixed_dictionaries({
    "session_id": st.text(min_size=1, max_size=12), "epoch": st.integers(1, 1000),
    "seq": st.integers(1, 2**40), "session_time_ms": st.integers(-(2**40), 2**53),
})


@st.composite
def events(draw: st.DrawFn) -> Event:
    env = draw(envelope)
    kind = draw(st.sampled_from(["lap", "sector", "deleted", "penalty", "flag", "chequered",
                                 "retired", "finished"]))
    if kind == "lap":
        return LapCompleted(**env, car=draw(cars), driver=draw(names),
                            lap=draw(st.integers(1, 10_000)),
                            lap_time_ms=draw(st.none() | ms),
                            sector_times_ms=draw(st.lists(st.none() | ms, max_size=5)),
                            in_pit=draw(st.booleans()), pit_time_ms=draw(st.none() | ms),
                            flag=draw(st.sampled_from(list(Flag))), valid=draw(st.booleans()),
                            synthesized=draw(st.booleans()))
    if kind == "sector":
        return SectorCompleted(**env, car=draw(cars), lap=draw(st.integers(1, 10_000)),
                               sector=draw(st.integers(1, 9)), sector_time_ms=draw(ms))
    if kind == "deleted":
        return LapDeleted(**env, car=draw(cars), lap=draw(st.integers(1, 10_000)),
                          reason=draw(names))
    if kind == "penalty":
        return TimePenalty(**env, car=draw(cars), penalty_ms=draw(st.integers(-(10**9), 10**9)),
                           reason=draw(names))
    if kind == "flag":
        return FlagChanged(**env, flag=draw(st.sampled_from(list(Flag))),
                           previous=draw(st.none() | st.sampled_from(list(Flag))))
    if kind == "chequered":
        return ChequeredFlag(**env, leader=draw(cars), laps=draw(st.integers(0, 10_000)))
    if kind == "retired":
        return CarRetired(**env, car=draw(cars), laps=draw(st.integers(0, 10_000)))
    return SessionFinished(**env)


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(event=events(), encoding=st.sampled_from(["json", "msgpack"]))
    def test_round_trip(self, event: Event, encoding: str) -> None:
        """Any valid event survives encode then decode unchanged."""
        assert decode_event(encode(event, encoding), encoding) == event  # type: ignore[arg-type]

    @settings(max_examples=100, deadline=None)
    @given(batch=st.lists(events(), min_size=1, max_size=8))
    def test_batch_round_trip(self, batch: list[Event]) -> None:
        """Any batch of valid events survives both encodings, in order."""
        for encoding in ("json", "msgpack"):
            decoded = decode_message(encode(Batch(events=batch), encoding))  # type: ignore[arg-type]
            assert events_of(decoded) == batch

    @settings(max_examples=300, deadline=None)
    @given(raw=st.binary(max_size=64))
    def test_any_bytes(self, raw: bytes) -> None:
        """Arbitrary bytes decode to an event or raise ContractError, nothing else."""
        try:
            message = decode_message(raw)
        except ContractError:
            return
        assert events_of(message)
