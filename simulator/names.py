"""Portable names: session ids and client ids that every broker accepts in a topic.

A name that becomes a topic level (a session id, a consumer's client id) is
*portable*: ASCII letters, digits, ``-`` and ``_`` only. Every broker accepts those;
NATS closes the connection on a topic with ``.`` or a space (it maps MQTT's ``/``
to its own ``.``), ``+`` and ``#`` are MQTT wildcards and ``/`` splits a level.
``validate_name`` refuses anything else before a connection is made;
``portable_name`` maps a file name to a portable one (each other character to ``-``).
"""

from __future__ import annotations

import re
from typing import Final

from simulator.errors import LapcastError

__all__ = [
    "MAX_NAME",
    "InvalidName",
    "portable_name",
    "validate_client_id",
    "validate_name",
    "validate_session_id",
]

# What every broker accepts in a topic level (and in a client id).
_PORTABLE: Final = re.compile(r"[A-Za-z0-9_-]+")
_NOT_PORTABLE: Final = re.compile(r"[^A-Za-z0-9_-]")
# MQTT 3.1.1 guarantees client ids up to 23 bytes only, but every broker lapcast runs on
# (Mosquitto, NATS) takes far longer ones; this bounds a topic level to something sane.
MAX_NAME: Final = 200


class InvalidName(LapcastError, ValueError):
    """A session id or client id with a character some broker refuses in a topic."""


def validate_name(kind: str, name: str) -> str:
    """``name`` if it is portable (letters, digits, ``-``, ``_``), else ``InvalidName``.

    ``kind`` names it in the message ("session id", "client id").
    """
    if _PORTABLE.fullmatch(name) and len(name) <= MAX_NAME:
        return name
    if not name:
        raise InvalidName(f"invalid {kind}: empty")
    if len(name) > MAX_NAME:
        raise InvalidName(f"invalid {kind} {name[:40]!r}...: longer than {MAX_NAME} characters")
    bad = "".join(dict.fromkeys(_NOT_PORTABLE.findall(name)))
    raise InvalidName(
        f"invalid {kind} {name!r}: {_describe(bad)} not allowed; use letters, digits, "
        f"- and _ only (every broker accepts these in a topic; NATS closes the connection "
        f"on . or a space), e.g. {portable_name(name)!r}"
    )


def validate_session_id(session_id: str) -> str:
    """A session id is one portable topic level (see ``validate_name``)."""
    return validate_name("session id", session_id)


def validate_client_id(client_id: str) -> str:
    """A client id names a topic level too (the catch-up reply topic)."""
    return validate_name("client id", client_id)


def portable_name(text: str) -> str:
    """``text`` with every character outside letters, digits, ``-``, ``_`` mapped to ``-``.

    ``wec-2024-bahrain-8h-race.analysis`` -> ``wec-2024-bahrain-8h-race-analysis``.
    """
    return _NOT_PORTABLE.sub("-", text)[:MAX_NAME] or "session"


def _describe(chars: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\x00": "NUL"}
    shown = [names.get(c, repr(c)) for c in chars]
    return ", ".join(shown) + (" is" if len(shown) == 1 else " are")
