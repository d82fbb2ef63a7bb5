"""What the web page is told: one snapshot on connect, then only what changed.

``WebHub`` sits between the broker and the browsers; it has no MQTT and no clock.
``offer(topic, payload)`` takes the session's messages into a ``BoardStore`` (the
terminal board's: same typed views, same "never backwards" rule by ``(epoch, seq)``)
and merges the lap-chart rows it hears into the whole chart, so a page gets every lap
even though the retained lap-chart state is only a window of recent ones.

``flush()`` (called a few times a second) compares what the store holds now with
what was last sent and returns one delta for every page: the projections' changed
rows (keyed as the consumers key them, ``consumers.api.rows_of``), the new lap-chart
cells, and the engine status, meta, consumer health and connection when they
changed. ``snapshot()`` is the state as of the last flush, so snapshot + the deltas
that follow it are always the same as the store. The page never sees an MQTT topic,
a broker address or a credential.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from consumers.api import rows_of
from consumers.projections.lap_chart import merge_rows
from lapcast.board.store import BoardSnapshot, BoardStore, board_topics, position
from simulator import topics
from simulator.contract import ConsumerHealth, ConsumerLost, EngineLost, EngineStatus, Rejection

__all__ = ["CHART", "WebHub"]

CHART: Final = "lap-chart"
_changes_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None


# What the page reads of the engine status and of a consumer's health: every one of these
# keys, null when the message has no such field (a last will, an unset ``reason``).
_STATUS_KEYS: Final = ("state", "session_time_ms", "end_ms", "speed", "lag_ms", "epoch",
                       "last_seq", "total_events", "rejected", "reason")
_HEALTH_KEYS: Final = ("state", "last_seq", "epoch", "lag_events", "lag_ms", "dead_letters")


def _page_status(status: EngineStatus | EngineLost | None) -> dict[str, Any] | None:
    if status is None:
        return None
    plain = msgspec.to_builtins(status)
    return {key: plain.get(key) for key in _STATUS_KEYS}


def _page_health(health: ConsumerHealth | ConsumerLost) -> dict[str, Any]:
    plain = msgspec.to_builtins(health)
    page = {key: plain.get(key) for key in _HEALTH_KEYS}
    page["dead_letters"] = page["dead_letters"] or 0
    return page


class _Sent:
    """One projection as last sent: its stamp, top-level fields and keyed rows."""

    __slots__ = ("fields", "rows", "shape", "stamp")

    def __init__(self, stamp: tuple[int, int], shape: str, fields: dict[str, Any],
                 rows: dict[str, Any]) -> None:
        self.stamp = stamp
        self.shape = shape
        self.fields = fields
        self.rows = rows


def _split(state: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A plain view as (its shape, fields other than the rows, keyed rows).

    Shapes: ``rows`` (an object with a ``rows`` list keyed by car), ``map`` (an object
    keyed by name: each key a row), ``value`` (anything else, whole).
    """
    if isinstance(state, dict) and isinstance(state.get("rows"), list):
        rows = rows_of(state)
        if "rows" not in rows:
            return "rows", {k: v for k, v in state.items() if k != "rows"}, rows
    if isinstance(state, dict):
        return "map", {}, rows_of(state)
    return "value", {"value": state}, {}


