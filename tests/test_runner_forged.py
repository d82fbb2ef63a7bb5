"""Forged events on the events topic: a consumer believes only the engine.

The dev profile is anonymous, so anyone can publish well-formed events on a session's
events topic. Each test here replays a generated race with the real ``ReplayEngine``
(in the test's loop, to forge at chosen points), runs ``lapcast consume running-order``
as a process catching up from the engine, forges with ``TestPublisher`` and ends with
the consumer's state equal to ``lapcast fold`` of the engine's journal, every forgery
in the dead letters with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest

from consumers.testing import TestPublisher, consumer_process, stop_process, wait_for
from lapcast.cli.fold_cmd import fold_source
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import Event, LapCompleted, decode_event, encode
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import generated_events, generated_source

CONSUMER = "running-order"
CARS, LAPS = 6, 50  # 302 events
SPEED = 1500.0  # about 3.5 s of replay, an event every few milliseconds


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


class DeadLetters:
    """Every dead letter of the session, decoded, with the event it carried."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url = url
        self.topic = topics.dead_letter(session_id)
        self.letters: list[dict[str, Any]] = []
        self._subscribed = asyncio.Event()

    async def run(self) -> None:
        async with parse_broker_url(self.url).client() as client:
            await client.subscribe(self.topic, qos=1)
            self._subscribed.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                self.letters.append(msgspec.json.decode(message.payload))

    async def ready(self) -> None:
        await asyncio.wait_for(self._subscribed.wait(), 10)

    def events(self) -> list[tuple[str, Event]]:
        return [(d["reason"], decode_event(base64.b64decode(d["payload_base64"])))
                for d in self.letters]

    async def wait(self, count: int, timeout: float = 30.0) -> list[tuple[str, Event]]:
        async with asyncio.timeout(timeout):
            while len(self.letters) < count:
                await asyncio.sleep(0.02)
        return self.events()


