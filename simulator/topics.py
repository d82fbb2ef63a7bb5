"""The MQTT topic tree, versioned. Every topic lapcast uses is built here.

``lapcast/v1/sessions/{session}/...``; sessions are independent trees, so a
clustered broker can spread them and a consumer can be partitioned by session.

A session id is one portable topic level (``simulator.names``: letters, digits, ``-``
and ``_``); ``validate_session_id`` is re-exported here.
"""

from __future__ import annotations

from typing import Final

from simulator.names import validate_session_id

__all__ = [
    "PREFIX",
    "catchup_reply_prefix",
    "catchup_request",
    "consumer_status",
    "control",
    "dead_letter",
    "events",
    "meta",
    "session_root",
    "state",
    "state_changes",
    "status",
    "validate_session_id",
]

PREFIX: Final = "lapcast/v1/sessions"


def session_root(session: str) -> str:
    """The root of one session's tree (a subscription prefix, not a topic of its own)."""
    return f"{PREFIX}/{session}"


def events(session: str) -> str:
    """Every event of the log, in seq order (an event or a Batch), QoS 1, never retained."""
    return f"{PREFIX}/{session}/events"


def meta(session: str) -> str:
    """The current epoch's SessionStarted: the entry list, classes and schema version (retained)."""
    return f"{PREFIX}/{session}/meta"


def status(session: str) -> str:
    """The replay engine's state, on every change and every 0.5 s (retained; last will: lost)."""
    return f"{PREFIX}/{session}/status"


def control(session: str) -> str:
    """Commands to the running replay (pause, resume, speed, seek); answered on status."""
    return f"{PREFIX}/{session}/control"


def catchup_request(session: str) -> str:
    """Ask the engine for a range of the log (MQTT v5 request/response)."""
    return f"{PREFIX}/{session}/catchup/request"


def catchup_reply_prefix(session: str) -> str:
    """Where catch-up replies go: ``.../catchup/reply/{name}/{client_id}`` below it, the
    requester's MQTT v5 ResponseTopic (the engine answers nowhere else)."""
    return f"{PREFIX}/{session}/catchup/reply"


def state(session: str, projection: str) -> str:
    """A consumer's whole view, stamped with the (epoch, seq) it reflects (retained)."""
    return f"{PREFIX}/{session}/state/{projection}"


def state_changes(session: str, projection: str) -> str:
    """The rows of a consumer's view that changed since its previous state."""
    return f"{PREFIX}/{session}/state/{projection}/changes"


def dead_letter(session: str) -> str:
    """What a consumer refused, with the reason and the original bytes."""
    return f"{PREFIX}/{session}/dead-letter"


def consumer_status(session: str, name: str) -> str:
    """A consumer's health: position, lag, counters (retained; last will: lost)."""
    return f"{PREFIX}/{session}/consumers/{name}/status"
