"""The contract's messages besides the events describe exactly what today's writers send.

Each writer (the engine's status, a consumer's health and its last will, the state
documents and changes, dead letters, catch-up requests and replies, the answers to
control commands) is run for real and its bytes decoded with the contract's typed
decoder and encoded again: the same bytes, so swapping the writer for the Struct
changes nothing a reader sees. And the decoders refuse what does not fit, by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.catchup_client import decode_reply
from consumers.dead_letter import dead_letter
from consumers.folding import Folder
from consumers.projections import view_types
from consumers.publication import StateRenderer
from consumers.registry import BUILTIN, load_consumer
from consumers.runner import PUBLISHED_AT as RUNNER_PUBLISHED_AT
from consumers.runner import ConsumerRunner, RunnerSettings
from simulator.connection import parse_broker_url
from simulator.contract import (
    ENGINE_LOST,
    PUBLISHED_AT,
    SCHEMA_VERSION,
    CatchupRequest,
    ConsumerHealth,
    ConsumerLost,
    EngineLost,
    EngineStatus,
    PauseCommand,
    Rejection,
    SeekAccepted,
    SeekCommand,
    SpeedAccepted,
    SpeedCommand,
    decode_catchup_reply,
    decode_catchup_request,
    decode_consumer_health,
    decode_control,
    decode_dead_letter,
    decode_engine_status,
    decode_meta,
    decode_state,
    decode_state_changes,
    encode,
    sniff_encoding,
)
from simulator.errors import ContractError
from simulator.journal import JournalWriter
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.catchup import CatchupService
from simulator.replay.control import Pause, Resume, Seek, Speed, describe, parse_command
from simulator.replay.control import Rejection as ControlRejection
from simulator.replay.delivery import PUBLISHED_AT as DELIVERY_PUBLISHED_AT
from simulator.replay.engine import LOST_STATUS
from simulator.replay.testing import generated_events, generated_source
from simulator.sources import load_source

BROKER = parse_broker_url("mqtt://127.0.0.1:1")


def same_bytes(payload: bytes, decoded: Any) -> None:
    assert encode(decoded) == payload, f"{type(decoded).__name__} re-encodes differently"


class TestEngineStatus:
    @pytest.fixture
    def engine(self, tmp_path: Path) -> ReplayEngine:
        return ReplayEngine(generated_source("s1", cars=3, laps=4),
                            ReplaySettings(broker=BROKER, journal_path=tmp_path / "j.jsonl",
                                           speed=2.5, batch=4, encoding="msgpack"))

    def payload(self, engine: ReplayEngine, **extra: Any) -> bytes:
        return msgspec.json.encode(engine.status(**extra))

    def test_the_engine_status_round_trips(self, engine: ReplayEngine) -> None:
        """The engine's status document decodes into EngineStatus and re-encodes byte for byte."""
        payload = self.payload(engine)
        status = decode_engine_status(payload)
        assert isinstance(status, EngineStatus)
        assert (status.state, status.session_id, status.batch, status.encoding, status.speed) == (
            "running", "s1", 4, "msgpack", 2.5)
        assert status.total_events == engine.total_events
        same_bytes(payload, status)
        engine.set_speed(None)
        same_bytes(self.payload(engine), decode_engine_status(self.payload(engine)))
        assert decode_engine_status(self.payload(engine)).speed == "max"  # type: ignore[union-attr]

    @pytest.mark.parametrize("command", [Pause(), Resume(), Speed(factor=2.0), Speed(factor=None),
                                         Seek(to_ms=60_000)])
    def test_accepted_commands_round_trip(self, engine: ReplayEngine, command: Any) -> None:
        """The echo of every accepted command is one of the contract's Accepted structs."""
        payload = self.payload(engine, accepted=describe(command))
        status = decode_engine_status(payload)
        assert isinstance(status, EngineStatus) and status.accepted is not msgspec.UNSET
        same_bytes(payload, status)

    def test_accepted_values(self, engine: ReplayEngine) -> None:
        """A speed's factor and a seek's target come back as the contract types them."""
        speed = decode_engine_status(self.payload(engine, accepted=describe(Speed(factor=None))))
        seek = decode_engine_status(self.payload(engine, accepted=describe(Seek(to_ms=5))))
        assert isinstance(speed, EngineStatus) and isinstance(seek, EngineStatus)
        assert speed.accepted == SpeedAccepted(factor="max")
        assert seek.accepted == SeekAccepted(to_ms=5)

    @pytest.mark.parametrize("payload", [b"not json", b'{"command": "warp"}',
                                         b'{"command": "seek", "to": "99:00:00"}'])
    def test_rejections_round_trip(self, engine: ReplayEngine, payload: bytes) -> None:
        """A rejection, with or without a command name, is the contract's Rejection."""
        parsed = parse_command(payload)
        rejection = parsed if isinstance(parsed, ControlRejection) else engine.apply(parsed)
        assert isinstance(rejection, ControlRejection)
        doc = self.payload(engine, rejected=msgspec.structs.asdict(rejection))
        status = decode_engine_status(doc)
        assert isinstance(status, EngineStatus) and isinstance(status.rejected, Rejection)
        assert status.rejected.reason == rejection.reason
        same_bytes(doc, status)

    @pytest.mark.parametrize("extra", [{"state": "lost", "reason": "broker gone"},
                                       {"state": "finished"}, {"state": "stopped"},
                                       {"state": "error", "reason": "journal full"}])
    def test_final_states_round_trip(self, engine: ReplayEngine, extra: dict[str, Any]) -> None:
        """The states a run ends in, with their reason, fit EngineStatus exactly."""
        payload = self.payload(engine, **extra)
        status = decode_engine_status(payload)
        assert isinstance(status, EngineStatus) and status.state == extra["state"]
        same_bytes(payload, status)

    def test_the_last_will(self) -> None:
        """The engine's last will is the contract's EngineLost, byte for byte."""
        assert ENGINE_LOST == LOST_STATUS
        assert decode_engine_status(LOST_STATUS) == EngineLost(state="lost")

    def test_not_a_status(self) -> None:
        """Something else on the status topic is refused, naming the message and field."""
        with pytest.raises(ContractError, match=r"engine status: .*`\$.epoch`"):
            decode_engine_status(b'{"state": "running", "session_id": "s", "epoch": -1}')
        with pytest.raises(ContractError, match=r"engine status: .*`\$.state`"):
            decode_engine_status(b'{"state": "gone"}')
        with pytest.raises(ContractError, match="engine status"):
            decode_engine_status(b"[1, 2]")


