"""Control commands: parsing and validation, and answers on the status topic over MQTT."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.errors import ControlError, LapcastError
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.control import Pause, Rejection, Resume, Seek, Speed, parse_command
from simulator.replay.pacing import ManualClock
from simulator.replay.testing import Recorder, generated_source


class TestParse:
    @pytest.mark.parametrize(("payload", "command"), [
        (b'{"command": "pause"}', Pause()),
        (b'{"command": "resume"}', Resume()),
        (b'{"command": "speed", "factor": 2.5}', Speed(factor=2.5)),
        (b'{"command": "speed", "factor": 60}', Speed(factor=60.0)),
        (b'{"command": "speed", "factor": "max"}', Speed(factor=None)),
        (b'{"command": "speed", "factor": "0.5"}', Speed(factor=0.5)),
        (b'{"command": "seek", "to": "1:00:00"}', Seek(to_ms=3_600_000)),
        (b'{"command": "seek", "to": "90.5"}', Seek(to_ms=90_500)),
        (b'{"command": "seek", "to": 1234}', Seek(to_ms=1234)),
        (b'{"command": "speed", "factor": 0.01}', Speed(factor=0.01)),
        (b'{"command": "speed", "factor": 1e7}', Speed(factor=10_000_000.0)),
    ])
    def test_good_commands(self, payload: bytes, command: Any) -> None:
        """Each documented form decodes to its command."""
        assert parse_command(payload) == command

    @pytest.mark.parametrize(("payload", "name", "reason"), [
        (b"{not json", None, "malformed JSON"),
        (b"", None, "malformed JSON"),
        (b"[1, 2]", None, 'no "command" field'),
        (b'{"command": "fly"}', "fly", "unknown command 'fly' (expected one of pause, resume"),
        (b'{"command": "speed", "factor": -2}', "speed", "out of range: from 0.01 to 10,000,000"),
        (b'{"command": "speed", "factor": 0}', "speed", "out of range"),
        (b'{"command": "speed", "factor": 5e-324}', "speed", "out of range"),
        (b'{"command": "speed", "factor": 1e-300}', "speed", "out of range"),
        (b'{"command": "speed", "factor": "1e-300"}', "speed", "out of range"),
        (b'{"command": "speed", "factor": 0.009}', "speed", "out of range"),
        (b'{"command": "speed", "factor": 10000001}', "speed", "out of range"),
        (b'{"command": "speed", "factor": "inf"}', "speed", "out of range"),
        (b'{"command": "speed", "factor": "nan"}', "speed", "out of range"),
        (b'{"command": "speed", "factor": 1e999}', "speed", "invalid speed command"),
        (b'{"command": "seek", "to": 1e400}', "seek", "invalid seek command"),
        (b'{"command": "seek", "to": "' + b"9" * 5000 + b'"}', "seek", "not a session time"),
        (b'{"command": "speed", "factor": "fast"}', "speed", "neither a number nor"),
        (b'{"command": "speed"}', "speed", "invalid speed command"),
        (b'{"command": "speed", "factor": true}', "speed", "invalid speed command"),
        (b'{"command": "seek", "to": "soon"}', "seek", "not a session time"),
        (b'{"command": "seek", "to": -1}', "seek", "cannot be negative"),
        (b'{"command": "pause", "extra": 1}', "pause", "invalid pause command"),
    ])
    def test_bad_commands_are_rejected_with_a_reason(self, payload: bytes, name: str | None,
                                                     reason: str) -> None:
        """Anything else is a Rejection naming the command (if any) and what is wrong."""
        result = parse_command(payload)
        assert isinstance(result, Rejection)
        assert result.command == name
        assert reason in result.reason
        assert len(result.reason) < 200  # what was sent is echoed cut short

    def test_the_bounds_are_those_of_the_engine(self, session_id: str,
                                                tmp_path: Path) -> None:
        """In-process, ``set_speed`` refuses what the topic refuses; at the slowest speed
        allowed the lag stays a finite number (5e-324 once overflowed it)."""
        engine = ReplayEngine(generated_source(session_id, cars=1, laps=2), ReplaySettings(
            broker=parse_broker_url("mqtt://127.0.0.1:1"), journal_path=tmp_path / "j"),
            clock=ManualClock(0.0))
        for factor in (5e-324, 1e-300, 0.0, -1.0, float("inf"), float("nan"), 1e8):
            with pytest.raises(ControlError, match="out of range"):
                engine.set_speed(factor)
        engine.set_speed(0.01)
        assert engine.lag_ms() == 0 and engine.pacer.speed == 0.01
        for bad in (dict(speed=5e-324), dict(batch=0), dict(batch=10_001), dict(window=0),
                    dict(window=65_536), dict(linger_ms=float("nan")), dict(start_ms=-1)):
            with pytest.raises(LapcastError, match=r"out of range|negative"):
                ReplayEngine(generated_source(session_id, cars=1, laps=2), ReplaySettings(
                    broker=parse_broker_url("mqtt://127.0.0.1:1"),
                    journal_path=tmp_path / "j", **bad))  # type: ignore[arg-type]


def _status_docs(recorder: Recorder, session: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(m.payload) for m in recorder.on(topics.status(session))]


class TestOverMqtt:
    async def test_bad_control_messages_are_answered_and_change_nothing(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """Malformed JSON, an unknown command, a negative speed and a seek past the end each
        get a rejection with its reason on status; state, epoch, speed, clock and journal
        stay as they were."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=3, laps=10)
        journal = tmp_path / "c.jsonl"
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=journal, speed=2.0),
            clock=clock)
        settings = parse_broker_url(broker.url)
        bad = [
            (b"{not json", "malformed JSON"),
            (b'{"command": "rewind"}', "unknown command 'rewind'"),
            (b'{"command": "speed", "factor": -3}', "out of range"),
            (b'{"command": "seek", "to": "99:00:00"}', "past the end of the session"),
        ]
        async with Recorder(settings, [topics.status(session_id),
                                       topics.events(session_id)]) as recorder, \
                aiomqtt.Client(**settings.client_kwargs()) as operator:
            task = asyncio.create_task(engine.run())
            try:
                await engine.wait_connected()
                await recorder.wait_for(lambda r: len(r.on(topics.events(session_id))) == 1)
                before = engine.status()
                journal_before = journal.read_bytes()
                for payload, reason in bad:
                    await operator.publish(topics.control(session_id), payload, qos=1)
                    await recorder.wait_for(lambda r, reason=reason: any(
                        reason in d.get("rejected", {}).get("reason", "")
                        for d in _status_docs(r, session_id)))
                after = engine.status()
                events_after = len(recorder.on(topics.events(session_id)))
                # Then a good one is accepted and applied.
                await operator.publish(topics.control(session_id),
                                       b'{"command": "pause"}', qos=1)
                await recorder.wait_for(lambda r: any(
                    d.get("accepted") == {"command": "pause"} and d["state"] == "paused"
                    for d in _status_docs(r, session_id)))
            finally:
                engine.stop()
                await asyncio.wait_for(task, 20)
        keys = ("state", "epoch", "speed", "session_time_ms", "last_seq", "events_published")
        assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
        assert journal.read_bytes() == journal_before
        assert events_after == 1
        rejections = [d["rejected"] for d in _status_docs(recorder, session_id)
                      if "rejected" in d]
        assert [r["command"] for r in rejections] == [None, "rewind", "speed", "seek"]
        assert all(d["state"] == "running" for d in _status_docs(recorder, session_id)
                   if "rejected" in d)

    async def test_commands_drive_the_replay(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """seek, speed and resume sent on the control topic act as the methods do."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=2, laps=20, lap_ms=60_000, spread_ms=100)
        times = [e.session_time_ms for e in source.events()]
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=tmp_path / "c.jsonl",
            speed=1.0), clock=clock)
        settings = parse_broker_url(broker.url)
        events = topics.events(session_id)
        async with Recorder(settings, [events]) as recorder, \
                aiomqtt.Client(**settings.client_kwargs()) as operator:
            task = asyncio.create_task(engine.run())
            try:
                await engine.wait_connected()
                control = topics.control(session_id)
                await operator.publish(control, b'{"command": "pause"}', qos=1)
                await operator.publish(control, b'{"command": "seek", "to": "0:10:00"}', qos=1)
                upto = sum(1 for t in times if t <= 600_000)
                # Paused: the seek moves the clock but nothing goes out yet.
                await asyncio.sleep(0.2)
                assert len(recorder.on(events)) == 1
                await operator.publish(control, b'{"command": "speed", "factor": 10}', qos=1)
                await operator.publish(control, b'{"command": "resume"}', qos=1)
                await recorder.wait_for(lambda r: len(r.on(events)) == upto)
                clock.advance(6.0)  # 60 s of session at 10x
                upto = sum(1 for t in times if t <= 660_000)
                await recorder.wait_for(lambda r: len(r.on(events)) == upto)
                assert engine.pacer.speed == 10.0
            finally:
                engine.stop()
                await asyncio.wait_for(task, 20)
        assert [e.seq for e in recorder.events(events)] == list(range(1, upto + 1))

    async def test_retained_control_messages_are_ignored(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """A retained command (left over from an earlier run) does not act on a new engine."""
        settings = parse_broker_url(broker.url)
        async with aiomqtt.Client(**settings.client_kwargs()) as operator:
            await operator.publish(topics.control(session_id), b'{"command": "pause"}',
                                   qos=1, retain=True)
        source = generated_source(session_id, cars=2, laps=3)
        engine = ReplayEngine(source, ReplaySettings(
            broker=settings, journal_path=tmp_path / "c.jsonl", speed=None,
            exit_when_done=True))
        await asyncio.wait_for(engine.run(), 20)
        assert engine.finished and not engine.paused

    async def test_a_retained_command_sent_while_running_is_ignored(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """A retained ``pause`` published live (MQTT v5, retain-as-published) is not obeyed;
        the same command sent without retain is, and is answered."""
        settings = parse_broker_url(broker.url)
        source = generated_source(session_id, cars=2, laps=50)
        engine = ReplayEngine(source, ReplaySettings(
            broker=settings, journal_path=tmp_path / "c.jsonl", speed=1.0),
            clock=ManualClock(0.0))
        async with Recorder(settings, [topics.status(session_id)]) as recorder, \
                aiomqtt.Client(**settings.client_kwargs()) as operator:
            task = asyncio.create_task(engine.run())
            try:
                await engine.wait_connected()
                await operator.publish(topics.control(session_id), b'{"command": "pause"}',
                                       qos=1, retain=True)
                # A marker sent after it: once it is answered, the retained one has been
                # delivered (one connection, in order) and was not acted upon.
                await operator.publish(topics.control(session_id),
                                       b'{"command": "speed", "factor": 3}', qos=1)
                await recorder.wait_for(lambda r: any(
                    d.get("accepted") == {"command": "speed", "factor": 3.0}
                    for d in _status_docs(r, session_id)))
                assert not engine.paused
                assert not any(d.get("accepted") == {"command": "pause"}
                               for d in _status_docs(recorder, session_id))
                await operator.publish(topics.control(session_id), b'{"command": "pause"}',
                                       qos=1)
                await recorder.wait_for(lambda r: any(
                    d.get("accepted") == {"command": "pause"}
                    for d in _status_docs(r, session_id)))
                assert engine.paused
            finally:
                engine.stop()
                await asyncio.wait_for(task, 20)
                await operator.publish(topics.control(session_id), b"", qos=1, retain=True)
