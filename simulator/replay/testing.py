"""A generated session for tests and benchmarks of the engine (no file needed).

``generated_source(cars=30, laps=100)`` is a race of ``cars`` cars that each lap
in about ``lap_ms``, numbered through ``EventLogBuilder`` like any loader's log:
``SessionStarted`` at 0, then one ``LapCompleted`` per car and lap in time order,
then ``SessionFinished``. Deterministic: the same arguments give the same events.

``Recorder`` is an independent subscriber that records what it receives, with each
message's ``published_at_ns`` and its receipt time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from simulator.connection import BrokerSettings
from simulator.contract import (
    PUBLISHED_AT,
    Entry,
    Event,
    LapCompleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
    decode_message,
    events_of,
)
from simulator.eventlog import EventLogBuilder
from simulator.sources import Source

__all__ = ["Received", "Recorder", "generated_events", "generated_source"]


def generated_events(session_id: str, *, cars: int = 30, laps: int = 100,
                     lap_ms: int = 100_000, spread_ms: int = 997) -> list[Event]:
    """The events of a generated race, seq 1..n (``cars * laps + 2`` of them)."""
    log = EventLogBuilder(session_id)
    numbers = [str(n + 1) for n in range(cars)]
    events: list[Event] = [log.emit(
        SessionStarted, session_time_ms=0, series="TEST", event_name="Generated race",
        session_kind=SessionKind.RACE, scheduled_start="2024-03-02T14:00:00+03:00",
        time_zone="Asia/Bahrain", classes=["HYPERCAR"],
        entries=[Entry(car=n, car_class="HYPERCAR", team=f"Team {n}", drivers=[f"Driver {n}"])
                 for n in numbers],
        source="generated",
    )]
    # Car i laps in lap_ms + i * spread_ms: crossings interleave and drift apart.
    crossings = sorted(
        (lap * (lap_ms + i * spread_ms), i, lap)
        for i in range(cars) for lap in range(1, laps + 1)
    )
    for t, i, lap in crossings:
        events.append(log.emit(LapCompleted, session_time_ms=t, car=numbers[i],
                               driver=f"Driver {numbers[i]}", lap=lap,
                               lap_time_ms=lap_ms + i * spread_ms))
    events.append(log.emit(SessionFinished, session_time_ms=crossings[-1][0] if crossings else 0))
    return events


def generated_source(session_id: str, **kwargs: int) -> Source:
    events = generated_events(session_id, **kwargs)
    return Source(name="generated", session_id=session_id, open_events=lambda: iter(events),
                  size=len(events))


@dataclass(frozen=True, slots=True)
class Received:
    """One message as an independent subscriber got it."""

    topic: str
    payload: bytes
    published_at_ns: int | None
    received_ns: int
    retain: bool


class Recorder:
    """An independent subscriber (its own connection) recording every message it gets.

    ``async with Recorder(broker, [topic, ...]) as rec:`` subscribes at QoS 1 before
    the block runs; ``rec.on(topic)`` lists what arrived on a topic, in order.
    """

    def __init__(self, broker: BrokerSettings, topics: list[str]) -> None:
        self.broker = broker
        self.topics = topics
        self.messages: list[Received] = []
        self._by_topic: dict[str, list[Received]] = {}
        self._changed = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Recorder:
        client = await self._stack.enter_async_context(
            aiomqtt.Client(**self.broker.client_kwargs()))
        await client.subscribe([(topic, 1) for topic in self.topics])
        task = asyncio.create_task(self._receive(client))
        self._stack.push_async_callback(_cancel, task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            user = getattr(message.properties, "UserProperty", None) or []
            stamp = dict(user).get(PUBLISHED_AT)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            received = Received(
                topic=message.topic.value, payload=payload,
                published_at_ns=int(stamp) if stamp is not None else None,
                received_ns=time.time_ns(), retain=message.retain)
            self.messages.append(received)
            self._by_topic.setdefault(received.topic, []).append(received)
            self._changed.set()

    def on(self, topic: str) -> list[Received]:
        """What arrived on ``topic``, in order (a live list: do not modify it)."""
        return self._by_topic.get(topic, [])

    async def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 20.0) -> None:
        """Until ``predicate(self)`` holds; TimeoutError (with what arrived) otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout} s; "
                               f"{len(self.messages)} messages arrived") from None

    def events(self, topic: str) -> list[Event]:
        """The events carried by the messages of ``topic`` (batches unpacked), in order."""
        return [event for m in self.on(topic) for event in events_of(decode_message(m.payload))]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task