class WebHub:
    """The session as the web pages see it."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.store = BoardStore(session_id, extra=(CHART,))
        self._changes_topic = topics.state_changes(session_id, CHART)
        # The whole lap chart: car -> lap -> [lap, pos, class pos, gap, interval].
        self.laps: dict[str, dict[int, list[Any]]] = {}
        self._laps_epoch = 0
        self._new_laps: dict[str, dict[int, list[Any]]] = {}
        self._laps_reset = False
        self._rejected: list[dict[str, Any]] = []
        self._seen_version = -1
        self._sent: dict[str, _Sent] = {}
        self._sent_other: dict[str, Any] = {}
        self._sent_laps: dict[str, dict[int, list[Any]]] = {}

    # --- in -----------------------------------------------------------------------

    def topics(self) -> list[str]:
        """The topic filters to subscribe to."""
        return [*board_topics(self.session_id, extra=(CHART,)), self._changes_topic]

    def offer(self, topic: str, payload: bytes) -> None:
        if topic == self._changes_topic:
            self._take_changes(payload)
            return
        before = self.store.snapshot()
        if not self.store.offer(topic, payload):
            return
        after = self.store.snapshot()
        chart = after.states.get(CHART)
        if chart is not None and chart is not before.states.get(CHART):
            self._merge(chart.epoch, [_plain(r) for r in chart.state.rows]
                        if chart.state is not None else [])
        status = after.status
        if (isinstance(status, EngineStatus) and status is not before.status
                and isinstance(status.rejected, Rejection)):
            self._rejected.append(_plain(status.rejected))

    def _take_changes(self, payload: bytes) -> None:
        try:
            doc = _changes_decoder.decode(payload)
            epoch = int(doc.get("epoch", 0))
            changes = doc.get("changes") or {}
            rows = [row for row in changes.values() if isinstance(row, dict)]
            self._merge(epoch, rows)
        except (msgspec.DecodeError, TypeError, ValueError, KeyError, AttributeError):
            return  # a change we cannot read: the next retained state carries the rows

    def _merge(self, epoch: int, rows: list[dict[str, Any]]) -> None:
        if epoch < self._laps_epoch:
            return
        if epoch > self._laps_epoch:  # a new epoch (a seek backwards): a new chart
            self._laps_epoch = epoch
            self.laps.clear()
            self._new_laps.clear()
            self._laps_reset = True
        fresh: dict[str, dict[int, list[Any]]] = {}
        merge_rows(fresh, rows)
        for car, cells in fresh.items():
            known = self.laps.setdefault(car, {})
            for lap, cell in cells.items():
                if known.get(lap) != cell:
                    known[lap] = cell
                    self._new_laps.setdefault(car, {})[lap] = cell

    # --- out ----------------------------------------------------------------------

    def _others(self, snap: BoardSnapshot) -> dict[str, Any]:
        return {
            "meta": _plain(snap.meta),
            "status": _page_status(snap.status),
            "consumers": {name: _page_health(h) for name, h in snap.consumers.items()},
            "connection": snap.connection,
            "problems": list(snap.problems),
        }

    def flush(self) -> dict[str, Any] | None:
        """What changed since the last flush, as one delta; None when nothing did."""
        snap = self.store.snapshot()
        if (self.store.version == self._seen_version and not self._new_laps
                and not self._rejected and not self._laps_reset):
            return None
        self._seen_version = self.store.version
        delta: dict[str, Any] = {}
        others = self._others(snap)
        changed = {k: v for k, v in others.items() if self._sent_other.get(k, _GONE) != v}
        if changed:
            delta["set"] = changed
            self._sent_other.update(changed)
        states: dict[str, Any] = {}
        for name, stamped in snap.states.items():
            if name == CHART:
                continue
            sent = self._sent.get(name)
            if sent is not None and sent.stamp == position(stamped):
                continue
            shape, fields, rows = _split(_plain(stamped.state))
            entry: dict[str, Any] = {"epoch": stamped.epoch, "seq": stamped.seq,
                                     "session_time_ms": stamped.session_time_ms,
                                     "shape": shape}
            if sent is None or sent.shape != shape:
                entry.update(fields=fields, rows=rows, replace=True)
            else:
                entry["fields"] = {k: v for k, v in fields.items()
                                   if sent.fields.get(k, _GONE) != v}
                diff = {k: v for k, v in rows.items() if sent.rows.get(k, _GONE) != v}
                diff.update({k: None for k in sent.rows if k not in rows})
                entry["rows"] = diff
            states[name] = entry
            self._sent[name] = _Sent(position(stamped), shape, fields, rows)
        for name in [n for n in self._sent if n not in snap.states]:
            del self._sent[name]
            states[name] = {"cleared": True}
        if states:
            delta["states"] = states
        if self._laps_reset:
            delta["laps_reset"] = True
            self._sent_laps = {}
            self._laps_reset = False
        if self._new_laps:
            delta["laps"] = {car: sorted(cells.values(), key=lambda c: c[0])
                             for car, cells in self._new_laps.items()}
            for car, cells in self._new_laps.items():
                self._sent_laps.setdefault(car, {}).update(cells)
            self._new_laps = {}
        if self._rejected:
            delta["rejected"] = self._rejected[-1]
            self._rejected = []
        return delta or None

    def snapshot(self) -> dict[str, Any]:
        """Everything as of the last flush: what a page starts from."""
        return {
            "session_id": self.session_id,
            **self._sent_other,
            "states": {
                name: {"epoch": sent.stamp[0], "seq": sent.stamp[1], "shape": sent.shape,
                       "fields": sent.fields, "rows": sent.rows, "replace": True}
                for name, sent in self._sent.items()
            },
            "laps": {car: sorted(cells.values(), key=lambda c: c[0])
                     for car, cells in self._sent_laps.items()},
        }


_GONE: Final = object()
