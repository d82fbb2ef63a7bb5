"""Catch-up: fetch whatever the sequencer says is missing, until nothing is.

Whenever something may be missing (a gap, a reconnect, a status naming a later
head) the hot path sets ``wake``. ``CatchupLoop.run`` asks the sequencer for the
missing range, fetches it from the source (``catchup_client.py``: the engine's
service over this connection, or the journal file) and offers every event to the
same fold step as live ones. An unavailable source is asked again after a
backoff; so is one that had nothing more yet (its journal trails its stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from consumers.catchup_client import (
    CatchupSource,
    CatchupUnavailable,
    JournalCatchup,
    MqttCatchup,
    correlation_of,
    decode_reply,
)
from consumers.dead_letter import DeadLetterOutbox
from consumers.health import Counters, Health
from consumers.sequencer import Sequencer
from simulator.contract import CatchupReply, CatchupRequest, Event, encode
from simulator.errors import ContractError
from simulator.mqtt.backoff import Backoff

__all__ = ["CatchupLoop"]

log = structlog.get_logger()


class CatchupLoop:
    """Fills the sequencer's gaps from the engine's catch-up service or the journal."""

    def __init__(self, *, consumer: str, session_id: str, reply_topic: str,
                 journal: Path | None, timeout_s: float, retry_max_s: float,
                 sequencer: Sequencer, counters: Counters, health: Health,
                 outbox: DeadLetterOutbox, dirty: asyncio.Event) -> None:
        self.consumer = consumer
        self.session_id = session_id
        self.reply_topic = reply_topic
        self.timeout_s = timeout_s
        self.retry_max_s = retry_max_s
        self.sequencer = sequencer
        self.counters = counters
        self.health = health
        self.outbox = outbox
        self._dirty = dirty
        # Set when something may be missing: catch up.
        self.wake = asyncio.Event()
        # Where fetched events go: the hot path's fold step (``Inbound.offer``).
        self.offer: Callable[[Event, int | None], None] = _not_wired
        # What a reply says about the engine's log and epoch (``Inbound.engine_names_log``):
        # True if the state was dropped, which voids the rest of the answer.
        self.names_log: Callable[[str, int | None], bool] = lambda log_id, epoch: False
        # A refusal of an epoch older than the engine's: True if the state was dropped.
        self.epoch_refused: Callable[[int, int, str], bool] = lambda e, c, error: False
        self._journal = JournalCatchup(journal, session_id=session_id) if journal else None
        self._where = str(journal) if journal else reply_topic
        self._source: CatchupSource | None = self._journal
        self._mqtt: MqttCatchup | None = None

    # --- the connection's side -------------------------------------------------------

    def connected(self, client: aiomqtt.Client) -> None:
        """A new connection: without a journal, ask the engine over it."""
        if self._journal is None:
            self._mqtt = MqttCatchup(client, session_id=self.session_id,
                                     response_topic=self.reply_topic, timeout_s=self.timeout_s)
            self._source = self._mqtt

    def disconnected(self) -> None:
        self._mqtt = None

    def on_reply(self, message: aiomqtt.Message, payload: bytes) -> None:
        """A message on our reply topic: a chunk for the request that waits for it."""
        try:
            reply = decode_reply(payload)
        except ContractError as exc:
            self.outbox.dead(self.reply_topic, payload, f"catch-up reply does not decode: {exc}")
            return
        if self._mqtt is None or not self._mqtt.deliver(reply, correlation_of(message, reply)):
            log.debug("stray catch-up reply dropped", topic=self.reply_topic)

    def engine_started(self) -> None:
        """The engine is up now: a request sent before it subscribed is asked again."""
        if self._mqtt is not None:
            self._mqtt.engine_started()

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(min_s=0.2, max_s=self.retry_max_s)
        while True:
            request = self.sequencer.missing()
            if request is None:
                self.wake.clear()
                self._dirty.set()  # caught up: say so
                await self.wake.wait()
                continue
            self.counters.catchups += 1
            log.info("catching up", consumer=self.consumer, epoch=request.epoch,
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
        assert self._source is not None
        replies: Any = self._source.fetch(request)  # an async generator
        async with contextlib.aclosing(replies):
            async for reply in replies:
                if not await self._take(request, reply):
                    return

    async def _take(self, request: CatchupRequest, reply: CatchupReply) -> bool:
        """Take one chunk; False if the rest of the answer is void."""
        if self.names_log(reply.log_id, reply.current_epoch):
            return False  # another log, or our epoch is gone: folding from the start
        if reply.current_epoch > request.epoch:
            # A backward seek (or a new engine run) voided the epoch asked for.
            self.sequencer.learn_epoch(reply.current_epoch)
            return False
        if reply.error:
            if self.epoch_refused(request.epoch, reply.current_epoch, reply.error):
                return False
            raise CatchupUnavailable(f"catch-up of epoch {request.epoch} seq "
                                     f"{request.from_seq}.. refused: {reply.error}")
        offer = self.offer
        for event in reply.events:
            if event.session_id != self.session_id:
                self.outbox.refuse(self._where, encode(event),
                                   f"catch-up event of session {event.session_id!r}, "
                                   f"not {self.session_id!r}")
                raise CatchupUnavailable(f"{self._where}: events of another session")
            offer(event, None)
        if reply.final:
            self.sequencer.learn_head(request.epoch, reply.last_seq,
                                      synced=request.to_seq is None)
            self.health.track_lag()
        # Let live messages and publications through between two chunks.
        await asyncio.sleep(0)
        return True


def _not_wired(event: Event, published_at: int | None) -> None:
    raise RuntimeError("CatchupLoop.offer was not wired to the fold step")
