"""The live consumer runtime: the MQTT edge around one pure fold.

One ``ConsumerRunner`` runs one consumer for one session: connect, subscribe,
decode, order, fold, publish state, checkpoint. Everything that makes the live
result equal the offline fold lives here, written once for every consumer:

* **Durable session.** A stable client id, MQTT v5 ``clean_start=False`` on every
  connect (aiomqtt 2.x would otherwise start clean on a reconnect) and a
  SessionExpiryInterval, so the broker queues events while the consumer is away.
  A new connection after a failure waits with jittered exponential backoff.
* **Exactly-once effect.** Batches are unpacked; the ``Sequencer`` applies events
  strictly in seq order, ignores duplicates, buffers early ones and names the
  range that catch-up (the engine's service, or the journal file) must fetch.
  Broker acknowledgements are not progress: paho acknowledges on receipt, so
  every (re)connect asks catch-up for whatever lies beyond the last applied seq.
* **Checkpoints** of state plus ``(epoch, seq)`` every K events or T ms, and on a
  clean stop; a restart resumes from the checkpoint and catches up the rest.
* **Publications**, coalesced to at most one every N ms: the retained state
  stamped with its ``(epoch, seq)``, the changed rows, the ``on_changes`` hook,
  and the consumer's retained health (with a last will saying ``lost``).
* **Bad input is data.** Undecodable, invalid, unknown-version messages and the
  ones refused by defence in depth (retained or oversized events, a session id
  that does not match the topic, messages on topics it does not read, retained
  state without a checkable stamp, a "status" that is not this session's engine
  status) go to the dead-letter topic and are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt
import msgspec
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from consumers import checkpoint, guard, paho_speedup
from consumers.api import Consumer
from simulator.mqtt.backoff import Backoff
from consumers.catchup_client import (
    CatchupSource,
    CatchupUnavailable,
    JournalCatchup,
    MqttCatchup,
    correlation_of,
    decode_reply,
    reply_topic,
)
from consumers.dead_letter import dead_letter
from consumers.folding import Folder
from consumers.publication import StateRenderer
from consumers.sequencer import Offer, Sequencer
from simulator import topics
from simulator.connection import BrokerSettings
from simulator.contract import CatchupReply, CatchupRequest, Event, encode
from simulator.errors import ContractError, LapcastError

__all__ = [
    "PUBLISHED_AT",
    "ConsumerFailed",
    "ConsumerRunner",
    "Counters",
    "RunnerSettings",
    "default_client_id",
    "default_state_dir",
]

log = structlog.get_logger()

# Every incoming MQTT v5 message builds a paho Properties: make that cheap.
paho_speedup.install()

# The MQTT v5 user property the engine stamps on every events message.
PUBLISHED_AT: Final = "published_at_ns"

# Publishing and checkpointing cost O(state) on the event loop, folding O(1) per event.
# So that a huge state (10,000 cars) does not starve the fold, the coalescing interval
# stretches to this many times the last rendering, and a checkpoint waits this many
# times the last pickling after the previous one: at most ~1/N of the time goes to each.
RENDER_BUDGET: Final = 5
CHECKPOINT_BUDGET: Final = 10


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/lapcast`` (``~/.local/state/lapcast``): where checkpoints live."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lapcast"


def default_client_id(consumer: str, session_id: str) -> str:
    return f"lapcast-{consumer}-{session_id}"


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """How one consumer runs. Times are milliseconds unless the name says seconds."""

    session_id: str
    client_id: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    # Read catch-up ranges from this journal file instead of asking the engine.
    journal: Path | None = None
    checkpoint_events: int = 1000
    checkpoint_ms: int = 1000
    publish_ms: int = 100
    health_ms: int = 1000
    # Events messages above this size are refused (and counted), never decoded.
    max_payload_bytes: int = 1024 * 1024
    session_expiry_s: int = 3600
    catchup_timeout_s: float = 5.0
    keepalive_s: int = 30
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    # Early events buffered while a gap is fetched; beyond it they are fetched again.
    max_pending: int = 200_000

    def __post_init__(self) -> None:
        topics.validate_session_id(self.session_id)
        if self.client_id is not None and (
            not self.client_id or any(c in self.client_id for c in "/+#\x00")
        ):
            raise LapcastError(
                f"client id {self.client_id!r}: it names a topic level, so no / + # or empty"
            )
        for name in ("checkpoint_events", "checkpoint_ms", "publish_ms", "health_ms",
                     "max_payload_bytes", "session_expiry_s", "max_pending"):
            if getattr(self, name) < 1:
                raise LapcastError(f"{name.replace('_', '-')} must be at least 1, "
                                   f"not {getattr(self, name)}")


class ConsumerFailed(LapcastError):
    """The consumer's fold raised on an event: a bug to fix, named by epoch and seq."""