class TestConsumerHealth:
    @pytest.fixture
    def runner(self, tmp_path: Path) -> ConsumerRunner:
        return ConsumerRunner(load_consumer("class-poles"), BROKER,
                              RunnerSettings(session_id="s1", state_dir=tmp_path))

    def test_health_round_trips(self, runner: ConsumerRunner) -> None:
        """The runner's health document is ConsumerHealth, byte for byte."""
        for event in generated_events("s1", cars=3, laps=2):
            runner.folder.apply(event)
        payload = runner.health_payload()
        health = decode_consumer_health(payload)
        assert isinstance(health, ConsumerHealth)
        assert (health.consumer, health.session_id, health.last_seq) == ("class-poles", "s1", 8)
        same_bytes(payload, health)

    def test_the_last_will(self, runner: ConsumerRunner) -> None:
        """The runner's last will is ConsumerLost, byte for byte."""
        payload = runner.health_report.lost_payload()
        lost = decode_consumer_health(payload)
        assert lost == ConsumerLost(state="lost", consumer="class-poles", session_id="s1",
                                    client_id=runner.client_id)
        same_bytes(payload, lost)

    def test_refused(self) -> None:
        with pytest.raises(ContractError, match=r"consumer health: .*`\$.state`"):
            decode_consumer_health(b'{"state": "sleeping"}')


QUALIFYING = Path(__file__).resolve().parents[1] / "scenarios" / "wec-2023-bahrain-qualifying.toml"


