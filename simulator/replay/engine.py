"""The replay engine: a session's event log, paced, journaled and published over MQTT.

``ReplayEngine(source, settings).run()`` publishes the events of ``source`` on
``lapcast/v1/sessions/{s}/events`` in ``seq`` order, each when its session time falls
due (``Pacer``), after appending it to the journal (write-ahead); it keeps ``meta``
and ``status`` retained, obeys ``control`` and answers ``catchup/request``
(``CatchupService``) until it is stopped. ``pause``, ``resume``, ``set_speed`` and
``seek`` drive it in-process (the CLI keyboard, the demo, tests) exactly as the
control topic does.

Seeking forward publishes the skipped events at once. Seeking backward, before an
event already handed out, starts the next epoch: seq 1 up to the target at once,
then paced. Nothing is ever skipped: the only way past an event is to publish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt
import msgspec
import structlog

from simulator import topics
from simulator.connection import BrokerSettings
from simulator.contract import Batch, Encoding, Event, SessionStarted, encode
from simulator.errors import ControlError, LapcastError
from simulator.journal import DEFAULT_FSYNC_INTERVAL_S, JournalWriter
from simulator.replay.catchup import CatchupService
from simulator.replay.control import (
    Command,
    Pause,
    Rejection,
    Resume,
    Seek,
    Speed,
    describe,
    parse_command,
)
from simulator.replay.delivery import Delivery, Outgoing
from simulator.replay.pacing import Clock, MonotonicClock, Pacer
from simulator.sources import Source
from simulator.timefmt import format_ms

__all__ = [
    "LOST_STATUS",
    "ReplayEngine",
    "ReplaySettings",
    "ReplayStats",
    "check_linger_ms",
    "default_journal",
]

log = structlog.get_logger()

# The last will on the status topic: what a subscriber sees when the engine dies.
LOST_STATUS: Final = b'{"state":"lost"}'


def check_linger_ms(linger_ms: float) -> None:
    """Refuse a linger outside 0..1000 ms (``--linger-ms``), naming the option."""
    if not 0 <= linger_ms <= 1000:
        raise LapcastError(f"--linger-ms {linger_ms:g}: from 0 to 1000")


def default_journal(session_id: str) -> Path:
    return Path("journals") / f"{session_id}.jsonl"


@dataclass(frozen=True, kw_only=True)
class ReplaySettings:
    broker: BrokerSettings
    journal_path: Path
    # Session seconds per wall second; None publishes as fast as the broker acknowledges.
    speed: float | None = 1.0
    # Start here: a forward seek at start (the earlier events go out at once).
    start_ms: int = 0
    # Up to this many consecutive due events per message (a ``Batch`` when above 1).
    batch: int = 1
    # Paced runs with batch > 1: once an event falls due, wait up to this long for
    # later ones to share its message (fewer, fuller messages for every subscriber
    # to handle; each event is at most this much later).
    linger_ms: float = 0.0
    # Unacknowledged QoS 1 messages in flight at most.
    window: int = 64
    encoding: Encoding = "json"
    # Stop once the last event is acknowledged, instead of serving catch-up until stopped.
    exit_when_done: bool = False
    status_interval_s: float = 0.5
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S
    keepalive_s: int = 4  # paho gives up after 1-2x this silent: a dead link in < 10 s
    client_id: str | None = None
    # Wait at most this long for outstanding acknowledgements when stopping.
    stop_grace_s: float = 5.0


@dataclass
class ReplayStats:
    """What the engine did; tests and benchmarks read it."""

    events_published: int = 0  # distinct events acknowledged by the broker
    messages_acked: int = 0
    connections: int = 0
    # (epoch, seq, wall clock ns) of each reconnection: where it resumed, and when.
    resumes: list[tuple[int, int, int]] = field(default_factory=list)
    # Publish time minus deadline, in ms, of recent paced messages.
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))

    def lateness_percentile(self, q: float) -> float | None:
        values = sorted(self.lateness_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(q / 100 * len(values)))]


class _Cursor:
    """The events of the current epoch, in order, stamped with the epoch."""

    def __init__(self, source: Source, epoch: int) -> None:
        self.source = source
        self.restart(epoch)

    def restart(self, epoch: int) -> None:
        self.epoch = epoch
        self._events: Iterator[Event] = iter(self.source.events())
        self._next: Event | None = None
        self._expected = 1
        self._done = False

    def peek(self) -> Event | None:
        if self._next is None and not self._done:
            event = next(self._events, None)
            if event is None:
                self._done = True
                return None
            if event.seq != self._expected:
                raise LapcastError(f"{self.source.name}: seq {event.seq} where "
                                   f"{self._expected} was expected (a source is gapless)")
            if event.epoch != self.epoch:
                event = msgspec.structs.replace(event, epoch=self.epoch)
            self._next = event
        return self._next

    def take(self) -> Event:
        event = self.peek()
        assert event is not None
        self._next = None
        self._expected += 1
        return event


class ReplayEngine:
    """One session's replay. ``await run()``; drive it with pause/resume/set_speed/seek."""

    def __init__(self, source: Source, settings: ReplaySettings, *,
                 clock: Clock | None = None) -> None:
        if settings.batch < 1:
            raise LapcastError(f"--batch {settings.batch}: must be at least 1")
        check_linger_ms(settings.linger_ms)
        self.source = source
        self.settings = settings
        self.session_id = topics.validate_session_id(source.session_id)
        self.clock = clock or MonotonicClock()
        self.stats = ReplayStats()
        self.total_events, self.end_ms = self._scan()
        if settings.start_ms > self.end_ms:
            raise LapcastError(f"--from {format_ms(settings.start_ms, hours=True)} is past the "
                               f"end of the session ({format_ms(self.end_ms, hours=True)})")
        self.pacer = Pacer(clock=self.clock, speed=settings.speed, position_ms=settings.start_ms)
        self.epoch = 0  # set by run() from the journal
        self._topic_events = topics.events(self.session_id)
        self._topic_status = topics.status(self.session_id)
        self._topic_meta = topics.meta(self.session_id)
        self._topic_control = topics.control(self.session_id)
        self._topic_catchup = topics.catchup_request(self.session_id)
        self.delivery = Delivery(self._topic_events, window=settings.window,
                                 on_acked=self._on_acked)
        self.journal: JournalWriter | None = None
        self.catchup: CatchupService | None = None
        self._cursor: _Cursor | None = None
        self._meta: bytes | None = None
        self._handed_ms: int | None = None  # session time of the last event handed out
        self._acked: tuple[int, int] = (0, 0)  # (epoch, seq) of the last acknowledged
        self._started = False
        self._start_ms = settings.start_ms
        self._finished = False
        self._tg: asyncio.TaskGroup | None = None
        self._flush_scheduled = False
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._finished_event = asyncio.Event()
        self._status_now = asyncio.Event()

    # --- the source -------------------------------------------------------------------

    def _scan(self) -> tuple[int, int]:
        """Count the events and find the end, once (seek validation needs the end)."""
        count, end = 0, 0
        for event in self.source.events():
            count += 1
            if event.seq != count:
                raise LapcastError(f"{self.source.name}: seq {event.seq} where {count} was "
                                   "expected (a source is gapless from 1)")
            end = event.session_time_ms
        if count == 0:
            raise LapcastError(f"{self.source.name}: no events to replay")
        return count, end

    # --- control, in-process ----------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.pacer.paused

    @property
    def finished(self) -> bool:
        return self._finished

    def pause(self) -> None:
        self.pacer.pause()
        if self.journal is not None:
            self.journal.sync()
        self._status_now.set()
        log.info("replay paused", session_time=format_ms(self.pacer.session_time_ms()))

    def resume(self) -> None:
        self.pacer.resume()
        self._status_now.set()
        log.info("replay resumed")

    def set_speed(self, factor: float | None) -> None:
        """``factor`` above 0, or None for max."""
        if factor is not None and not factor > 0:
            raise ControlError(f"speed {factor} must be a number above 0, or max")
        self.pacer.set_speed(factor)
        self._status_now.set()
        log.info("replay speed", speed="max" if factor is None else factor)

    def seek(self, to_ms: int) -> None:
        """Jump to session time ``to_ms``: forward publishes what lies between at once;
        backward, before an event already handed out, starts the next epoch."""
        if to_ms < 0:
            raise ControlError(f"seek to {to_ms} ms: session time cannot be negative")
        if to_ms > self.end_ms:
            raise ControlError(f"seek to {format_ms(to_ms, hours=True)} is past the end of "
                               f"the session ({format_ms(self.end_ms, hours=True)})")
        if not self._started:
            # Not connected yet: the session clock has not started; start there.
            self._start_ms = to_ms
            self.pacer.seek(to_ms)
            self._status_now.set()
            return
        assert self._cursor is not None
        if self._handed_ms is not None and to_ms < self._handed_ms:
            self.epoch += 1
            self._cursor.restart(self.epoch)
            self._handed_ms = None
            log.info("seek backward: new epoch", epoch=self.epoch, to=format_ms(to_ms))
        else:
            log.info("seek forward", to=format_ms(to_ms))
        if self.journal is not None:
            self.journal.sync()
        if self._cursor.peek() is not None:
            self._finished = False
            self._finished_event.clear()
        self.pacer.seek(to_ms)
        self._status_now.set()

    def apply(self, command: Command) -> Rejection | None:
        """Carry out a command; a ``Rejection`` (and no change) if it cannot be."""
        try:
            match command:
                case Pause():
                    self.pause()
                case Resume():
                    self.resume()
                case Speed(factor=factor):
                    self.set_speed(factor)
                case Seek(to_ms=to_ms):
                    self.seek(to_ms)
        except ControlError as exc:
            return Rejection(command=str(describe(command)["command"]), reason=str(exc))
        return None

    def stop(self) -> None:
        """Finish the run: outstanding messages get ``stop_grace_s`` to be acknowledged."""
        self._stop.set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_finished(self) -> None:
        """Until the last event of the current epoch is acknowledged."""
        await self._finished_event.wait()

    # --- status -----------------------------------------------------------------------

    def state(self) -> str:
        if self._finished:
            return "finished"
        return "paused" if self.pacer.paused else "running"

    def lag_ms(self) -> int:
        """How far behind its schedule the engine is (0 when on time, paused or at max)."""
        if self._cursor is None or self._finished or self.pacer.paused:
            return 0
        event = self._cursor.peek()
        late = None if event is None else self.pacer.lateness(event.session_time_ms)
        return max(0, round(late * 1000)) if late is not None else 0

    def status(self, **extra: Any) -> dict[str, Any]:
        """The document published (retained) on ``.../status``."""
        acked_epoch, acked_seq = self._acked
        speed = self.pacer.speed
        doc: dict[str, Any] = {
            "state": self.state(),
            "session_id": self.session_id,
            "epoch": self.epoch,
            "last_seq": acked_seq if acked_epoch == self.epoch else 0,
            "total_events": self.total_events,
            "session_time_ms": min(max(self.pacer.session_time_ms(), 0), self.end_ms),
            "end_ms": self.end_ms,
            "speed": "max" if speed is None else speed,
            "lag_ms": self.lag_ms(),
            "events_published": self.stats.events_published,
            "batch": self.settings.batch,
            "encoding": self.settings.encoding,
        }
        doc.update(extra)
        return doc

    async def _publish_status(self, client: aiomqtt.Client, *, timeout: float = math.inf,
                              **extra: Any) -> None:
        # No timeout by default: a lost connection ends the reader loop, which cancels
        # the connection's tasks (asyncio.wait_for in 3.11 can swallow that cancel).
        await client.publish(self._topic_status, msgspec.json.encode(self.status(**extra)),
                             qos=1, retain=True, timeout=timeout)

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        """Status on every change (coalesced) and every ``status_interval_s`` anyway."""
        loop = asyncio.get_running_loop()
        while True:
            tick = loop.call_later(self.settings.status_interval_s, self._status_now.set)
            try:
                await self._status_now.wait()
            finally:
                tick.cancel()
            self._status_now.clear()
            await self._publish_status(client)

    # --- publishing -------------------------------------------------------------------

    def _on_acked(self, item: Outgoing) -> None:
        self.stats.events_published += item.count
        self.stats.messages_acked += 1
        self._acked = (item.epoch, item.last_seq)

    async def _pump(self) -> None:
        pacer, delivery = self.pacer, self.delivery
        cursor = self._cursor
        assert cursor is not None
        while True:
            event = cursor.peek()
            if event is None:
                await self._end_of_epoch()
                continue
            if not await pacer.wait_due(event.session_time_ms):
                continue
            if not await self._linger(event):
                continue
            await delivery.reserve()
            # A command may have come in while we waited for a slot: look again.
            event = cursor.peek()
            if event is None or not pacer.is_due(event.session_time_ms):
                delivery.release()
                continue
            self._send_due(cursor)

    async def _linger(self, first: Event) -> bool:
        """Wait ``linger_ms`` past ``first``'s deadline for more events to batch with it.

        False if a command changed the pacing meanwhile (look again). The events due by
        then go in one message (up to ``batch``; the rest right after, being due).
        """
        settings, pacer = self.settings, self.pacer
        speed = pacer.speed
        if settings.linger_ms <= 0 or settings.batch < 2 or speed is None:
            return True
        # The session time that falls due linger_ms after the first event.
        return await pacer.wait_due(first.session_time_ms + settings.linger_ms * speed)

    def _send_due(self, cursor: _Cursor) -> None:
        """Take the due events (up to ``batch``), journal them, publish one message.

        No await in here: what is taken from the cursor is journaled and pending
        before anything else can run (a cancellation cannot lose it).
        """
        now = self.clock.now()
        pacer, journal, settings = self.pacer, self.journal, self.settings
        assert journal is not None
        first = cursor.take()
        events = [first]
        while len(events) < settings.batch:
            event = cursor.peek()
            if event is None or not pacer.is_due(event.session_time_ms, now):
                break
            events.append(cursor.take())
        lines = []
        for event in events:
            line = encode(event, "json")
            journal.append(event.epoch, event.seq, line)
            lines.append(line)
        if not self._flush_scheduled:
            # Write-ahead: the flush is queued on the loop before the publish task below
            # (and any other this iteration), and the loop runs callbacks in order, so the
            # journal reaches the OS before the message reaches the wire: one write(2)
            # for all the messages of an iteration.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_journal)
        if len(events) > 1:
            payload = encode(Batch(events=events), settings.encoding)
        elif settings.encoding == "json":
            payload = lines[0]
        else:
            payload = encode(first, settings.encoding)
        late = pacer.lateness(first.session_time_ms, now)
        if late is not None:
            self.stats.lateness_ms.append(late * 1000.0)
        last = events[-1]
        pacer.mark(last.session_time_ms)
        self._handed_ms = last.session_time_ms
        self.delivery.send(Outgoing(epoch=last.epoch, first_seq=first.seq, last_seq=last.seq,
                                    payload=payload))
        for event in events:
            if isinstance(event, SessionStarted):
                self._meta = encode(event, settings.encoding)
                self._spawn(self._publish_meta())

    def _flush_journal(self) -> None:
        self._flush_scheduled = False
        if self.journal is not None:
            self.journal.flush()

    async def _publish_meta(self) -> None:
        client = self.delivery.client
        if client is not None and self._meta is not None:
            await client.publish(self._topic_meta, self._meta, qos=1, retain=True,
                                 timeout=math.inf)

    async def _end_of_epoch(self) -> None:
        await self.delivery.drained()
        assert self._cursor is not None
        if self._cursor.peek() is not None:
            return  # a backward seek came in while the last acknowledgements did
        if not self._finished:
            self._finished = True
            assert self.journal is not None
            self.journal.sync()
            self._finished_event.set()
            self._status_now.set()
            log.info("replay finished", epoch=self.epoch,
                     events_published=self.stats.events_published)
            if self.settings.exit_when_done:
                self._stop.set()
        await self.pacer.wait_change()

    # --- requests: control and catch-up -----------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task of the current connection (cancelled with it, or when stopping)."""
        assert self._tg is not None
        return self._tg.create_task(coro)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self._topic_control:
                if message.retain:
                    log.warning("retained control message ignored", topic=topic)
                    continue
                await self._on_control(client, payload)
            elif topic == self._topic_catchup:
                self._spawn(self._serve_catchup(client, message))

    async def _on_control(self, client: aiomqtt.Client, payload: bytes) -> None:
        command = parse_command(payload)
        if isinstance(command, Rejection):
            rejection: Rejection | None = command
        else:
            rejection = self.apply(command)
        # The answer goes out from a task of its own: the reader never waits on the
        # broker, since it is what notices a lost connection.
        if rejection is not None:
            log.warning("control command rejected", command=rejection.command,
                        reason=rejection.reason)
            self._spawn(self._publish_status(client,
                                             rejected=msgspec.structs.asdict(rejection)))
        else:
            assert not isinstance(command, Rejection)
            self._spawn(self._publish_status(client, accepted=describe(command)))

    async def _serve_catchup(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        assert self.catchup is not None
        try:
            await self.catchup.handle(client, message)
        except (aiomqtt.MqttError, asyncio.CancelledError):
            raise
        except Exception:  # a bad request must not take the engine down
            log.exception("catch-up request failed")

    # --- connection -------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        s = self.settings
        client_id = s.client_id or f"lapcast-replay-{self.session_id}-{uuid.uuid4().hex[:6]}"
        return dict(
            identifier=client_id,
            will=aiomqtt.Will(self._topic_status, LOST_STATUS, qos=1, retain=True),
            max_inflight_messages=s.window,
            # Nagle stays on here, unlike every other lapcast client: each events message
            # is QoS 1, so the broker's PUBACK carries the TCP ACK back at once and Nagle
            # never waits on a delayed ACK; it only packs back-to-back messages into fewer
            # segments (one event a message at max speed: 84% of a bare aiomqtt loop's
            # rate with it, 79% without; bench/replay.py).
            socket_options=(),
            keepalive=s.keepalive_s,
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection: subscribe, resend what is pending, publish until stopped."""
        try:
            async with asyncio.TaskGroup() as tg:
                await self._serve(client, tg)
        except BaseExceptionGroup as group:
            error = _single(group)
            if not isinstance(error, _Stopping):
                raise error from None
        final = "finished" if self._finished else "stopped"
        await self._publish_status(client, state=final, timeout=self.settings.stop_grace_s)

    async def _serve(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        self.delivery.attach(client, tg)
        await client.subscribe([(self._topic_control, 1), (self._topic_catchup, 1)])
        reader = self._spawn(self._read(client))
        self._spawn(self._publish_meta())
        if not self._started:
            self._started = True
            self.pacer.seek(self._start_ms)  # the session clock starts now
        else:
            resume = self.delivery.first_unacked_seq
            if resume is None:
                event = self._cursor.peek() if self._cursor else None
                resume = (self.epoch, event.seq if event else self.total_events + 1)
            self.stats.resumes.append((*resume, time.time_ns()))
            log.warning("reconnected: resuming", epoch=resume[0], seq=resume[1])
        await self.delivery.resend()
        pump = self._spawn(self._pump())
        self._spawn(self._status_loop(client))
        self._status_now.set()
        self._connected.set()
        await self._stop.wait()
        pump.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.stop_grace_s):
                await self.delivery.drained()
        reader.cancel()
        # What is still running (publishes never acknowledged, a catch-up answer) ends
        # with the task group: raising cancels them all.
        raise _Stopping

    async def _fsync_loop(self) -> None:
        journal = self.journal
        assert journal is not None
        while True:
            await asyncio.sleep(self.settings.fsync_interval_s)
            if journal.dirty:
                await asyncio.to_thread(journal.fsync_now)

    async def run(self) -> ReplayStats:
        """Replay until stopped (or, with ``exit_when_done``, until the end is acknowledged)."""
        s = self.settings
        self.journal = JournalWriter(s.journal_path, session_id=self.session_id,
                                     fsync_interval_s=s.fsync_interval_s)
        self.epoch = self.journal.last_epoch + 1
        self._cursor = _Cursor(self.source, self.epoch)
        self.catchup = CatchupService(self.journal, current_epoch=lambda: self.epoch,
                                       session_id=self.session_id)
        log.info("replay starting", session=self.session_id, events=self.total_events,
                 epoch=self.epoch, broker=s.broker.describe(), journal=str(s.journal_path))
        fsync = asyncio.create_task(self._fsync_loop())
        try:
            await self._connect_loop()
        finally:
            fsync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fsync
            self.journal.close()
        return self.stats

    async def _connect_loop(self) -> None:
        s = self.settings
        delay = s.reconnect_min_s
        while not self._stop.is_set():
            try:
                # A CheckedClient: a refused connection or publish (ACL) is a BrokerError,
                # final; an unreachable or lost broker is an MqttError, retried.
                async with s.broker.client(**self._client_kwargs()) as client:
                    # aiomqtt warns above 10 pending calls; our window is deliberate.
                    client.pending_calls_threshold = 1 << 30
                    self.stats.connections += 1
                    delay = s.reconnect_min_s
                    try:
                        await self._session(client)
                    except aiomqtt.MqttError:
                        raise
                    except Exception as exc:
                        await self._say_lost(client, exc)
                        raise
                return
            except aiomqtt.MqttError as exc:
                log.warning("broker connection lost", error=str(exc), retry_in_s=delay,
                            pending=len(self.delivery.pending))
            finally:
                self._connected.clear()
                self.delivery.detach()
                self._tg = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, s.reconnect_max_s)

    async def _say_lost(self, client: aiomqtt.Client, exc: BaseException) -> None:
        """Best effort: a clean disconnect sends no last will, so say it ourselves."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._publish_status(client, state="lost", reason=str(exc))


class _Stopping(Exception):
    """Raised in a connection's task group to end it (and its tasks) on a clean stop."""


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that ended a connection's task group: a final error before a lost
    connection (several publishes fail at once when the connection drops)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, aiomqtt.MqttError | _Stopping):
            return exc
    for exc in leaves:
        if isinstance(exc, aiomqtt.MqttError):
            return exc
    return leaves[0]