class Session:
    """A generated race, its engine, one consumer process, a forger: for one test."""

    def __init__(self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        self.url = broker.url
        self.session_id = session_id
        self.journal = tmp_path / "journal.jsonl"
        self.state_dir = tmp_path / "state"
        self.tmp_path = tmp_path
        self.events = generated_events(session_id, cars=CARS, laps=LAPS)
        self.total = len(self.events)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dead = DeadLetters(self.url, session_id)

    def consume(self) -> subprocess.Popen[bytes]:
        proc = consumer_process(CONSUMER, broker_url=self.url, session_id=self.session_id,
                                state_dir=self.state_dir, extra=("--checkpoint-events", "40"),
                                log_file=self.tmp_path / f"consumer-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    async def ready(self) -> None:
        await wait_for(self.url, topics.consumer_status(self.session_id, CONSUMER),
                       lambda d: d.get("state") != "lost")

    @contextlib.asynccontextmanager
    async def engine(self) -> AsyncIterator[ReplayEngine]:
        engine = ReplayEngine(
            generated_source(self.session_id, cars=CARS, laps=LAPS),
            ReplaySettings(broker=parse_broker_url(self.url), journal_path=self.journal,
                           speed=SPEED))
        task = asyncio.create_task(engine.run())
        try:
            await engine.wait_connected()
            yield engine
        finally:
            # The catch-up service stays up until the consumer is done with it.
            engine.stop()
            await task

    async def forge(self, *events: Event) -> None:
        async with TestPublisher(self.url, self.session_id) as forger:
            for event in events:
                await forger.raw(encode(event))

    def forged(self, seq: int, *, epoch: int = 1) -> LapCompleted:
        """The real event at ``seq`` (a lap), with an impossible lap time: a best lap."""
        real = self.events[seq - 1]
        assert isinstance(real, LapCompleted), f"seq {seq} is not a lap"
        return msgspec.structs.replace(real, epoch=epoch, lap_time_ms=1_234)

    def lap_near(self, seq: int) -> int:
        while not isinstance(self.events[seq - 1], LapCompleted):
            seq += 1
        return seq

    def expected(self) -> Any:
        return _plain(fold_source(str(self.journal)).views())["running_order"]

    async def ends_exact(self) -> dict[str, Any]:
        """The consumer's retained state becomes `lapcast fold`'s; its health, live."""
        expected = self.expected()
        await wait_for(self.url, topics.state(self.session_id, CONSUMER),
                       lambda d: (d["epoch"], d["seq"]) == (1, self.total)
                       and d["state"] == expected, timeout=60)
        health: dict[str, Any] = await wait_for(
            self.url, topics.consumer_status(self.session_id, CONSUMER),
            lambda d: d.get("state") == "live" and d["last_seq"] == self.total, timeout=30)
        return health


@pytest.fixture
async def session(broker: MosquittoProcess, session_id: str,
                  tmp_path: Path) -> AsyncIterator[Session]:
    s = Session(broker, session_id, tmp_path)
    watcher = asyncio.create_task(s.dead.run())
    await s.dead.ready()
    try:
        yield s
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await watcher
        for proc in s.procs:
            stop_process(proc)


async def _published(engine: ReplayEngine, count: int) -> None:
    async with asyncio.timeout(30):
        while engine.stats.events_published < count:
            await asyncio.sleep(0.002)


def _handed(engine: ReplayEngine) -> int:
    assert engine.publisher is not None
    return engine.publisher.cursor.handed


class TestForgedEvents:
    async def test_a_huge_seq_is_dead_lettered_not_waited_for(self, session: Session) -> None:
        """seq 1,000,000: held, unconfirmed by the engine's next status, dead-lettered;
        the consumer is not left catching up to it."""
        s = session
        s.consume()
        await s.ready()
        async with s.engine() as engine:
            await _published(engine, 60)
            forged = msgspec.structs.replace(s.forged(s.lap_near(60)), seq=1_000_000)
            await s.forge(forged)
            await engine.wait_finished()
            health = await s.ends_exact()
        [(reason, event)] = await s.dead.wait(1)
        assert event == forged
        assert "not confirmed by the engine" in reason and "seq 1000000" in reason
        assert health["refused"] == 1 and health["head_seq"] == s.total

    async def test_an_unannounced_epoch_mid_replay_changes_nothing(
            self, session: Session) -> None:
        """epoch 99 seq 7 mid-replay: never adopted, so the real events go on applying."""
        s = session
        s.consume()
        await s.ready()
        async with s.engine() as engine:
            await _published(engine, 80)
            forged = s.forged(s.lap_near(7), epoch=99)
            await s.forge(forged)
            await engine.wait_finished()
            await s.ends_exact()
        [(reason, event)] = await s.dead.wait(1)
        assert event == forged
        assert "epoch 99 beyond the engine's announced epoch 1" in reason

    async def test_a_forged_epoch_start_does_not_wipe_the_state(
            self, session: Session) -> None:
        """epoch 99 seq 1: neither wipes the state nor reaches a checkpoint; a restart
        resumes the engine's log."""
        s = session
        proc = s.consume()
        await s.ready()
        async with s.engine() as engine:
            await _published(engine, 100)
            forged = s.forged(s.lap_near(1), epoch=99)
            forged = msgspec.structs.replace(forged, seq=1)
            await s.forge(forged)
            await _published(engine, 200)
            assert stop_process(proc) == 0  # checkpoints what it holds
            s.consume()
            await engine.wait_finished()
            health = await s.ends_exact()
        assert health["epoch"] == 1
        [(reason, event)] = await s.dead.wait(1)
        assert event == forged and "epoch 99" in reason

    async def test_a_forgery_ahead_of_the_engine_is_replaced_by_the_real_event(
            self, session: Session) -> None:
        """A forged event at the current seq + 30 comes before the engine's: the real one
        then differs from it, the engine's copy wins, the consumer refolds."""
        s = session
        s.consume()
        await s.ready()
        async with s.engine() as engine:
            await _published(engine, 60)
            seq = s.lap_near(_handed(engine) + 30)
            forged = s.forged(seq)
            await s.forge(forged)
            await engine.wait_finished()
            health = await s.ends_exact()
        letters = await s.dead.wait(1)
        assert letters == [(f"refused: conflicting duplicate: epoch 1 seq {seq} differs "
                            "from the engine's copy", forged)]
        assert health["conflicts"] == 1

    async def test_a_duplicate_with_other_content_is_a_conflict(
            self, session: Session) -> None:
        """A copy of an applied seq with other content: the engine's copy says which is
        real; the forgery is dead-lettered and counted."""
        s = session
        s.consume()
        await s.ready()
        async with s.engine() as engine:
            await _published(engine, 120)
            seq = s.lap_near(_handed(engine) - 40)
            forged = s.forged(seq)
            await s.forge(forged)
            await engine.wait_finished()
            health = await s.ends_exact()
        letters = await s.dead.wait(1)
        assert letters == [(f"refused: conflicting duplicate: epoch 1 seq {seq} differs "
                            "from the engine's copy", forged)]
        assert health["conflicts"] == 1 and health["dead_letters"] == 1
