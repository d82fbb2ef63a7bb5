"""A log's identity: one id for every run of the same log, another for any other log.

The engine computes it once, at start-up, from the events it will publish: a
BLAKE2b-128 digest (32 hex digits) of their JSON, each with the epoch set to 1 and
without the log id itself. So every run of the same source with the same options
(session id, ``--granularity``, penalties, the synth spec) has the same id, and the
epochs of one run (backward seeks) are the same log; a different source, or the same
one with other options, is another log. It is carried as ``log_id`` in meta
(``SessionStarted``), the engine's status, catch-up replies, state documents, the
consumers' health and their checkpoints: a consumer holding the state of another
log drops it and folds the current one from the start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import msgspec

from simulator.contract import Event, SessionStarted, encode

__all__ = ["LOG_ID_LENGTH", "LogDigest", "as_published", "log_id"]

# Hex digits of an id (BLAKE2b with a 16-byte digest).
LOG_ID_LENGTH: Final = 32


class LogDigest:
    """The log id, fed one event at a time (the engine's start-up scan)."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=LOG_ID_LENGTH // 2)

    def add(self, event: Event) -> None:
        if event.epoch != 1:
            event = msgspec.structs.replace(event, epoch=1)
        if isinstance(event, SessionStarted) and event.log_id:
            event = msgspec.structs.replace(event, log_id="")
        self._hash.update(encode(event))
        self._hash.update(b"\n")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def log_id(events: Iterable[Event]) -> str:
    """The id of the log made of ``events`` (in seq order, one epoch)."""
    digest = LogDigest()
    for event in events:
        digest.add(event)
    return digest.hexdigest()


def as_published(events: Iterable[Event]) -> list[Event]:
    """``events`` as the engine publishes and journals them: its ``SessionStarted``
    stamped with the log id (for comparing a journal with its source)."""
    events = list(events)
    lid = log_id(events)
    return [msgspec.structs.replace(e, log_id=lid) if isinstance(e, SessionStarted) else e
            for e in events]
