"""The replay engine end to end through a real Mosquitto: order, journal, batches, seeks, status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import Batch, SessionStarted, decode_message, encode
from simulator.errors import ControlError
from simulator.journal import load, scan
from simulator.logid import log_id
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.pacing import ManualClock
from simulator.replay.testing import Recorder, generated_source
from simulator.sources import Source, load_source

log = structlog.get_logger()


def _settings(broker: MosquittoProcess, journal: Path, **kwargs: Any) -> ReplaySettings:
    return ReplaySettings(broker=parse_broker_url(broker.url), journal_path=journal, **kwargs)


@asynccontextmanager
async def running(engine: ReplayEngine) -> AsyncIterator[asyncio.Task[Any]]:
    """The engine running in a task, connected; stopped (and awaited) on the way out."""
    task = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(10):
            await engine.wait_connected()
        yield task
    finally:
        engine.stop()
        async with asyncio.timeout(20):
            await task


def _journal_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _seqs(recorder: Recorder, session: str) -> list[tuple[int, int]]:
    return [(e.epoch, e.seq) for e in recorder.events(topics.events(session))]


class TestFullRace:
    async def test_shared_race_at_max_speed_arrives_gapless_and_byte_identical(
            self, broker: MosquittoProcess, race_csv: Path, session_id: str,
            tmp_path: Path) -> None:
        """Every event of the 2024 Bahrain race reaches an independent subscriber once,
        seq 1..n in order, each payload byte-identical to its journal line."""
        source = load_source(str(race_csv), session_id=session_id)
        journal = tmp_path / "race.jsonl"
        engine = ReplayEngine(source, _settings(broker, journal, speed=None,
                                                exit_when_done=True))
        topic = topics.events(session_id)
        async with Recorder(parse_broker_url(broker.url), [topic]) as recorder:
            started = time.perf_counter()
            stats = await asyncio.wait_for(engine.run(), 60)
            await recorder.wait_for(lambda r: len(r.on(topic)) >= engine.total_events)
            elapsed = time.perf_counter() - started
        payloads = [m.payload for m in recorder.on(topic)]
        n = engine.total_events
        log.info("full race at max", events=n, seconds=round(elapsed, 2),
                 events_per_s=round(n / elapsed))
        print(f"full race: {n} events at --speed max in {elapsed:.2f} s")
        assert n > 7000
        assert [decode_message(p).seq for p in payloads] == list(range(1, n + 1))  # type: ignore[union-attr]
        assert payloads == _journal_lines(journal)
        assert stats.events_published == n
        assert all(m.published_at_ns is not None for m in recorder.on(topic))


class TestBatchesAndEncodings:
    async def test_batches_carry_consecutive_events_and_the_journal_one_per_line(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """With --batch 16 at max speed messages are Batches of up to 16 consecutive events;
        the journal still holds one JSON line per event."""
        source = generated_source(session_id, cars=10, laps=40)
        journal = tmp_path / "b.jsonl"
        engine = ReplayEngine(source, _settings(broker, journal, speed=None, batch=16,
                                                exit_when_done=True))
        topic = topics.events(session_id)
        async with Recorder(parse_broker_url(broker.url), [topic]) as recorder:
            await asyncio.wait_for(engine.run(), 30)
            await recorder.wait_for(lambda r: len(r.events(topic)) >= engine.total_events)
        messages = [decode_message(m.payload) for m in recorder.on(topic)]
        assert any(isinstance(m, Batch) and len(m.events) == 16 for m in messages)
        assert all(len(m.events) <= 16 for m in messages if isinstance(m, Batch))
        events = recorder.events(topic)
        assert [e.seq for e in events] == list(range(1, engine.total_events + 1))
        assert [encode(e) for e in events] == _journal_lines(journal)

    async def test_msgpack_payloads_with_a_json_journal(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """--encoding msgpack changes the payloads, not the journal (always JSON)."""
        source = generated_source(session_id, cars=3, laps=10)
        journal = tmp_path / "m.jsonl"
        engine = ReplayEngine(source, _settings(broker, journal, speed=None,
                                                encoding="msgpack", exit_when_done=True))
        topic = topics.events(session_id)
        async with Recorder(parse_broker_url(broker.url), [topic, topics.meta(session_id)]
                            ) as recorder:
            await asyncio.wait_for(engine.run(), 30)
            await recorder.wait_for(lambda r: len(r.on(topic)) >= engine.total_events)
        assert all(m.payload[:1] != b"{" for m in recorder.on(topic))
        events = recorder.events(topic)
        assert [encode(e) for e in events] == _journal_lines(journal)
        assert [e.seq for e in events] == list(range(1, engine.total_events + 1))


class TestSeek:
    async def test_forward_seek_publishes_the_skipped_events_at_once(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """Seeking from 0:30 to 20:00 publishes every event in between at once, then paces."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=4, laps=30, lap_ms=60_000, spread_ms=500)
        end = [e.session_time_ms for e in source.events()]
        engine = ReplayEngine(source, _settings(broker, tmp_path / "f.jsonl", speed=1.0),
                              clock=clock)
        topic = topics.events(session_id)
        async with Recorder(parse_broker_url(broker.url), [topic]) as recorder, \
                running(engine):
            await recorder.wait_for(lambda r: len(r.on(topic)) == 1)  # SessionStarted at 0
            clock.advance(130.0)
            upto = sum(1 for t in end if t <= 130_000)
            await recorder.wait_for(lambda r: len(r.on(topic)) == upto)
            engine.seek(1_200_000)
            upto = sum(1 for t in end if t <= 1_200_000)
            await recorder.wait_for(lambda r: len(r.on(topic)) == upto)
            clock.advance(61.0)
            upto = sum(1 for t in end if t <= 1_261_000)
            await recorder.wait_for(lambda r: len(r.on(topic)) == upto)
            await asyncio.sleep(0.05)
            assert len(recorder.on(topic)) == upto  # nothing beyond the session clock
        assert _seqs(recorder, session_id) == [(1, s) for s in range(1, upto + 1)]

    async def test_backward_seek_starts_the_next_epoch_from_seq_1(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """Seeking back to 1:00 after 10:00 publishes epoch 2 seq 1.. up to 1:00 at once,
        then paces on; the journal holds both epochs and load() gives epoch 2."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=4, laps=30, lap_ms=60_000, spread_ms=500)
        times = [e.session_time_ms for e in source.events()]
        journal = tmp_path / "b.jsonl"
        engine = ReplayEngine(source, _settings(broker, journal, speed=1.0), clock=clock)
        topic = topics.events(session_id)
        first = sum(1 for t in times if t <= 600_000)
        second = sum(1 for t in times if t <= 60_000)
        third = sum(1 for t in times if t <= 125_000)
        async with Recorder(parse_broker_url(broker.url), [topic, topics.meta(session_id)]
                            ) as recorder, running(engine):
            clock.advance(600.0)
            await recorder.wait_for(lambda r: len(r.on(topic)) == first)
            engine.seek(60_000)
            await recorder.wait_for(lambda r: len(r.on(topic)) == first + second)
            clock.advance(65.0)
            await recorder.wait_for(lambda r: len(r.on(topic)) == first + third)
            status = engine.status()
        seqs = _seqs(recorder, session_id)
        assert seqs == [(1, s) for s in range(1, first + 1)] + [(2, s) for s in
                                                                range(1, third + 1)]
        assert status["epoch"] == 2
        index, _ = scan(journal)
        assert index.last_seq(1) == first and index.last_seq(2) == third
        assert [e.seq for e in load(journal).events()] == list(range(1, third + 1))
        metas = [decode_message(m.payload) for m in recorder.on(topics.meta(session_id))]
        assert isinstance(metas[-1], SessionStarted) and metas[-1].epoch == 2

    async def test_from_publishes_everything_before_it_at_once(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """--from 0:10:00 is a forward seek at start: seq 1.. up to 10:00, no gap."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=4, laps=30, lap_ms=60_000, spread_ms=500)
        upto = sum(1 for e in source.events() if e.session_time_ms <= 600_000)
        engine = ReplayEngine(source, _settings(broker, tmp_path / "s.jsonl", speed=1.0,
                                                start_ms=600_000), clock=clock)
        topic = topics.events(session_id)
        async with Recorder(parse_broker_url(broker.url), [topic]) as recorder, \
                running(engine):
            await recorder.wait_for(lambda r: len(r.on(topic)) == upto)
            await asyncio.sleep(0.05)
            assert len(recorder.on(topic)) == upto
        assert _seqs(recorder, session_id) == [(1, s) for s in range(1, upto + 1)]

    async def test_seek_before_the_broker_is_reachable_sets_the_start(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """A seek while the engine waits for its first connection moves where it starts:
        once connected it publishes seq 1 up to the target at once, in epoch 1."""
        await asyncio.to_thread(broker.stop)
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=4, laps=30, lap_ms=60_000, spread_ms=500)
        upto = sum(1 for e in source.events() if e.session_time_ms <= 300_000)
        journal = tmp_path / "s.jsonl"
        engine = ReplayEngine(source, _settings(broker, journal, speed=1.0,
                                                reconnect_min_s=0.05, reconnect_max_s=0.1),
                              clock=clock)
        task = asyncio.create_task(engine.run())
        try:
            await asyncio.sleep(0.2)
            engine.seek(300_000)
            await asyncio.to_thread(broker.start)
            async with asyncio.timeout(10):
                while engine.status()["last_seq"] < upto:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)
        finally:
            engine.stop()
            await asyncio.wait_for(task, 20)
        index, _ = scan(journal)
        assert list(index.epochs) == [1] and index.last_seq(1) == upto

    async def test_seek_past_the_end_is_refused_and_changes_nothing(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """engine.seek beyond the last event raises ControlError; epoch and clock stay."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=2, laps=5)
        engine = ReplayEngine(source, _settings(broker, tmp_path / "s.jsonl"), clock=clock)
        async with running(engine):
            before = engine.status()
            with pytest.raises(ControlError, match="past the end"):
                engine.seek(engine.end_ms + 1)
            with pytest.raises(ControlError, match="negative"):
                engine.seek(-5)
            after = engine.status()
        assert (after["epoch"], after["session_time_ms"]) == (before["epoch"],
                                                              before["session_time_ms"])


class TestRetainedTopics:
    async def test_meta_and_status_are_retained_and_the_end_says_finished(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """A late subscriber finds meta (the SessionStarted payload, with the log id) and
        the final status (naming the same log)."""
        source = generated_source(session_id, cars=3, laps=5)
        engine = ReplayEngine(source, _settings(broker, tmp_path / "s.jsonl", speed=None,
                                                exit_when_done=True))
        await asyncio.wait_for(engine.run(), 30)
        first = next(iter(source.events()))
        wanted = [topics.meta(session_id), topics.status(session_id)]
        async with Recorder(parse_broker_url(broker.url), wanted) as late:
            await late.wait_for(lambda r: len(r.messages) >= 2)
        meta = late.on(topics.meta(session_id))[0]
        assert engine.log_id == log_id(source.events())
        assert meta.retain and meta.payload == encode(
            msgspec.structs.replace(first, log_id=engine.log_id))
        status = msgspec.json.decode(late.on(topics.status(session_id))[-1].payload)
        assert status["log_id"] == engine.log_id
        assert status["state"] == "finished"
        assert status["last_seq"] == status["total_events"] == engine.total_events
        assert status["events_published"] == engine.total_events
        for field in ("epoch", "session_time_ms", "speed", "lag_ms", "end_ms"):
            assert field in status

    async def test_status_follows_pause_resume_and_speed(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """The status topic reports paused, running and the new speed as they happen."""
        source = generated_source(session_id, cars=3, laps=5)
        engine = ReplayEngine(source, _settings(broker, tmp_path / "s.jsonl", speed=1.0),
                              clock=ManualClock(0.0))
        status_topic = topics.status(session_id)

        def states(r: Recorder) -> list[tuple[str, Any]]:
            docs = [msgspec.json.decode(m.payload) for m in r.on(status_topic)]
            return [(d["state"], d["speed"]) for d in docs]

        async with Recorder(parse_broker_url(broker.url), [status_topic]) as recorder, \
                running(engine):
            engine.pause()
            await recorder.wait_for(lambda r: ("paused", 1.0) in states(r))
            engine.set_speed(8.0)
            await recorder.wait_for(lambda r: ("paused", 8.0) in states(r))
            engine.resume()
            await recorder.wait_for(lambda r: ("running", 8.0) in states(r))
            engine.set_speed(None)
            await recorder.wait_for(lambda r: ("finished", "max") in states(r))


class TestSources:
    def test_a_source_with_a_gap_is_refused_before_publishing(self, tmp_path: Path) -> None:
        """The engine checks seq 1..n up front: a gap is an error naming the source."""
        events = list(generated_source("g", cars=2, laps=3).events())
        del events[3]
        source = Source(name="gappy", session_id="g", open_events=lambda: iter(events))
        from simulator.errors import LapcastError
        with pytest.raises(LapcastError, match="gappy: seq 5 where 4 was expected"):
            ReplayEngine(source, ReplaySettings(broker=parse_broker_url("mqtt://127.0.0.1:1"),
                                                journal_path=tmp_path / "g.jsonl"))
