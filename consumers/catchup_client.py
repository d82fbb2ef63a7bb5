"""Fetching a range of the log: from the engine's catch-up service, or from its journal.

Both sources answer a ``CatchupRequest`` with ``CatchupReply`` chunks, so the
runner treats them alike:

* ``MqttCatchup`` asks the engine over MQTT v5 request/response: the request goes
  to ``.../catchup/request`` with a ResponseTopic of the consumer's own and a
  CorrelationData; the chunks come back on that topic with the same correlation
  data. The runner's receive loop hands every message of the reply topic to
  ``deliver``; a chunk whose correlation data matches no open request (a late
  answer to a previous attempt or a previous process) is dropped.
* ``JournalCatchup`` reads the engine's journal file (JSON lines, one event per
  line, every epoch) when the consumer runs beside it (``--journal PATH``). It
  indexes the byte offset of every line once, incrementally, so a catch-up of a
  range reads only that range; a journal deleted or replaced is indexed anew. Its
  replies name the log id of the SessionStarted that opens the latest epoch.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Protocol

import aiomqtt
import msgspec
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulator import topics
from simulator.contract import (
    CatchupReply,
    CatchupRequest,
    Event,
    SessionStarted,
    decode_catchup_reply,
    decode_event,
    encode,
)
from simulator.errors import ContractError, LapcastError

__all__ = [
    "CatchupSource",
    "CatchupUnavailable",
    "JournalCatchup",
    "MqttCatchup",
    "correlation_of",
    "decode_reply",
    "reply_topic",
]

log = structlog.get_logger()


class CatchupUnavailable(LapcastError):
    """The range could not be fetched now (no answer in time, or a refusal): try later."""


class CatchupSource(Protocol):
    """Anything that answers a catch-up request with reply chunks, the last one final."""

    def fetch(self, request: CatchupRequest) -> AsyncIterator[CatchupReply]: ...


def reply_topic(session_id: str, consumer: str, client_id: str) -> str:
    """Where the engine sends this consumer's catch-up replies.

    Under ``catchup_reply_prefix``, then the consumer's name (so that the secure
    profile's ACL can give each consumer user its own replies), then the client id.
    """
    return f"{topics.catchup_reply_prefix(session_id)}/{consumer}/{client_id}"


# The contract's decoder, under the name this module has always exported.
decode_reply = decode_catchup_reply


class MqttCatchup:
    """The engine's catch-up service, over one connected client."""

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        session_id: str,
        response_topic: str,
        timeout_s: float = 5.0,
    ) -> None:
        self.client = client
        self.request_topic = topics.catchup_request(session_id)
        self.response_topic = response_topic
        # Silence allowed between two chunks of one answer before giving up on it.
        self.timeout_s = timeout_s
        self._open: dict[bytes, asyncio.Queue[CatchupReply]] = {}
        self._unanswered: asyncio.Timeout | None = None
        self._restarted = False
        self.stray = 0

    def deliver(self, reply: CatchupReply, correlation: bytes | None) -> bool:
        """Route one decoded reply chunk; False if no open request awaits it."""
        queue = self._open.get(correlation or b"")
        if queue is None:
            self.stray += 1
            return False
        queue.put_nowait(reply)
        return True

    async def fetch(self, request: CatchupRequest) -> AsyncIterator[CatchupReply]:
        correlation = uuid.uuid4().bytes
        queue: asyncio.Queue[CatchupReply] = asyncio.Queue()
        self._open[correlation] = queue
        try:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = self.response_topic
            properties.CorrelationData = correlation
            if getattr(self.client, "mqtt_v311", False):
                # No properties in 3.1.1: the request carries its reply topic itself.
                request = msgspec.structs.replace(request, reply_to=self.response_topic,
                                                  correlation=correlation.hex())
            await self.client.publish(
                self.request_topic, encode(request), qos=1, properties=properties
            )
            answered = False
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s) as timer:
                        # Until the first chunk, ``engine_started`` may cut the wait short.
                        self._unanswered = None if answered else timer
                        reply = await queue.get()
                        answered = True
                except TimeoutError:
                    if self._restarted:
                        self._restarted = False
                        raise CatchupUnavailable(
                            f"the engine started after the request to {self.request_topic} "
                            "was sent: asking again") from None
                    raise CatchupUnavailable(
                        f"no answer on {self.response_topic} within {self.timeout_s:g} s "
                        f"to {self.request_topic} (epoch {request.epoch} "
                        f"seq {request.from_seq}..{request.to_seq or 'end'})"
                    ) from None
                yield reply
                if reply.final or reply.error:
                    return
        finally:
            self._unanswered = None
            del self._open[correlation]

    def engine_started(self) -> None:
        """The engine has (re)appeared: a request it has not answered was probably sent
        before it subscribed, so stop waiting for that answer and ask again now."""
        if self._unanswered is not None:
            self._restarted = True
            self._unanswered.reschedule(asyncio.get_running_loop().time())


