"""The engine's status announces its head while it publishes: what consumers believe.

A consumer applies a live event only up to the status's ``head_seq`` plus the
in-flight window (``consumers/belief.py``). So the engine must announce often
enough that its own events are always inside: within ``ANNOUNCE_EVERY_S`` of handing
out an event, and after ``ANNOUNCE_EVERY_EVENTS``. One subscriber reads events and
status on one connection, so it sees them in the order the broker forwards them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import msgspec

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import (
    ANNOUNCE_EVERY_S,
    IN_FLIGHT_WINDOW,
    decode_message,
    events_of,
)
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import generated_source


async def _watch(url: str, session_id: str, seen: list[tuple[float, str, dict[str, int]]],
                 ready: asyncio.Event) -> None:
    async with parse_broker_url(url).client() as client:
        await client.subscribe([(topics.events(session_id), 1), (topics.status(session_id), 1)])
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            now = time.monotonic()
            if message.topic.value == topics.status(session_id):
                doc = msgspec.json.decode(message.payload)
                if "head_seq" in doc:  # not the last will
                    seen.append((now, "status", {"epoch": doc["epoch"],
                                                 "head_seq": doc["head_seq"]}))
            else:
                for event in events_of(decode_message(message.payload)):
                    seen.append((now, "event", {"epoch": event.epoch, "seq": event.seq}))


async def _replay(broker: MosquittoProcess, session_id: str, tmp_path: Path, *,
                  speed: float | None, batch: int = 1
                  ) -> tuple[list[tuple[float, str, dict[str, int]]], int]:
    seen: list[tuple[float, str, dict[str, int]]] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(_watch(broker.url, session_id, seen, ready))
    await asyncio.wait_for(ready.wait(), 10)
    engine = ReplayEngine(
        generated_source(session_id, cars=6, laps=50),
        ReplaySettings(broker=parse_broker_url(broker.url), journal_path=tmp_path / "j.jsonl",
                       speed=speed, batch=batch, exit_when_done=True))
    await engine.run()
    await asyncio.sleep(0.2)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return seen, engine.total_events


class TestHeadAnnouncement:
    async def test_paced_events_are_announced_within_20_ms(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """Paced, each event is covered by a status carrying its seq soon after it."""
        seen, total = await _replay(broker, session_id, tmp_path, speed=1500.0)
        statuses = [(t, d["head_seq"]) for t, kind, d in seen if kind == "status"]
        events = [(t, d["seq"]) for t, kind, d in seen if kind == "event"]
        assert [s for _, s in events] == list(range(1, total + 1))
        waits = []
        for at, seq in events:
            later = [t for t, head in statuses if head >= seq and t >= at]
            assert later, f"seq {seq} never announced"
            waits.append(later[0] - at)
        waits.sort()
        # 20 ms by the engine's clock; the median leaves room for a loaded machine.
        assert waits[len(waits) // 2] <= ANNOUNCE_EVERY_S + 0.015, waits[len(waits) // 2]

    async def test_at_max_speed_every_event_is_inside_the_window(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """As fast as the broker takes them, no event of the engine's would be held."""
        seen, total = await _replay(broker, session_id, tmp_path, speed=None, batch=4)
        head = -1
        received = 0
        for _, kind, doc in seen:
            if kind == "status":
                head = max(head, doc["head_seq"])
            else:
                received += 1
                assert head >= 0, "an event before any status"
                assert doc["seq"] <= head + IN_FLIGHT_WINDOW
        assert received == total
