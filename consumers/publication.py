"""What a live consumer publishes about its state: the whole view and the changed rows.

Pure: the runner decides when to publish (coalesced) and this module decides
what. The state document is retained on ``.../state/{projection}`` and stamped
with the ``(epoch, seq)`` it reflects, so a board that joins late sees the whole
state at once and knows how fresh it is; the changes (rows that differ from the
previous publication, ``None`` for a removed row) go to ``.../changes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from consumers.api import rows_of
from simulator.contract import StateChanges, StateDocument, encode

__all__ = ["Rendered", "StateRenderer"]


@dataclass(frozen=True, kw_only=True)
class Rendered:
    state: bytes
    # Rows changed since the previous rendering ({} when nothing changed).
    changes: dict[str, Any]
    changes_payload: bytes | None


class StateRenderer:
    """Renders one projection's publications and remembers the rows last published."""

    def __init__(self, *, projection: str, session_id: str) -> None:
        self.projection = projection
        self.session_id = session_id
        self._rows: dict[str, Any] = {}

    def render(
        self,
        *,
        epoch: int,
        seq: int,
        session_time_ms: int,
        published_at_ns: int,
        view: Any,
        log_id: str = "",
    ) -> Rendered:
        # A copy in plain builtins: the fold may go on mutating its own objects.
        plain = msgspec.to_builtins(view)
        state = encode(StateDocument(
            projection=self.projection, session_id=self.session_id, epoch=epoch, seq=seq,
            session_time_ms=session_time_ms,
            # Latest engine publish time among the events reflected: latency probes.
            published_at_ns=published_at_ns, log_id=log_id, state=plain))
        rows = rows_of(plain)
        changes: dict[str, Any] = {k: v for k, v in rows.items() if self._rows.get(k, _GONE) != v}
        changes.update({k: None for k in self._rows if k not in rows})
        self._rows = rows
        payload = encode(StateChanges(
            projection=self.projection, session_id=self.session_id, epoch=epoch, seq=seq,
            changes=changes)) if changes else None
        return Rendered(state=state, changes=changes, changes_payload=payload)


_GONE: Final = object()