@pytest.fixture(scope="module", params=["race", "qualifying"])
def source_events(request: pytest.FixtureRequest, race_csv: Path) -> list[Any]:
    """The shared 2024 race, and the 2023 qualifying scenario (it has a championship)."""
    path = race_csv if request.param == "race" else QUALIFYING
    return list(load_source(str(path), session_id="s1").events())


class TestStateDocuments:
    @pytest.mark.parametrize("name", BUILTIN)
    def test_typed_documents_round_trip(self, name: str, source_events: list[Any]) -> None:
        """State documents and changes of the built-ins decode typed and re-encode exactly."""
        race_events = source_events
        types = view_types()[name]
        folder = Folder(load_consumer(name))
        renderer = StateRenderer(projection=name, session_id="s1")
        marks = {1, 40, len(race_events) // 3, len(race_events) // 2, len(race_events)}
        changes_seen = 0
        for seq, event in enumerate(race_events, 1):
            folder.apply(event)
            if seq not in marks:
                continue
            rendered = renderer.render(epoch=1, seq=seq, session_time_ms=event.session_time_ms,
                                       published_at_ns=123, view=folder.view())
            doc = decode_state(rendered.state, types.view)
            assert (doc.projection, doc.epoch, doc.seq, doc.published_at_ns) == (name, 1, seq, 123)
            same_bytes(rendered.state, doc)
            if rendered.changes_payload is not None:
                changes = decode_state_changes(rendered.changes_payload, types.row)
                same_bytes(rendered.changes_payload, changes)
                changes_seen += 1
        assert changes_seen >= 1

    def test_a_plugin_state_is_untyped(self) -> None:
        """A view the contract does not know decodes as it is."""
        renderer = StateRenderer(projection="lap-count", session_id="s1")
        rendered = renderer.render(epoch=2, seq=9, session_time_ms=5, published_at_ns=0,
                                   view={"7": 3, "8": 2})
        doc = decode_state(rendered.state)
        assert doc.state == {"7": 3, "8": 2}
        same_bytes(rendered.state, doc)
        assert rendered.changes_payload is not None
        assert decode_state_changes(rendered.changes_payload).changes == {"7": 3, "8": 2}

    def test_a_wrong_view_is_refused(self) -> None:
        """A running-order document whose rows are not rows names the path."""
        payload = msgspec.json.encode({"projection": "running-order", "session_id": "s",
                                       "epoch": 1, "seq": 1, "session_time_ms": 0,
                                       "published_at_ns": 0, "state": {"rows": [1]}})
        with pytest.raises(ContractError, match=r"state document \(RunningOrderView\)"):
            decode_state(payload, view_types()["running-order"].view)


class TestCatchup:
    def test_requests_round_trip(self) -> None:
        """The consumer's request (what MqttCatchup sends) decodes in JSON and msgpack."""
        for request in (CatchupRequest(epoch=2, from_seq=5), CatchupRequest(epoch=1, from_seq=1,
                                                                             to_seq=9)):
            for encoding in ("json", "msgpack"):
                payload = encode(request, encoding)  # type: ignore[arg-type]
                assert decode_catchup_request(payload) == request
        same_bytes(encode(CatchupRequest(epoch=1, from_seq=3)),
                   decode_catchup_request(encode(CatchupRequest(epoch=1, from_seq=3))))

    def test_replies_round_trip(self, tmp_path: Path) -> None:
        """The engine's reply chunks, and its refusals, re-encode byte for byte."""
        events = generated_events("s1", cars=4, laps=3)
        with JournalWriter(tmp_path / "j.jsonl", session_id="s1") as journal:
            for event in events:
                journal.append(1, event.seq, encode(event))
            journal.flush()
            service = CatchupService(journal, current_epoch=lambda: 1, session_id="s1",
                                     chunk_events=5)
            asked = [encode(CatchupRequest(epoch=1, from_seq=2)), b"{bad",
                     encode(CatchupRequest(epoch=7, from_seq=1))]
            chunks = [chunk for request in asked for chunk in service.replies(request)]
        replies = [decode_catchup_reply(chunk) for chunk in chunks]
        for chunk, reply in zip(chunks, replies, strict=True):
            same_bytes(chunk, reply)
            assert decode_reply(chunk) == reply  # the consumer's decoder agrees
        assert [e.seq for r in replies for e in r.events] == [e.seq for e in events[1:]]
        assert [r.error is not None for r in replies[-2:]] == [True, True]

    def test_newer_schema_in_a_reply(self) -> None:
        """An event of a newer schema version in a reply is refused with the path."""
        event = generated_events("s1", cars=1, laps=1)[1]
        newer = msgspec.structs.replace(event, schema_version=SCHEMA_VERSION + 1)
        payload = b'{"type":"CatchupReply","epoch":1,"events":[' + encode(newer) + b"]}"
        with pytest.raises(ContractError, match=r"catch-up reply: unknown schema version 2 "
                                                r"at `\$.events\[\].schema_version`"):
            decode_catchup_reply(payload)


class TestControl:
    @pytest.mark.parametrize("payload", [
        b'{"command":"pause"}', b'{"command":"resume"}', b'{"command":"speed","factor":2.0}',
        b'{"command":"speed","factor":"max"}', b'{"command":"speed","factor":"60"}',
        b'{"command":"seek","to":"1:00:00"}', b'{"command":"seek","to":"90"}',
        b'{"command":"seek","to":5000}',
    ])
    def test_what_the_engine_accepts_decodes(self, payload: bytes) -> None:
        """Every command shape the engine's parser takes is a ControlCommand."""
        assert not isinstance(parse_command(payload), ControlRejection)
        command = decode_control(payload)
        assert type(command).__name__.removesuffix("Command").lower() == (
            msgspec.json.decode(payload)["command"])
        same_bytes(payload, command)

    @pytest.mark.parametrize("payload", [
        b"nope", b'{"factor": 2}', b'{"command":"warp"}', b'{"command":"pause","now":true}',
        b'{"command":"speed"}', b'{"command":"seek","to":[1]}',
    ])
    def test_what_the_engine_rejects_does_not(self, payload: bytes) -> None:
        """What the engine rejects for its shape does not decode either."""
        assert isinstance(parse_command(payload), ControlRejection)
        with pytest.raises(ContractError, match="control command"):
            decode_control(payload)

    def test_typed(self) -> None:
        assert decode_control(b'{"command":"pause"}') == PauseCommand()
        assert decode_control(b'{"command":"speed","factor":"max"}') == SpeedCommand(factor="max")
        assert decode_control(b'{"command":"seek","to":5}') == SeekCommand(to=5)


class TestOthers:
    def test_dead_letters_round_trip(self) -> None:
        """The consumer's dead letter is the contract's DeadLetter, byte for byte."""
        for payload in (b"\x00garbage", b"x" * (70 * 1024)):
            letter = dead_letter(consumer="c", topic="t", reason="r", payload=payload)
            decoded = decode_dead_letter(letter)
            assert decoded.size == len(payload) and decoded.truncated == (len(payload) > 65536)
            same_bytes(letter, decoded)

    def test_meta(self) -> None:
        """Meta is a SessionStarted in either encoding; any other event is refused."""
        started, lap = generated_events("s1", cars=1, laps=1)[:2]
        for encoding in ("json", "msgpack"):
            assert decode_meta(encode(started, encoding)) == started  # type: ignore[arg-type]
        with pytest.raises(ContractError, match="meta: expected a SessionStarted"):
            decode_meta(encode(lap))

    def test_sniff(self) -> None:
        """One sniff for every payload: JSON objects, or msgpack."""
        assert sniff_encoding(b'  {"a": 1}') == "json"
        assert sniff_encoding(msgspec.msgpack.encode({"a": 1})) == "msgpack"
        assert sniff_encoding(b"") == "msgpack"

    def test_one_published_at_name(self) -> None:
        """The user property's name, as the engine and the runner spell it today."""
        assert PUBLISHED_AT == DELIVERY_PUBLISHED_AT == RUNNER_PUBLISHED_AT == "published_at_ns"