@dataclass(kw_only=True)
class Counters:
    """What the health message reports, besides the sequencer's own counts."""

    events_applied: int = 0
    dead_letters: int = 0
    refused: int = 0
    catchups: int = 0
    reconnects: int = 0
    checkpoints: int = 0


class ConsumerRunner:
    """Runs ``consumer`` live for one session until ``stop()`` (SIGTERM, SIGINT)."""

    def __init__(
        self, consumer: Consumer[Any], broker: BrokerSettings, settings: RunnerSettings
    ) -> None:
        self.consumer = consumer
        self.broker = broker
        self.settings = settings
        session = settings.session_id
        self.session_id = session
        self.client_id = settings.client_id or default_client_id(consumer.name, session)
        self.events_topic = topics.events(session)
        self.status_topic = topics.status(session)
        self.state_topic = topics.state(session, consumer.name)
        self.changes_topic = topics.state_changes(session, consumer.name)
        self.dead_letter_topic = topics.dead_letter(session)
        self.health_topic = topics.consumer_status(session, consumer.name)
        self.reply_topic = reply_topic(session, consumer.name, self.client_id)

        self.checkpoint_file = checkpoint.checkpoint_path(settings.state_dir, session,
                                                          consumer.name)
        saved = checkpoint.load(self.checkpoint_file, session_id=session, consumer=consumer.name)
        folder = saved.folder(consumer) if saved else Folder(consumer)
        self.sequencer = Sequencer(folder, max_pending=settings.max_pending)
        self.resumed_from = (folder.epoch, folder.seq) if saved else None
        self._stamp_ns = saved.published_at_ns if saved else 0
        self._session_time_ms = saved.session_time_ms if saved else 0
        # Engine publish times of buffered events, applied later: {(epoch, seq): ns}.
        self._stamps: dict[tuple[int, int], int] = {}

        self.counters = Counters()
        self._renderer = StateRenderer(projection=consumer.name, session_id=session)
        self._published_pos: tuple[int, int] | None = None
        self._last_state: bytes | None = None
        self._force_state = False
        self._last_health: bytes | None = None
        self._health_at = 0.0
        self._behind_since_ns: int | None = None
        self._unsaved = 0
        self._render_s = 0.0  # how long the last state took to render (view, encode, diff)
        self._snapshot_s = 0.0  # how long the last checkpoint took to pickle
        self._snapshot_at = 0.0  # when it was taken (monotonic)
        self._stopping = False
        self._failed = False
        # Whether the engine has shown up on this connection (its status, not its will).
        self._engine_up = False

        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()  # something to publish
        self._wake = asyncio.Event()  # something may be missing: catch up
        self._checkpoint_due = asyncio.Event()  # K events since the last checkpoint
        self._writing: asyncio.Future[None] | None = None  # a checkpoint being written
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._journal = (JournalCatchup(settings.journal, session_id=session)
                         if settings.journal else None)
        self._catchup: CatchupSource | None = self._journal
        self._mqtt_catchup: MqttCatchup | None = None
        self._backoff = Backoff(min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s)

    @property
    def folder(self) -> Folder[Any]:
        return self.sequencer.folder

    # --- lifecycle -----------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to stop cleanly: publish, checkpoint, disconnect."""
        self._stop.set()

    async def run(self) -> None:
        """Run until stopped; reconnect (with backoff) whenever the broker goes away."""
        log.info("consumer starting", consumer=self.consumer.name, session=self.session_id,
                 client_id=self.client_id, broker=self.broker.describe(),
                 resumed_from=self.resumed_from)
        try:
            while not self._stop.is_set():
                try:
                    await self._connection()
                except aiomqtt.MqttError as exc:
                    # Refusals (bad credentials, untrusted certificate, a publish or
                    # subscription the ACL forbids) are BrokerError and end the run.
                    self.counters.reconnects += 1
                    log.warning("broker connection lost; reconnecting", error=str(exc),
                                broker=self.broker.describe())
                if not self._stop.is_set():
                    delay = self._backoff.next()
                    try:
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
                    except TimeoutError:
                        pass
        finally:
            self._stopping = True
            await self._final_checkpoint()
        log.info("consumer stopped", consumer=self.consumer.name, epoch=self.folder.epoch,
                 seq=self.folder.seq)

    async def _connection(self) -> None:
        """One connection: subscribe, run the loops until stop or disconnection."""
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.settings.session_expiry_s
        will = aiomqtt.Will(topic=self.health_topic, payload=self._lost_payload(), qos=1,
                            retain=True)
        inboxes: list[asyncio.Queue[aiomqtt.Message]] = []

        def inbox(maxsize: int = 0) -> asyncio.Queue[aiomqtt.Message]:
            # aiomqtt's queue of incoming messages, kept so that the receive loop can
            # drain what has arrived without aiomqtt's one task per message.
            queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(maxsize)
            inboxes.append(queue)
            return queue

        client = self.broker.client(
            identifier=self.client_id,
            clean_start=False,  # on every connect, not only the first
            properties=connect,
            will=will,
            keepalive=self.settings.keepalive_s,
            queue_type=inbox,
        )
        async with client:
            self._backoff.reset()
            if self._journal is None:
                self._mqtt_catchup = MqttCatchup(
                    client, session_id=self.session_id, response_topic=self.reply_topic,
                    timeout_s=self.settings.catchup_timeout_s,
                )
                self._catchup = self._mqtt_catchup
            self._engine_up = False
            await self._subscribe(client)
            log.info("consumer connected", consumer=self.consumer.name,
                     broker=self.broker.describe())
            # Whatever was acknowledged but not applied before is fetched again.
            self.sequencer.request_sync()
            self._wake.set()
            self._dirty.set()
            try:
                await _run_until(self._stop, [
                    self._receive(client, inboxes[-1]),
                    self._catchup_loop(),
                    self._publish_loop(client),
                    self._dead_letter_loop(client),
                    self._every(self.settings.health_ms, self._dirty.set),
                    self._checkpoint_loop(),
                ])
            finally:
                self._mqtt_catchup = None
            # A clean stop: the last state and a health saying "stopped", still connected.
            self._stopping = True
            await self._final_checkpoint()
            try:
                await self._publish(client)
            except aiomqtt.MqttError as exc:
                log.warning("final publication failed", error=str(exc))

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        wanted = [
            # Retain-as-published: a retained (forged) event shows its flag, so it is refused.
            (self.events_topic, SubscribeOptions(qos=1, retainAsPublished=True)),
            (self.status_topic, SubscribeOptions(qos=1)),
            (self.reply_topic, SubscribeOptions(qos=1)),
            # Our own retained state, to check it and overwrite anything we did not write.
            (self.state_topic, SubscribeOptions(qos=1, noLocal=True)),
        ]
        # A refused filter raises BrokerError naming it (CheckedClient).
        await client.subscribe(wanted)

    @staticmethod
    async def _every(ms: int, action: Any) -> None:
        while True:
            await asyncio.sleep(ms / 1000)
            action()

    # --- receiving -----------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client,
                       inbox: asyncio.Queue[aiomqtt.Message]) -> None:
        handled = 0
        # The iterator waits for a message and notices a disconnection; what has
        # arrived meanwhile is taken straight from the queue.
        async for message in client.messages:
            self._handle(message)
            while not inbox.empty():
                self._handle(inbox.get_nowait())
                handled += 1
                # A queue that never empties must not starve publishing and catch-up.
                if handled % 256 == 0:
                    await asyncio.sleep(0)

    def _handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        payload = bytes(payload)
        if topic == self.events_topic:
            self._on_events(message, payload)
        elif topic == self.reply_topic:
            self._on_reply(message, payload)
        elif topic == self.status_topic:
            self._on_status(payload, retained=bool(message.retain))
        elif topic == self.state_topic:
            self._on_own_state(payload)
        else:
            # A durable session can hold subscriptions of an older configuration.
            self._refuse(topic, payload, "not a topic this consumer reads events from")

    def _on_events(self, message: aiomqtt.Message, payload: bytes) -> None:
        checked = guard.check_events(payload, retained=bool(message.retain),
                                     session_id=self.session_id,
                                     max_bytes=self.settings.max_payload_bytes)
        if isinstance(checked, guard.Refusal):
            self._reject(self.events_topic, payload, checked)
            return
        published_at = _published_at(message)
        for event in checked:
            self._offer(event, published_at)

    def _on_reply(self, message: aiomqtt.Message, payload: bytes) -> None:
        try:
            reply = decode_reply(payload)
        except ContractError as exc:
            self._dead(self.reply_topic, payload, f"catch-up reply does not decode: {exc}")
            return
        if self._mqtt_catchup is None or not self._mqtt_catchup.deliver(
            reply, correlation_of(message)
        ):
            log.debug("stray catch-up reply dropped", topic=self.reply_topic)

    def _on_status(self, payload: bytes, *, retained: bool = False) -> None:
        if not payload:
            return
        status = guard.check_status(payload, session_id=self.session_id)
        if isinstance(status, guard.Refusal):
            self._reject(self.status_topic, payload, status)
            return
        if status.state == "lost":
            self._engine_up = False  # the engine's last will
            return
        assert status.epoch is not None and status.last_seq is not None
        epoch, last_seq = status.epoch, status.last_seq
        # The engine's own account of how far its log goes: a consumer that starts
        # after the last event still learns that it must catch up to there.
        self.sequencer.learn_head(epoch, last_seq, synced=True)
        if not self._engine_up and not retained:
            # A fresh status: the engine is up now. A catch-up request sent before it
            # subscribed is lost; ask again at once rather than after the timeout.
            self._engine_up = True
            if self._mqtt_catchup is not None:
                self._mqtt_catchup.engine_started()
        self._track_lag()
        self._wake.set()
        self._dirty.set()

    def _on_own_state(self, payload: bytes) -> None:
        """Our retained state as the broker holds it: never trusted, only checked."""
        if payload == self._last_state or not payload:
            return
        seq = self.sequencer
        refusal = guard.check_own_state(
            payload, projection=self.consumer.name, session_id=self.session_id,
            head=None if seq.needs_sync else (seq.head_epoch, seq.head_seq))
        if refusal is not None:
            self._reject(self.state_topic, payload, refusal)
        # Whatever it is, our own fold's state replaces it at the next publication.
        self._force_state = True
        self._dirty.set()

    # --- folding -------------------------------------------------------------------

    def _offer(self, event: Event, published_at: int | None) -> None:
        sequencer = self.sequencer
        try:
            outcome = sequencer.offer(event)
        except Exception as exc:
            # A fold that raises is a bug in the projection, not bad input: the event
            # passed validation. Its state may be half updated, so it is never
            # checkpointed; the process stops and says which event broke it.
            self._failed = True
            raise ConsumerFailed(
                f"consumer {self.consumer.name!r} failed to apply {type(event).__name__} "
                f"epoch {event.epoch} seq {event.seq}: {type(exc).__name__}: {exc}"
            ) from exc
        if outcome is Offer.APPLIED:
            applied = sequencer.last_applied
            if published_at:
                self._stamp_ns = max(self._stamp_ns, published_at)
            for later in applied[1:]:
                stamp = self._stamps.pop((later.epoch, later.seq), None)
                if stamp:
                    self._stamp_ns = max(self._stamp_ns, stamp)
            if not sequencer.pending:
                self._stamps.clear()
            self._session_time_ms = applied[-1].session_time_ms
            self.counters.events_applied += len(applied)
            self._unsaved += len(applied)
            self._dirty.set()
            if self._unsaved >= self.settings.checkpoint_events:
                self._checkpoint_due.set()
        elif outcome is Offer.BUFFERED:
            if published_at:
                self._stamps[(event.epoch, event.seq)] = published_at
            self._wake.set()
        elif outcome is Offer.DEFERRED:
            self._wake.set()
        self._track_lag()

    def _track_lag(self) -> None:
        if self.sequencer.lag_events == 0:
            self._behind_since_ns = None
        elif self._behind_since_ns is None:
            self._behind_since_ns = time.time_ns()

    # --- catch-up ------------------------------------------------------------------

    async def _catchup_loop(self) -> None:
        backoff = Backoff(min_s=0.2, max_s=self.settings.reconnect_max_s)
        while True:
            request = self.sequencer.missing()
            if request is None:
                self._wake.clear()
                self._dirty.set()  # caught up: say so
                await self._wake.wait()
                continue
            self.counters.catchups += 1
            log.info("catching up", consumer=self.consumer.name, epoch=request.epoch,
                     from_seq=request.from_seq, to_seq=request.to_seq)
            try:
                await self._fetch(request)
            except CatchupUnavailable as exc:
                log.warning("catch-up unavailable; will retry", error=str(exc))
                await asyncio.sleep(backoff.next())
                continue
            if self.sequencer.missing() == request:
                # The source had nothing more yet (its journal trails its stream).
                await asyncio.sleep(backoff.next())
            else:
                backoff.reset()

    async def _fetch(self, request: CatchupRequest) -> None:
        assert self._catchup is not None
        where = str(self.settings.journal) if self._journal else self.reply_topic
        replies: Any = self._catchup.fetch(request)  # an async generator
        async with contextlib.aclosing(replies):
            async for reply in replies:
                await self._take_reply(request, reply, where)

    async def _take_reply(self, request: CatchupRequest, reply: CatchupReply,
                          where: str) -> None:
        if reply.current_epoch > request.epoch:
            # A backward seek (or a new engine run) voided the epoch asked for.
            self.sequencer.learn_epoch(reply.current_epoch)
            return
        if reply.error:
            raise CatchupUnavailable(f"catch-up of epoch {request.epoch} seq "
                                     f"{request.from_seq}.. refused: {reply.error}")
        for event in reply.events:
            if event.session_id != self.session_id:
                self._refuse(where, encode(event),
                             f"catch-up event of session {event.session_id!r}, "
                             f"not {self.session_id!r}")
                raise CatchupUnavailable(f"{where}: events of another session")
            self._offer(event, None)
        if reply.final:
            self.sequencer.learn_head(request.epoch, reply.last_seq,
                                      synced=request.to_seq is None)
            self._track_lag()
        # Let live messages and publications through between two chunks.
        await asyncio.sleep(0)

    # --- dead letters ----------------------------------------------------------------

    def _reject(self, topic: str, payload: bytes, refusal: guard.Refusal) -> None:
        if refusal.forged:
            self._refuse(topic, payload, refusal.reason)
        else:
            self._dead(topic, payload, refusal.reason)

    def _refuse(self, topic: str, payload: bytes, reason: str) -> None:
        self.counters.refused += 1
        self._dead(topic, payload, f"refused: {reason}")

    def _dead(self, topic: str, payload: bytes, reason: str) -> None:
        self.counters.dead_letters += 1
        log.warning("dead letter", consumer=self.consumer.name, topic=topic, reason=reason)
        letter = dead_letter(consumer=self.consumer.name, topic=topic, reason=reason,
                             payload=payload)
        try:
            self._outbox.put_nowait(letter)
        except asyncio.QueueFull:
            log.error("dead-letter outbox full; letter counted but not published")
        self._dirty.set()

    async def _dead_letter_loop(self, client: aiomqtt.Client) -> None:
        while True:
            letter = await self._outbox.get()
            await client.publish(self.dead_letter_topic, letter, qos=1)

    # --- publishing ------------------------------------------------------------------

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        least = self.settings.publish_ms / 1000
        last = -least
        while True:
            await self._dirty.wait()
            # Coalesce: at most one publication every N ms (longer for a state that
            # takes long to render), the first one at once.
            interval = max(least, RENDER_BUDGET * self._render_s)
            delay = last + interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            last = time.monotonic()
            await self._publish(client)

    async def _publish(self, client: aiomqtt.Client) -> None:
        folder = self.folder
        position = (folder.epoch, folder.seq)
        if folder.seq > 0 and (position != self._published_pos or self._force_state):
            started = time.perf_counter()
            rendered = self._renderer.render(
                epoch=folder.epoch, seq=folder.seq, session_time_ms=self._session_time_ms,
                published_at_ns=self._stamp_ns, view=folder.view(),
            )
            self._render_s = time.perf_counter() - started
            self._published_pos, self._force_state = position, False
            self._last_state = rendered.state
            await client.publish(self.state_topic, rendered.state, qos=1, retain=True)
            if rendered.changes_payload is not None:
                await client.publish(self.changes_topic, rendered.changes_payload, qos=1)
            if rendered.changes and self.consumer.on_changes is not None:
                try:
                    self.consumer.on_changes(rendered.changes)
                except Exception:  # a user's hook must not stop the fold
                    log.exception("on_changes hook failed", consumer=self.consumer.name)
        health = self.health_payload()
        now = time.monotonic()
        if health != self._last_health or now - self._health_at >= self.settings.health_ms / 1000:
            self._last_health, self._health_at = health, now
            await client.publish(self.health_topic, health, qos=1, retain=True)

    def health(self) -> dict[str, Any]:
        """The consumer's health, as published on ``.../consumers/{name}/status``."""
        seq = self.sequencer
        lag_events = seq.lag_events
        behind = self._behind_since_ns
        if self._stopping:
            state = "stopped"
        elif seq.caught_up:
            state = "live"
        else:
            state = "catching-up"
        return {
            "consumer": self.consumer.name,
            "session_id": self.session_id,
            "client_id": self.client_id,
            "state": state,
            "events_applied": self.counters.events_applied,
            "epoch": self.folder.epoch,
            "last_seq": self.folder.seq,
            "head_epoch": seq.head_epoch,
            "head_seq": seq.head_seq,
            "lag_events": lag_events,
            # How long the consumer has been behind the engine's log (0 when caught up).
            "lag_ms": (time.time_ns() - behind) // 1_000_000 if lag_events and behind else 0,
            "pending": seq.pending,
            "dead_letters": self.counters.dead_letters,
            "refused": self.counters.refused,
            "duplicates": seq.counts.duplicates,
            "catchups": self.counters.catchups,
            "reconnects": self.counters.reconnects,
            "checkpoints": self.counters.checkpoints,
        }

    def health_payload(self) -> bytes:
        return msgspec.json.encode(self.health())

    def _lost_payload(self) -> bytes:
        return msgspec.json.encode({"state": "lost", "consumer": self.consumer.name,
                                    "session_id": self.session_id, "client_id": self.client_id})

    # --- checkpoints -----------------------------------------------------------------

    def _snapshot(self, *, force: bool = False) -> tuple[bytes, int] | None:
        """The checkpoint's bytes now and the events they cover; None if not needed."""
        folder = self.folder
        if self._failed:
            return None  # a fold that raised may have left its state half updated
        if not self._unsaved and not (force and folder.seq and not self.checkpoint_file.exists()):
            return None
        started = time.perf_counter()
        try:
            payload = checkpoint.encode(checkpoint.Checkpoint(
                session_id=self.session_id, consumer=self.consumer.name, epoch=folder.epoch,
                seq=folder.seq, state=folder.state, published_at_ns=self._stamp_ns,
                session_time_ms=self._session_time_ms,
            ), self.checkpoint_file)
        except checkpoint.CheckpointError as exc:
            log.error("checkpoint failed", error=str(exc))
            return None
        self._snapshot_s = time.perf_counter() - started
        self._snapshot_at = time.monotonic()
        return payload, self._unsaved

    def _saved(self, covered: int) -> None:
        self._unsaved -= covered
        self.counters.checkpoints += 1

    async def _final_checkpoint(self) -> None:
        """The checkpoint of a stop, after any write still in a worker thread."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        self._save_checkpoint(force=True)

    def _save_checkpoint(self, *, force: bool = False) -> None:
        """Checkpoint now, on the event loop (at a stop, when nothing else runs)."""
        snapshot = self._snapshot(force=force)
        if snapshot is None:
            return
        try:
            checkpoint.write(self.checkpoint_file, snapshot[0])
        except checkpoint.CheckpointError as exc:
            log.error("checkpoint failed", error=str(exc))
            return
        self._saved(snapshot[1])

    async def _checkpoint_loop(self) -> None:
        """Every K events or T ms: the state is pickled here, written by a worker thread.

        Pickling on the loop keeps state and seq consistent; the write and its fsyncs
        (milliseconds, more on a slow disk) do not hold up the fold or publications.
        """
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.checkpoint_ms / 1000):
                    await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            # A state that takes long to pickle is checkpointed less often (see
            # CHECKPOINT_BUDGET): a longer catch-up after a crash, not a starved fold.
            rest = self._snapshot_at + CHECKPOINT_BUDGET * self._snapshot_s - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
            snapshot = self._snapshot()
            if snapshot is None:
                continue
            self._writing = asyncio.ensure_future(
                asyncio.to_thread(checkpoint.write, self.checkpoint_file, snapshot[0]))
            try:
                # Shielded: a stop must not leave an older write to land after the last one.
                await asyncio.shield(self._writing)
            except checkpoint.CheckpointError as exc:
                # Keep folding: a missing checkpoint costs a longer catch-up, not correctness.
                log.error("checkpoint failed", error=str(exc))
                continue
            self._saved(snapshot[1])


def _published_at(message: aiomqtt.Message) -> int | None:
    props: Any = message.properties
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == PUBLISHED_AT:
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _run_until(stop: asyncio.Event, coroutines: list[Any]) -> None:
    """Run the loops of one connection until ``stop`` is set or one of them fails.

    Not an ``asyncio.TaskGroup``: aiomqtt waits for acknowledgements with
    ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation that
    races with its result; a loop that lost its cancellation would then keep a
    task group (and the whole process) waiting forever. So cancellation is
    repeated until every task has ended. The first failure, if any, is raised.
    """
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        everything = [*tasks, stopper]
        while pending := [task for task in everything if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.05)
    errors = [task.exception() for task in tasks if not task.cancelled()]
    failures = [exc for exc in errors if exc is not None]
    if failures:
        # A refusal (BrokerError) says more than the disconnection it caused.
        failures.sort(key=lambda exc: not isinstance(exc, LapcastError))
        raise failures[0]
