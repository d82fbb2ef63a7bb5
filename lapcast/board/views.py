"""What the board reads, with the contract's types and decoders, by topic.

The board never folds events: it decodes what the consumers and the engine publish
(retained) and shows it. Every message is read with its decoder in
``simulator.contract`` (``decode_meta``, ``decode_engine_status``,
``decode_consumer_health``, ``decode_state``) and every projection state with the
projection's own view type (``consumers.projections.*.VIEW``). Nothing here re-types a
message: a payload the contract refuses is a problem the board names, not a state it
half shows.

The lap-chart projection publishes an untyped view; ``LapChartView`` types it as
``consumers.projections.lap_chart.view`` builds it (it is the one type defined here).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from consumers.projections import championship, class_poles, running_order
from consumers.projections.championship import ChampionshipView, Standing
from consumers.projections.class_poles import ClassPole, PoleChange, PoleGap
from consumers.projections.running_order import RunningOrderRow, RunningOrderView
from simulator import contract
from simulator.contract import (
    ConsumerHealth,
    ConsumerLost,
    EngineLost,
    EngineStatus,
    Rejection,
    StateDocument,
)

__all__ = [
    "STATE_VIEWS",
    "ChampionshipView",
    "ClassPole",
    "ConsumerHealth",
    "ConsumerLost",
    "EngineLost",
    "EngineStatus",
    "LapChartRow",
    "LapChartView",
    "PoleChange",
    "PoleGap",
    "Rejection",
    "RunningOrderRow",
    "RunningOrderView",
    "Standing",
    "StateDocument",
    "decode_projection_state",
]


class LapChartRow(msgspec.Struct, frozen=True, kw_only=True):
    """One car's recent laps: ``[lap, position, class position, gap ms, interval ms]``."""

    car: str
    car_class: str = msgspec.field(name="class")
    laps: list[list[int | None]]


class LapChartView(msgspec.Struct, frozen=True, kw_only=True):
    """The lap-chart projection's window of recent laps."""

    session_kind: str
    window: int
    columns: list[str]
    rows: list[LapChartRow]


# The view type of each projection state the board can read, by projection name.
STATE_VIEWS: Final[dict[str, Any]] = {
    running_order.CONSUMER.name: running_order.VIEW,
    class_poles.CONSUMER.name: class_poles.VIEW,
    championship.CONSUMER.name: championship.VIEW,
    "lap-chart": LapChartView,
}


def decode_projection_state(projection: str, payload: bytes) -> StateDocument[Any]:
    """The state document of ``projection``, its view typed (``ContractError`` if not)."""
    return contract.decode_state(payload, STATE_VIEWS[projection])
