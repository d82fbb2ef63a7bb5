"""The hot path of a live consumer: receive, decode, guard, sequence, fold.

One incoming message, top to bottom:

1. ``receive`` takes it from aiomqtt's queue (draining what has arrived at once);
2. ``handle`` turns its payload into bytes and dispatches on the topic;
3. ``on_events`` guards and decodes it (``guard.check_events``: not retained, not
   oversized, decodable, known version, this session) and unpacks the batch;
4. ``offer`` hands each event to the ``Sequencer`` (strict seq order, duplicates
   ignored, early ones buffered), which applies it to the fold, then notes the
   stamps, the checkpoint count and that a publication is due.

Everything else a message can cause is one call to the job beside it: a refusal
to the dead-letter outbox, a gap to the catch-up loop, our own retained state to
the publisher. Nothing here waits for the broker.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from consumers import guard
from consumers.catchup_loop import CatchupLoop
from consumers.checkpoint_schedule import CheckpointSchedule
from consumers.dead_letter import DeadLetterOutbox
from consumers.health import Counters, Health
from consumers.identity import LogIdentity
from consumers.publisher import Publisher
from consumers.sequencer import Offer, Sequencer
from consumers.stamps import Stamps, published_at
from simulator.contract import Event, unwrap_envelope
from simulator.errors import LapcastError
from simulator.mqtt.payload import payload_bytes

__all__ = ["ConsumerFailed", "Inbound"]

log = structlog.get_logger()

# Messages handled back to back before letting publishing and catch-up run.
_SLICE = 256


class ConsumerFailed(LapcastError):
    """The consumer's fold raised on an event: a bug to fix, named by epoch and seq."""


