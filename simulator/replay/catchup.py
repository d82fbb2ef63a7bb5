"""The catch-up service: ranges of the journal, over MQTT v5 request/response.

A consumer that sees a gap in ``seq`` (the broker lost messages, it was offline, it
started late) publishes a ``CatchupRequest`` (JSON) on
``lapcast/v1/sessions/{s}/catchup/request`` with an MQTT v5 *response topic* and
*correlation data*. The engine answers on that response topic with the same
correlation data, QoS 1, in ``CatchupReply`` chunks of up to ``CHUNK_EVENTS``
events, in ``seq`` order; ``final`` is true on the last chunk. Replies are always
JSON, whatever the engine's ``--encoding``: the events in them are the journal's
lines as they are, copied without decoding.

``last_seq`` is the last seq journaled for the epoch asked, ``current_epoch`` the
epoch the engine is publishing. A refused request (unknown epoch, undecodable
request) gets one final reply with ``error`` set and no events. A range beyond the
journal is not an error: the reply holds what exists (maybe nothing), and
``last_seq`` says how far the journal goes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulator import topics
from simulator.contract import CatchupReply, decode_catchup_request
from simulator.errors import ContractError
from simulator.journal import JournalWriter

__all__ = ["CHUNK_EVENTS", "CatchupService"]

CHUNK_EVENTS: Final = 1000

log = structlog.get_logger()

_encoder: Final = msgspec.json.Encoder()


def _reply(epoch: int, lines: list[bytes], *, final: bool, last_seq: int,
           current_epoch: int, error: str | None = None, log_id: str = "",
           correlation: str | None = None) -> bytes:
    # The lines are already the events' JSON: msgspec.Raw splices them in untouched
    # (the encoder does not type-check, so a list of Raw stands for list[Event]).
    events: Any = [msgspec.Raw(line) for line in lines]
    return _encoder.encode(CatchupReply(epoch=epoch, events=events, final=final,
                                        last_seq=last_seq, current_epoch=current_epoch,
                                        error=error, log_id=log_id,
                                        correlation=correlation))


def _in_payload(payload: bytes) -> tuple[str | None, str | None]:
    """MQTT 3.1.1: the reply topic and correlation a request carries in its payload."""
    try:
        request = decode_catchup_request(payload)
    except ContractError:
        return None, None
    return request.reply_to, request.correlation


class CatchupService:
    """Answers catch-up requests from a journal the engine keeps writing."""

    def __init__(self, journal: JournalWriter, *, current_epoch: Callable[[], int],
                 session_id: str, chunk_events: int = CHUNK_EVENTS,
                 log_id: str = "") -> None:
        self.journal = journal
        # The log the engine replays, named in every reply (``simulator.logid``).
        self.log_id = log_id
        # Replies go only below this prefix: the engine's user may write events, meta
        # and status, so a request naming one of those as its response topic would
        # otherwise make the engine forge them (a consumer's user could steer it).
        self.reply_prefix = topics.catchup_reply_prefix(session_id) + "/"
        self.current_epoch = current_epoch
        self.chunk_events = chunk_events
        self.requests_served = 0

    def replies(self, payload: bytes, correlation: str | None = None) -> Iterator[bytes]:
        """The encoded reply chunks to one request payload, in order; ``correlation``
        (MQTT 3.1.1: from the request's payload) is repeated in every chunk."""
        current = self.current_epoch()
        try:
            request = decode_catchup_request(payload)
        except ContractError as exc:  # names the message: "catch-up request: ..."
            yield _reply(0, [], final=True, last_seq=0, current_epoch=current,
                         log_id=self.log_id, correlation=correlation, error=f"bad {exc}")
            return
        journal = self.journal
        if request.epoch not in journal.index.epochs and request.epoch != current:
            known = sorted(journal.index.epochs)
            held = (f"epoch {known[0]}" if len(known) == 1
                    else f"epochs {known[0]}..{known[-1]}" if known else "no epoch yet")
            yield _reply(request.epoch, [], final=True, last_seq=0, current_epoch=current,
                         log_id=self.log_id, correlation=correlation,
                         error=f"unknown epoch {request.epoch} (the journal holds {held})")
            return
        last = journal.last_seq(request.epoch)
        to_seq = last if request.to_seq is None else min(request.to_seq, last)
        seq = request.from_seq
        if seq > to_seq:
            yield _reply(request.epoch, [], final=True, last_seq=last, current_epoch=current,
                         log_id=self.log_id, correlation=correlation)
            return
        while seq <= to_seq:
            stop = min(seq + self.chunk_events - 1, to_seq)
            lines = journal.read(request.epoch, seq, stop)
            seq = stop + 1
            yield _reply(request.epoch, lines, final=seq > to_seq, last_seq=last,
                         current_epoch=current, log_id=self.log_id, correlation=correlation)

    async def handle(self, client: Any, message: Any) -> str:
        """Answer one request message (an ``aiomqtt.Message``) on its response topic.

        Returns ``"answered"``, or why it could not be: ``"no reply topic"``, or
        ``"reply topic refused"`` (outside the reply tree); both are logged.
        """
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        payload = message.payload if isinstance(message.payload, bytes) else bytes(
            message.payload or b"")
        in_payload: str | None = None
        if not response_topic:  # MQTT 3.1.1: in the request itself
            response_topic, in_payload = _in_payload(payload)
            in_payload = in_payload or ""
        if not response_topic:
            log.warning("catch-up request without a response topic ignored",
                        topic=str(message.topic))
            return "no reply topic"
        if not isinstance(response_topic, str) or not response_topic.startswith(
                self.reply_prefix) or any(c in response_topic for c in "+#"):
            log.warning("catch-up request refused: response topic outside the reply tree",
                        response_topic=response_topic, expected_prefix=self.reply_prefix)
            return "reply topic refused"
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None:
            out.CorrelationData = correlation
        chunks = 0
        replies = self.replies(payload, in_payload)
        while True:
            try:
                chunk = next(replies, None)
            except Exception as exc:  # answer rather than leave the requester waiting
                log.exception("catch-up request failed")
                chunk = _reply(0, [], final=True, last_seq=0,
                               current_epoch=self.current_epoch(),
                               error=f"internal error: {exc}", log_id=self.log_id,
                               correlation=in_payload)
                replies = iter(())
            if chunk is None:
                break
            # No timeout: a lost connection cancels this task (see the engine's reader).
            await client.publish(response_topic, chunk, qos=1, properties=out,
                                 timeout=math.inf)
            chunks += 1
        self.requests_served += 1
        log.debug("catch-up served", response_topic=response_topic, chunks=chunks)
        return "answered"
