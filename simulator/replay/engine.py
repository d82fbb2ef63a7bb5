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

The engine holds the replay's state and its commands; each job is a module beside
it: ``cursor`` (the source, in order), ``publisher`` (pump, linger, send due),
``writeahead`` (journal flush before publish, fsync behind), ``status``,
``requests`` (control and catch-up topics) and ``link`` (connections, reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import structlog

from simulator import topics
from simulator.connection import BrokerSettings
from simulator.contract import Encoding, EngineState, EngineStatus
from simulator.errors import ControlError, LapcastError
from simulator.journal import DEFAULT_FSYNC_INTERVAL_S, JournalError, JournalWriter
from simulator.replay import bounds
from simulator.replay.catchup import CatchupService
from simulator.replay.control import (
    Command,
    Pause,
    Rejection,
    Resume,
    Seek,
    Speed,
    command_name,
)
from simulator.replay.cursor import Cursor, scan
from simulator.replay.delivery import Delivery, Outgoing
from simulator.replay.link import LOST_STATUS, BrokerLink
from simulator.replay.pacing import Clock, MonotonicClock, Pacer
from simulator.replay.publisher import Publisher
from simulator.replay.requests import Requests
from simulator.replay.status import StatusPublisher, final_status, status_document
from simulator.replay.writeahead import WriteAhead
from simulator.sources import Source
from simulator.timefmt import format_ms

__all__ = [
    "LOST_STATUS",
    "ReplayEngine",
    "ReplaySettings",
    "ReplayStats",
    "check_linger_ms",
    "check_settings",
    "default_journal",
]

log = structlog.get_logger()


def check_linger_ms(linger_ms: float) -> None:
    """Refuse a linger outside 0..1000 ms (``--linger-ms``), naming the option."""
    _option("--linger-ms", bounds.check_linger_ms, linger_ms)


def check_settings(settings: ReplaySettings) -> None:
    """Refuse numbers out of range (``simulator.replay.bounds``), naming the option."""
    _option("--speed", bounds.check_speed, settings.speed)
    _option("--batch", bounds.check_batch, settings.batch)
    _option("--window", bounds.check_window, settings.window)
    check_linger_ms(settings.linger_ms)
    if isinstance(settings.start_ms, bool) or not isinstance(settings.start_ms, int) or (
            settings.start_ms < 0):
        raise LapcastError(f"--from {bounds.shown(settings.start_ms)}: a session time "
                           "cannot be negative")


def _option(name: str, check: Callable[[Any], object], value: object) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise LapcastError(f"{name}: {exc}") from None


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
    # Catch-up requests that could not be answered (each is logged): no response topic,
    # or one outside the reply tree.
    catchup_without_reply_topic: int = 0
    catchup_reply_topic_refused: int = 0
    # (epoch, seq, wall clock ns) of each reconnection: where it resumed, and when.
    resumes: list[tuple[int, int, int]] = field(default_factory=list)
    # Publish time minus deadline, in ms, of recent paced messages.
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))

    def lateness_percentile(self, q: float) -> float | None:
        values = sorted(self.lateness_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(q / 100 * len(values)))]