class Inbound:
    """Everything one consumer receives, folded in seq order."""

    def __init__(self, *, consumer: str, session_id: str, events_topic: str,
                 status_topic: str, reply_topic: str, state_topic: str,
                 max_payload_bytes: int, sequencer: Sequencer, stamps: Stamps,
                 counters: Counters, health: Health, publisher: Publisher,
                 outbox: DeadLetterOutbox, checkpoints: CheckpointSchedule,
                 catchup: CatchupLoop, identity: LogIdentity) -> None:
        self.consumer = consumer
        self.session_id = session_id
        self.events_topic = events_topic
        self.status_topic = status_topic
        self.reply_topic = reply_topic
        self.state_topic = state_topic
        self.max_payload_bytes = max_payload_bytes
        self.sequencer = sequencer
        self.stamps = stamps
        self.counters = counters
        self.health = health
        self.publisher = publisher
        self.outbox = outbox
        self.checkpoints = checkpoints
        self.catchup = catchup
        self.identity = identity
        self._dirty = publisher.dirty
        self._wake = catchup.wake
        # Whether the engine has shown up on this connection (its status, not its will).
        self._engine_up = False
        # MQTT 3.1.1 on this connection: no noLocal, so our own state comes back live.
        self._v311 = False

    def connected(self, *, v311: bool = False) -> None:
        self._engine_up = False
        self._v311 = v311

    async def receive(self, client: aiomqtt.Client,
                      inbox: asyncio.Queue[aiomqtt.Message]) -> None:
        handled = 0
        handle = self.handle
        # The iterator waits for a message and notices a disconnection; what has
        # arrived meanwhile is taken straight from the queue (simulator.mqtt.workarounds).
        async for message in client.messages:
            handle(message)
            while not inbox.empty():
                handle(inbox.get_nowait())
                handled += 1
                # A queue that never empties must not starve publishing and catch-up.
                if handled % _SLICE == 0:
                    await asyncio.sleep(0)

    def handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = payload_bytes(message)
        if topic == self.events_topic:
            self.on_events(message, payload)
        elif topic == self.reply_topic:
            self.catchup.on_reply(message, payload)
        elif topic == self.status_topic:
            self.on_status(payload, retained=bool(message.retain))
        elif topic == self.state_topic:
            # Under 3.1.1 (no noLocal) every publication of ours comes back, live, with
            # the retain flag cleared: skipped at once. The retained one, at subscribe
            # time, is still checked.
            if message.retain or not self._v311:
                self.on_own_state(payload)
        else:
            # A durable session can hold subscriptions of an older configuration.
            self.outbox.refuse(topic, payload, "not a topic this consumer reads events from")

    def on_events(self, message: aiomqtt.Message, payload: bytes) -> None:
        # An engine on MQTT 3.1.1 sends the publish time in an envelope (one prefix test).
        payload, stamp = unwrap_envelope(payload)
        checked = guard.check_events(payload, retained=bool(message.retain),
                                     session_id=self.session_id,
                                     max_bytes=self.max_payload_bytes)
        if isinstance(checked, guard.Refusal):
            self.outbox.reject(self.events_topic, payload, checked)
            return
        if stamp is None:
            stamp = published_at(message)
        offer = self.offer
        for event in checked:
            offer(event, stamp)

    def offer(self, event: Event, stamp: int | None) -> None:
        """The fold step, for live and caught-up events alike."""
        sequencer = self.sequencer
        try:
            outcome = sequencer.offer(event)
        except Exception as exc:
            # A fold that raises is a bug in the projection, not bad input: the event
            # passed validation. Its state may be half updated, so it is never
            # checkpointed; the process stops and says which event broke it.
            self.checkpoints.fold_failed()
            raise ConsumerFailed(
                f"consumer {self.consumer!r} failed to apply {type(event).__name__} "
                f"epoch {event.epoch} seq {event.seq}: {type(exc).__name__}: {exc}"
            ) from exc
        if outcome is Offer.APPLIED:
            applied = sequencer.last_applied
            self.stamps.applied(stamp, applied, sequencer.pending)
            self.counters.events_applied += len(applied)
            self.checkpoints.applied(len(applied))
            self._dirty.set()
        elif outcome is Offer.BUFFERED:
            self.stamps.buffered(event, stamp)
            self._wake.set()
        elif outcome is Offer.DEFERRED:
            self._wake.set()
        self.health.track_lag()

    def on_status(self, payload: bytes, *, retained: bool = False) -> None:
        if not payload:
            return
        status = guard.check_status(payload, session_id=self.session_id)
        if isinstance(status, guard.Refusal):
            self.outbox.reject(self.status_topic, payload, status)
            return
        if isinstance(status, guard.EngineLost) or status.state == "lost":
            self._engine_up = False  # the engine's last will, or its own word
            return
        self.engine_names_log(status.log_id, status.epoch)
        # The engine's own account of how far its log goes: a consumer that starts
        # after the last event still learns that it must catch up to there.
        self.sequencer.learn_head(status.epoch, status.last_seq, synced=True)
        if not self._engine_up and not retained:
            # A fresh status: the engine is up now. A catch-up request sent before it
            # subscribed is lost; ask again at once rather than after the timeout.
            self._engine_up = True
            self.catchup.engine_started()
        self.health.track_lag()
        self._wake.set()
        self._dirty.set()

    def engine_names_log(self, log_id: str, epoch: int | None) -> bool:
        """The engine (status, catch-up reply) says which log it replays and at which
        epoch: a state of another log, or of an epoch gone, is dropped
        (``consumers.identity``). True if it was."""
        if not self.identity.engine_says(log_id, epoch):
            return False
        self.publisher.replace_state()
        self.health.track_lag()
        self._wake.set()
        return True

    def on_own_state(self, payload: bytes) -> None:
        """Our retained state as the broker holds it: never trusted, only checked."""
        if payload == self.publisher.last_state or not payload:
            return
        seq = self.sequencer
        refusal = guard.check_own_state(
            payload, projection=self.consumer, session_id=self.session_id,
            head=None if seq.needs_sync else (seq.head_epoch, seq.head_seq))
        if refusal is not None:
            self.outbox.reject(self.state_topic, payload, refusal)
        # Whatever it is, our own fold's state replaces it at the next publication.
        self.publisher.replace_state()
