"""The newest of everything the board has heard, keyed by topic; no MQTT, no clock.

``BoardStore.offer(topic, payload)`` takes any message of the session's tree and
keeps it when it is newer than what it holds: a projection state is kept only when
its ``(epoch, seq)`` is beyond the one shown, so a late, duplicated or reordered
retained message never takes the board backwards. ``snapshot()`` is what the
renderer draws; ``version`` changes whenever the snapshot would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from lapcast.board.views import decode_projection_state
from simulator import topics
from simulator.contract import (
    ConsumerHealth,
    ConsumerLost,
    EngineLost,
    EngineStatus,
    SessionStarted,
    StateDocument,
    decode_consumer_health,
    decode_engine_status,
    decode_meta,
)
from simulator.errors import LapcastError

__all__ = ["OPTIONAL_STATES", "BoardSnapshot", "BoardStore", "board_topics", "position"]

# The states every board shows (and waits for, to call a replay finished).
_STATES: tuple[str, ...] = ("running-order", "class-poles", "championship")
# States a board may also read when asked (``BoardStore(extra=...)``): the web page's charts.
OPTIONAL_STATES: tuple[str, ...] = ("lap-chart",)

# How many decode problems the board keeps to show (the newest ones).
_MAX_PROBLEMS = 3


def board_topics(session: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Every topic filter the board subscribes to for ``session`` (plus ``extra`` states)."""
    return [
        topics.meta(session),
        topics.status(session),
        *(topics.state(session, name) for name in (*_STATES, *extra)),
        topics.consumer_status(session, "+"),
    ]


@dataclass(frozen=True, kw_only=True)
class BoardSnapshot:
    """Everything one frame of the board shows."""

    session_id: str
    meta: SessionStarted | None = None
    # The engine's status, or its last will (``EngineLost``).
    status: EngineStatus | EngineLost | None = None
    states: dict[str, StateDocument[Any]] = field(default_factory=dict)
    # Each consumer's health, or its last will (``ConsumerLost``).
    consumers: dict[str, ConsumerHealth | ConsumerLost] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # Empty while connected; otherwise what is wrong with the broker connection.
    connection: str = ""

    def view(self, projection: str) -> Any:
        """The projection's view, or None when it has not been heard yet."""
        stamped = self.states.get(projection)
        return None if stamped is None else stamped.state

    @property
    def finished(self) -> bool:
        """The engine has finished and every state shown reflects its last event."""
        status = self.status
        if not isinstance(status, EngineStatus) or status.state != "finished":
            return False
        final = (status.epoch or 1, status.last_seq)
        return all(
            name in self.states and position(self.states[name]) >= final
            for name in _STATES
        )


def position(document: StateDocument[Any]) -> tuple[int, int]:
    """The ``(epoch, seq)`` a state document reflects."""
    return (document.epoch, document.seq)


class BoardStore:
    """Keeps the newest message of every topic of one session."""

    def __init__(self, session_id: str, *, extra: tuple[str, ...] = ()) -> None:
        self.session_id = session_id
        unknown = [name for name in extra if name not in OPTIONAL_STATES]
        if unknown:
            raise LapcastError(f"no board decoder for the states {unknown}")
        self._states = frozenset((*_STATES, *extra))
        self._snapshot = BoardSnapshot(session_id=session_id)
        self._prefix = topics.session_root(session_id) + "/"
        self.version = 0

    def snapshot(self) -> BoardSnapshot:
        return self._snapshot

    def set_connection(self, problem: str) -> None:
        """Record the broker connection's state ("" when connected)."""
        if problem != self._snapshot.connection:
            self._snapshot = replace(self._snapshot, connection=problem)
            self.version += 1

    def offer(self, topic: str, payload: bytes) -> bool:
        """Take one message; True when the board changed.

        A payload that does not decode is recorded as a problem (shown on the board)
        and changes nothing else: the board keeps what it showed.
        """
        if not topic.startswith(self._prefix):
            return False
        rest = topic[len(self._prefix):]
        try:
            changed = self._take(rest, payload)
        except LapcastError as exc:
            problems = (*self._snapshot.problems, f"{topic}: {exc}")[-_MAX_PROBLEMS:]
            self._snapshot = replace(self._snapshot, problems=problems)
            changed = True
        if changed:
            self.version += 1
        return changed

    def _take(self, rest: str, payload: bytes) -> bool:
        snap = self._snapshot
        if rest == "meta":
            meta = decode_meta(payload) if payload else None
            self._snapshot = replace(snap, meta=meta)
            return True
        if rest == "status":
            status = decode_engine_status(payload) if payload else None
            if status == snap.status:
                return False
            self._snapshot = replace(snap, status=status)
            return True
        if rest.startswith("state/") and rest[len("state/"):] in self._states:
            name = rest[len("state/"):]
            if not payload:  # a cleared retained state
                states = {k: v for k, v in snap.states.items() if k != name}
            else:
                document = decode_projection_state(name, payload)
                shown = snap.states.get(name)
                if shown is not None and position(document) <= position(shown):
                    return False  # stale or duplicate: never go backwards
                states = {**snap.states, name: document}
            self._snapshot = replace(snap, states=states)
            return True
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "consumers" and parts[2] == "status":
            consumers = dict(snap.consumers)
            if payload:
                consumers[parts[1]] = decode_consumer_health(payload)
            else:
                consumers.pop(parts[1], None)
            self._snapshot = replace(snap, consumers=consumers)
            return True
        return False
