"""The broker dies mid-replay (SIGTERM, SIGKILL) and comes back: the engine carries on.

The engine must resume from its first unacknowledged message without skipping, and
journal every event exactly once. A persistent-session subscriber that resubscribes
on every connect receives everything published after it reconnected; what the broker
lost in the crash shows up to it as one gap in seq (which the consumers' catch-up
fills), never as a hole after it is back.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import BrokerSettings, parse_broker_url
from simulator.contract import decode_message
from simulator.journal import scan
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.sources import load_source

log = structlog.get_logger()

SPEED = 8_000.0  # the 8-hour race in about 3.6 s


@dataclass
class PersistentSubscriber:
    """Fixed client id, clean_start=False with a session expiry, resubscribes on every connect."""

    broker: BrokerSettings
    topic: str
    client_id: str
    # (connection number, seq, payload) in arrival order
    received: list[tuple[int, int, bytes]] = field(default_factory=list)
    subscribed_ns: list[int] = field(default_factory=list)
    connections: int = 0

    async def run(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        while True:
            try:
                async with aiomqtt.Client(**self.broker.client_kwargs(
                        identifier=self.client_id, clean_start=False,
                        properties=props)) as client:
                    self.connections += 1
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed_ns.append(time.time_ns())
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        seq = decode_message(message.payload).seq  # type: ignore[union-attr]
                        self.received.append((self.connections, seq, message.payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.02)

    def seqs(self, connection: int | None = None) -> list[int]:
        return [s for c, s, _ in self.received if connection is None or c == connection]


async def _crash_midway(broker: MosquittoProcess, race_csv: Path, session_id: str,
                        tmp_path: Path, sig: int) -> tuple[ReplayEngine, PersistentSubscriber,
                                                           Path]:
    source = load_source(str(race_csv), session_id=session_id)
    journal = tmp_path / "race.jsonl"
    settings = parse_broker_url(broker.url)
    engine = ReplayEngine(source, ReplaySettings(
        broker=settings, journal_path=journal, speed=SPEED, exit_when_done=True,
        reconnect_min_s=0.05, reconnect_max_s=0.2))
    subscriber = PersistentSubscriber(settings, topics.events(session_id),
                                      client_id=f"crash-sub-{session_id}")
    listener = asyncio.create_task(subscriber.run())
    try:
        while not subscriber.subscribed_ns:
            await asyncio.sleep(0.01)
        replay = asyncio.create_task(engine.run())
        await asyncio.sleep(1.2)
        assert not replay.done()
        crashed_at = engine.status()["last_seq"]
        await asyncio.to_thread(broker.stop, sig)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(broker.start)
        stats = await asyncio.wait_for(replay, 60)
        n = engine.total_events
        async with asyncio.timeout(20):
            while n not in subscriber.seqs():
                await asyncio.sleep(0.02)
    finally:
        listener.cancel()
    log.info("broker crash mid-replay", signal=signal.Signals(sig).name, crashed_at=crashed_at,
             resumes=stats.resumes, events=n, received=len(subscriber.received),
             connections=subscriber.connections)
    print(f"{signal.Signals(sig).name}: crashed near seq {crashed_at}, engine resumed at "
          f"{[(e, s) for e, s, _ in stats.resumes]}, subscriber got "
          f"{len(set(subscriber.seqs()))}/{n} distinct events "
          f"({len(subscriber.received)} messages) over {subscriber.connections} connections")
    return engine, subscriber, journal


def _check_common(engine: ReplayEngine, subscriber: PersistentSubscriber,
                  journal: Path) -> list[int]:
    """What holds for any crash; returns the seqs the subscriber never got."""
    n = engine.total_events
    # The journal holds every event exactly once, in order.
    index, size = scan(journal)
    assert size == index.size and list(index.epochs) == [1] and index.last_seq(1) == n
    lines = journal.read_bytes().split(b"\n")[:-1]
    assert len(lines) == len(set(lines)) == n
    # The engine carried on: it reconnected and resumed, and every event was acknowledged.
    assert engine.stats.connections >= 2 and engine.stats.resumes
    assert engine.stats.events_published == n and engine.finished
    # Whatever arrived is byte-identical to the journal (duplicates allowed).
    assert all(payload == lines[seq - 1] for _, seq, payload in subscriber.received)
    # After its last reconnection the subscriber misses nothing up to the end.
    last = subscriber.connections
    after = sorted(set(subscriber.seqs(last)))
    assert after == list(range(after[0], n + 1))
    # Everything the engine published after the subscriber was back reached it.
    back_ns = subscriber.subscribed_ns[-1]
    for _, seq, resumed_ns in engine.stats.resumes:
        if resumed_ns >= back_ns:
            assert after[0] <= seq
    return sorted(set(range(1, n + 1)) - set(subscriber.seqs()))


class TestBrokerCrash:
    async def test_sigterm_mid_replay(self, broker: MosquittoProcess, race_csv: Path,
                                      session_id: str, tmp_path: Path) -> None:
        """A clean broker stop: the engine resumes without skipping; the subscriber's
        persistent session (saved at shutdown) keeps its queue, so it misses nothing."""
        engine, subscriber, journal = await _crash_midway(broker, race_csv, session_id,
                                                          tmp_path, signal.SIGTERM)
        missing = _check_common(engine, subscriber, journal)
        assert missing == []

    async def test_sigkill_mid_replay(self, broker: MosquittoProcess, race_csv: Path,
                                      session_id: str, tmp_path: Path) -> None:
        """A crash: the engine resumes without skipping; what the broker lost shows up to
        the subscriber as one gap in seq, between what it had and what came after."""
        engine, subscriber, journal = await _crash_midway(broker, race_csv, session_id,
                                                          tmp_path, signal.SIGKILL)
        missing = _check_common(engine, subscriber, journal)
        if missing:
            assert missing == list(range(missing[0], missing[-1] + 1))  # one gap
            before = [s for s in subscriber.seqs(1) if s < missing[0]]
            assert before == list(range(1, missing[0]))