class ReplayEngine:
    """One session's replay. ``await run()``; drive it with pause/resume/set_speed/seek."""

    def __init__(self, source: Source, settings: ReplaySettings, *,
                 clock: Clock | None = None) -> None:
        check_settings(settings)
        self.source = source
        self.settings = settings
        self.session_id = topics.validate_session_id(source.session_id)
        self.clock = clock or MonotonicClock()
        self.stats = ReplayStats()
        # The log id: the same for every run of this source with these options.
        self.total_events, self.end_ms, self.log_id = scan(source)
        if settings.start_ms > self.end_ms:
            raise LapcastError(f"--from {format_ms(settings.start_ms, hours=True)} is past the "
                               f"end of the session ({format_ms(self.end_ms, hours=True)})")
        self.pacer = Pacer(clock=self.clock, speed=settings.speed, position_ms=settings.start_ms)
        self.epoch = 0  # set by run() from the journal
        self.delivery = Delivery(topics.events(self.session_id), window=settings.window,
                                 on_acked=self._on_acked)
        self.acked: tuple[int, int] = (0, 0)  # (epoch, seq) of the last acknowledged
        self.status_publisher = StatusPublisher(topics.status(self.session_id),
                                                self.status_report,
                                                interval_s=settings.status_interval_s)
        self._stop = asyncio.Event()
        self.link = BrokerLink(settings=settings, session_id=self.session_id, stats=self.stats,
                               delivery=self.delivery, status=self.status_publisher,
                               stop=self._stop, serve=self._serve,
                               final_status=lambda error: final_status(self, error))
        # Set by run(): they need the journal.
        self.write_ahead: WriteAhead | None = None
        self.publisher: Publisher | None = None
        self.requests: Requests | None = None
        self._started = False
        self._start_ms = settings.start_ms
        self._finished = False
        self._finished_event = asyncio.Event()

    # --- control, in-process ----------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.pacer.paused

    @property
    def finished(self) -> bool:
        return self._finished

    def pause(self) -> None:
        self.pacer.pause()
        self._sync()
        self.status_publisher.now()
        log.info("replay paused", session_time=format_ms(self.pacer.session_time_ms()))

    def resume(self) -> None:
        self.pacer.resume()
        self.status_publisher.now()
        log.info("replay resumed")

    def set_speed(self, factor: float | None) -> None:
        """``factor`` from 0.01 to 10,000,000 (``bounds``), or None for max."""
        try:
            factor = bounds.check_speed(factor)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self.pacer.set_speed(factor)
        self.status_publisher.now()
        log.info("replay speed", speed="max" if factor is None else factor)

    def seek(self, to_ms: int) -> None:
        """Jump to session time ``to_ms``: forward publishes what lies between at once;
        backward, before an event already handed out, starts the next epoch."""
        if to_ms < 0:
            raise ControlError(f"seek to {to_ms} ms: session time cannot be negative")
        if to_ms > self.end_ms:
            raise ControlError(f"seek to {format_ms(to_ms, hours=True)} is past the end of "
                               f"the session ({format_ms(self.end_ms, hours=True)})")
        publisher = self.publisher
        if not self._started or publisher is None:
            # Not connected yet: the session clock has not started; start there.
            self._start_ms = to_ms
            self.pacer.seek(to_ms)
            self.status_publisher.now()
            return
        if publisher.handed_ms is not None and to_ms < publisher.handed_ms:
            self.epoch += 1
            publisher.restart(self.epoch)
            log.info("seek backward: new epoch", epoch=self.epoch, to=format_ms(to_ms))
        else:
            log.info("seek forward", to=format_ms(to_ms))
        self._sync()
        if publisher.cursor.peek() is not None:
            self._finished = False
            self._finished_event.clear()
        self.pacer.seek(to_ms)
        self.status_publisher.now()

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
            return Rejection(command=command_name(command), reason=str(exc))
        return None

    def stop(self) -> None:
        """Finish the run: outstanding messages get ``stop_grace_s`` to be acknowledged."""
        self._stop.set()

    async def wait_connected(self) -> None:
        await self.link.connected.wait()

    async def wait_finished(self) -> None:
        """Until the last event of the current epoch is acknowledged."""
        await self._finished_event.wait()

    # --- status -----------------------------------------------------------------------

    def state(self) -> EngineState:
        if self.write_ahead is not None and self.write_ahead.failure is not None:
            return "error"
        if self._finished:
            return "finished"
        return "paused" if self.pacer.paused else "running"

    def lag_ms(self) -> int:
        """How far behind its schedule the engine is (0 when on time, paused or at max)."""
        if self.publisher is None or self._finished or self.pacer.paused:
            return 0
        event = self.publisher.cursor.peek()
        late = None if event is None else self.pacer.lateness(event.session_time_ms)
        return max(0, round(late * 1000)) if late is not None else 0

    def status_report(self, **extra: Any) -> EngineStatus:
        """The status published (retained) on ``.../status``."""
        return status_document(self, **extra)

    def status(self, **extra: Any) -> dict[str, Any]:
        """``status_report`` as plain data (the CLI's progress line, tests)."""
        doc: dict[str, Any] = msgspec.to_builtins(self.status_report(**extra))
        return doc

    # --- what the parts report --------------------------------------------------------

    def _on_acked(self, item: Outgoing) -> None:
        self.stats.events_published += item.count
        self.stats.messages_acked += 1
        self.acked = (item.epoch, item.last_seq)

    def _on_end(self) -> None:
        """The last event of the epoch is acknowledged."""
        if self._finished:
            return
        self._finished = True
        self._sync()
        self._finished_event.set()
        self.status_publisher.now()
        log.info("replay finished", epoch=self.epoch, events_published=self.stats.events_published)
        if self.settings.exit_when_done:
            self._stop.set()

    def _on_journal_failure(self, error: JournalError) -> None:
        """Nothing more is published (``WriteAhead``); stop, saying ``error``."""
        dropped = self.delivery.drop_queued()
        log.info("messages never published: their events are not journaled", count=dropped)
        self.status_publisher.now()
        self._stop.set()

    def _sync(self) -> None:
        if self.write_ahead is not None:
            self.write_ahead.sync()

    # --- running ----------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        return self.link.client_kwargs()

    async def _serve(self, client: aiomqtt.Client) -> asyncio.Task[None]:
        """A new connection: subscribe, resend what is pending, start publishing."""
        publisher, requests, write_ahead = self.publisher, self.requests, self.write_ahead
        assert publisher is not None and requests is not None and write_ahead is not None
        spawn = self.link.spawn
        await client.subscribe(requests.subscriptions())
        spawn(requests.read(client))
        spawn(publisher.publish_meta())
        if not self._started:
            self._started = True
            self.pacer.seek(self._start_ms)  # the session clock starts now
        else:
            resume = self.delivery.first_unacked_seq
            if resume is None:
                event = publisher.cursor.peek()
                resume = (self.epoch, event.seq if event else self.total_events + 1)
            self.stats.resumes.append((*resume, time.time_ns()))
            log.warning("reconnected: resuming", epoch=resume[0], seq=resume[1])
        if not write_ahead.flush():  # resent messages are journaled first
            assert write_ahead.failure is not None
            raise write_ahead.failure
        await self.delivery.resend()
        pump = spawn(publisher.pump())
        spawn(self.status_publisher.loop(client))
        return pump

    async def run(self) -> ReplayStats:
        """Replay until stopped (or, with ``exit_when_done``, until the end is acknowledged)."""
        s = self.settings
        journal = JournalWriter(s.journal_path, session_id=self.session_id,
                                fsync_interval_s=s.fsync_interval_s)
        write_ahead = self.write_ahead = WriteAhead(
            journal, self.delivery, fsync_interval_s=s.fsync_interval_s,
            on_failure=self._on_journal_failure)
        self.epoch = journal.last_epoch + 1
        self.publisher = Publisher(
            cursor=Cursor(self.source, self.epoch, log_id=self.log_id), pacer=self.pacer,
            clock=self.clock,
            delivery=self.delivery, write_ahead=write_ahead, stats=self.stats,
            batch=s.batch, linger_ms=s.linger_ms, encoding=s.encoding,
            meta_topic=topics.meta(self.session_id), spawn=self.link.spawn,
            on_end=self._on_end, on_handed=self.status_publisher.handed)
        self.requests = Requests(
            control_topic=topics.control(self.session_id),
            catchup_topic=topics.catchup_request(self.session_id),
            catchup=CatchupService(journal, current_epoch=lambda: self.epoch,
                                   session_id=self.session_id, log_id=self.log_id),
            apply=self.apply, status=self.status_publisher, spawn=self.link.spawn,
            stats=self.stats)
        log.info("replay starting", session=self.session_id, events=self.total_events,
                 epoch=self.epoch, log_id=self.log_id, broker=s.broker.describe(),
                 journal=str(s.journal_path))
        fsync = asyncio.create_task(write_ahead.fsync_loop())
        try:
            await self.link.run()
        except JournalError:
            pass  # raised below, once the journal is closed
        finally:
            fsync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fsync
            write_ahead.close()
        if write_ahead.failure is not None:
            raise write_ahead.failure from None
        return self.stats