class _Position(msgspec.Struct):
    """The two fields the index needs; decoding only these keeps indexing fast."""

    seq: int
    epoch: int = 1
    session_id: str = ""


_position: Final = msgspec.json.Decoder(_Position)


class JournalCatchup:
    """Ranges of the log read straight from the engine's journal file."""

    def __init__(self, path: Path, *, session_id: str | None = None, chunk: int = 1000) -> None:
        self.path = path
        # The session the journal must belong to (a journal of another one is refused).
        self.session_id = session_id
        self.chunk = chunk
        # epoch -> byte offset of seq 1, 2, 3... (index = seq - 1)
        self._offsets: dict[int, list[int]] = {}
        self._indexed_to = 0
        self._line_no = 0
        self._file: tuple[int, int] | None = None  # (device, inode) indexed

    def _forget(self) -> None:
        self._offsets.clear()
        self._indexed_to = 0
        self._line_no = 0

    def _index(self) -> None:
        """Index the complete lines appended since the last call (all of them again if
        the file was deleted or replaced: a new journal)."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            self._forget()
            return  # the engine has not written anything yet
        with handle:
            stat = os.fstat(handle.fileno())
            if (stat.st_dev, stat.st_ino) != self._file or stat.st_size < self._indexed_to:
                self._forget()
                self._file = (stat.st_dev, stat.st_ino)
            handle.seek(self._indexed_to)
            offset = self._indexed_to
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # the engine is still writing this line
                self._line_no += 1
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    pos = _position.decode(line)
                except msgspec.DecodeError as exc:
                    log.warning("journal line skipped", path=str(self.path),
                                line=self._line_no, reason=str(exc))
                    continue
                if self.session_id is not None and pos.session_id != self.session_id:
                    raise LapcastError(
                        f"{self.path}:{self._line_no}: a journal of session "
                        f"{pos.session_id!r}, not {self.session_id!r} (wrong --journal?)"
                    )
                offsets = self._offsets.setdefault(pos.epoch, [])
                if pos.seq == len(offsets) + 1:
                    offsets.append(start)
                elif pos.seq > len(offsets) + 1:
                    log.warning("journal has a gap", path=str(self.path), line=self._line_no,
                                epoch=pos.epoch, expected=len(offsets) + 1, got=pos.seq)
                # else: a line repeated (an engine restarted on the same journal)
            self._indexed_to = offset

    def _log_id(self, epoch: int) -> str:
        """The log id on the SessionStarted that opens ``epoch`` ("" if none)."""
        offsets = self._offsets.get(epoch)
        if not offsets:
            return ""
        with self.path.open("rb") as handle:
            handle.seek(offsets[0])
            try:
                first = decode_event(handle.readline())
            except ContractError:
                return ""
        return first.log_id if isinstance(first, SessionStarted) else ""

    def _read(self, request: CatchupRequest) -> tuple[list[Event], int, int, str]:
        self._index()
        current_epoch = max(self._offsets, default=request.epoch)
        log_id = self._log_id(current_epoch)
        offsets = self._offsets.get(request.epoch, [])
        last_seq = len(offsets)
        to_seq = min(request.to_seq or last_seq, last_seq)
        events: list[Event] = []
        if request.from_seq <= to_seq:
            with self.path.open("rb") as handle:
                handle.seek(offsets[request.from_seq - 1])
                for number in range(request.from_seq, to_seq + 1):
                    line = handle.readline()
                    try:
                        events.append(decode_event(line))
                    except ContractError as exc:
                        raise CatchupUnavailable(
                            f"{self.path}: epoch {request.epoch} seq {number}: {exc}"
                        ) from exc
        return events, last_seq, current_epoch, log_id

    async def fetch(self, request: CatchupRequest) -> AsyncIterator[CatchupReply]:
        events, last_seq, current_epoch, log_id = await asyncio.to_thread(self._read, request)
        # Chunked like the engine's replies, so the runner interleaves live messages.
        for start in range(0, max(len(events), 1), self.chunk):
            part = events[start:start + self.chunk]
            yield CatchupReply(
                epoch=request.epoch,
                events=part,
                final=start + self.chunk >= len(events),
                last_seq=last_seq,
                current_epoch=current_epoch,
                log_id=log_id,
            )


def correlation_of(message: aiomqtt.Message, reply: CatchupReply | None = None) -> bytes | None:
    """The MQTT v5 CorrelationData of a message, else the one in the reply (3.1.1)."""
    props: Any = message.properties
    data = getattr(props, "CorrelationData", None) if props is not None else None
    if data is not None:
        return bytes(data)
    if reply is not None and reply.correlation:
        try:
            return bytes.fromhex(reply.correlation)
        except ValueError:
            return None
    return None
