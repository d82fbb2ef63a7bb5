"""What the board reads, typed: the retained projection states, the engine status, meta.

The board never folds events: it decodes what the consumers and the engine publish
(retained) and shows it. Every field has a default, so a projection that adds a
field, or leaves one out, still decodes; unknown fields are ignored (the contract
only ever grows).
"""

from __future__ import annotations

from typing import Any

import msgspec

from simulator import contract
from simulator.contract import SessionStarted
from simulator.errors import ContractError

__all__ = [
    "ChampionshipView",
    "ClassPole",
    "ConsumerHealth",
    "EngineStatus",
    "LapChartRow",
    "LapChartView",
    "PoleChange",
    "PoleGap",
    "Rejected",
    "RunningOrderRow",
    "RunningOrderView",
    "Stamped",
    "Standing",
    "decode_championship",
    "decode_class_poles",
    "decode_consumer_health",
    "decode_lap_chart",
    "decode_meta",
    "decode_running_order",
    "decode_status",
]

class RunningOrderRow(msgspec.Struct, frozen=True, kw_only=True):
    car: str
    position: int | None = None
    class_position: int | None = None
    car_class: str = msgspec.field(default="", name="class")
    team: str | None = None
    driver: str | None = None
    status: str = ""
    laps: int = 0
    elapsed_ms: int | None = None
    gap_ms: int | None = None
    gap_laps: int | None = None
    interval_ms: int | None = None
    interval_laps: int | None = None
    class_gap_ms: int | None = None
    class_gap_laps: int | None = None
    class_interval_ms: int | None = None
    class_interval_laps: int | None = None
    best_lap_ms: int | None = None
    best_lap: int | None = None
    last_lap_ms: int | None = None
    last_lap: int | None = None
    last_lap_marker: str = ""
    sector_bests_ms: list[int | None] = []
    sector_markers: list[str] = []
    # The sectors of the lap under way or just completed, coloured like the last lap.
    last_sectors_ms: list[int | None] = []
    last_sector_markers: list[str] = []
    pit_stops: int = 0
    in_pit: bool = False
    penalty_ms: int = 0


class RunningOrderView(msgspec.Struct, frozen=True, kw_only=True):
    session_kind: str = ""
    session_time_ms: int | None = None
    flag: str | None = None
    chequered: bool = False
    finished: bool = False
    classes: list[str] = []
    rows: list[RunningOrderRow] = []


class PoleGap(msgspec.Struct, frozen=True, kw_only=True):
    car: str
    best_lap_ms: int | None = None
    lap: int | None = None
    driver: str | None = None
    gap_ms: int | None = None


class PoleChange(msgspec.Struct, frozen=True, kw_only=True):
    """One moment the pole changed hands (or was taken away by a correction)."""

    car: str | None = None
    driver: str | None = None
    lap: int | None = None
    lap_time_ms: int | None = None
    session_time_ms: int | None = None
    seq: int | None = None
    cause: str = ""


class ClassPole(msgspec.Struct, frozen=True, kw_only=True):
    car: str | None = None
    driver: str | None = None
    lap: int | None = None
    lap_time_ms: int | None = None
    cars: list[PoleGap] = []
    history: list[PoleChange] = []


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    car: str
    position: int | None = None
    name: str = ""
    points_before: int | None = None
    pole_points: int = 0
    race_points: int = 0
    points: int | None = None
    places: list[int] = []


class ChampionshipView(msgspec.Struct, frozen=True, kw_only=True):
    name: str = ""
    car_class: str = msgspec.field(default="", name="class")
    pole_car: str | None = None
    standings: list[Standing] = []
    contenders: list[Any] = []
    clinch: list[str] = []
    counterfactuals: list[str] = []


class LapChartRow(msgspec.Struct, frozen=True, kw_only=True):
    """One car's recent laps: ``[lap, position, class position, gap ms, interval ms]``."""

    car: str
    car_class: str = msgspec.field(default="", name="class")
    laps: list[list[int | None]] = []


class LapChartView(msgspec.Struct, frozen=True, kw_only=True):
    session_kind: str = ""
    window: int = 0
    columns: list[str] = []
    rows: list[LapChartRow] = []


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """A control command the engine refused, and why."""

    command: str | None = None
    reason: str = ""


class EngineStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The replay engine's retained status (its state, clock, speed and lag)."""

    state: str = ""
    session_time_ms: int | None = None
    # The session's last moment (the clock stops there).
    end_ms: int | None = None
    # A factor, or "max".
    speed: float | str | None = None
    lag_ms: float | None = None
    epoch: int | None = None
    last_seq: int | None = None
    total_events: int | None = None
    # Set on the one status published in answer to a refused control command.
    rejected: Rejected | None = None
    # Why the engine stopped publishing (state ``error``: its journal failed) or was lost.
    reason: str | None = None


class ConsumerHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer's retained health report."""

    state: str = ""
    last_seq: int | None = None
    epoch: int | None = None
    lag_events: int | None = None
    lag_ms: float | None = None
    dead_letters: int = 0


class Stamped(msgspec.Struct, frozen=True, kw_only=True):
    """A projection state as published: the view and the ``(epoch, seq)`` it reflects."""

    projection: str = ""
    session_id: str = ""
    epoch: int = 0
    seq: int = 0
    session_time_ms: int | None = None
    published_at_ns: int | None = None
    state: Any = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.epoch, self.seq)


def _decoder(view_type: Any) -> msgspec.json.Decoder[Any]:
    envelope = msgspec.defstruct(
        "StampedState", [("state", view_type, None)], bases=(Stamped,), frozen=True,
        kw_only=True,
    )
    return msgspec.json.Decoder(envelope)


_running_order = _decoder(RunningOrderView | None)
_class_poles = _decoder(dict[str, ClassPole] | None)
_championship = _decoder(ChampionshipView | None)
_lap_chart = _decoder(LapChartView | None)
_status = msgspec.json.Decoder(EngineStatus)
_health = msgspec.json.Decoder(ConsumerHealth)


def _decode(decoder: msgspec.json.Decoder[Any], payload: bytes, what: str) -> Any:
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ContractError(f"{what}: {exc}") from exc


def decode_running_order(payload: bytes) -> Stamped:
    return _decode(_running_order, payload, "running-order state")  # type: ignore[no-any-return]


def decode_class_poles(payload: bytes) -> Stamped:
    return _decode(_class_poles, payload, "class-poles state")  # type: ignore[no-any-return]


def decode_championship(payload: bytes) -> Stamped:
    return _decode(_championship, payload, "championship state")  # type: ignore[no-any-return]


def decode_lap_chart(payload: bytes) -> Stamped:
    return _decode(_lap_chart, payload, "lap-chart state")  # type: ignore[no-any-return]


def decode_status(payload: bytes) -> EngineStatus:
    return _decode(_status, payload, "engine status")  # type: ignore[no-any-return]


def decode_consumer_health(payload: bytes) -> ConsumerHealth:
    return _decode(_health, payload, "consumer status")  # type: ignore[no-any-return]


def decode_meta(payload: bytes) -> SessionStarted:
    return contract.decode_meta(payload)
