"""The numbers behind a synthetic field: each class's pace and habits, and the yellows.

The HYPERCAR and LMGT3 figures are fitted from the real race (the 2024 8 Hours of
Bahrain, ``../shared/data/wec-2024-bahrain-8h-race.analysis.csv``) by
``bench/fit_race.py``; rerun it to refit, and paste its output here. The model, per
car and lap (green-flag time, before any yellow slows it)::

    lap_ms = base + car_offset + driver_offset + degradation * lap_of_stint
             + evolution * hour_of_race + N(0, lap_sd) (+ a slow lap now and then)

with ``car_offset ~ N(0, car_sd)`` and ``driver_offset ~ N(0, driver_sd)`` drawn
once. Figures not fitted (the data has no qualifying, no LMP2 or GTE) are marked
ESTIMATE with the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "CLASSES",
    "DELETED_LAP_RATE",
    "FCY",
    "PENALTIES_MS",
    "PENALTY_PER_CAR_HOUR",
    "QUALIFYING",
    "SAFETY_CAR",
    "ClassModel",
    "QualifyingModel",
    "YellowModel",
]


@dataclass(frozen=True, kw_only=True)
class ClassModel:
    """One class's pace and habits, in integer milliseconds where it is a time."""

    name: str
    base_ms: int  # the median car's green lap on fresh tyres at the start
    car_sd_ms: int  # spread of cars' pace
    driver_sd_ms: int  # spread of drivers' pace within a car
    lap_sd_ms: int  # lap-to-lap noise of one driver
    slow_lap_rate: float  # share of laps with a moment (traffic, a lock-up)
    slow_lap_mean_ms: int  # mean excess of such a lap beyond 4 lap_sd (exponential)
    degradation_ms_per_lap: float  # tyre wear net of fuel burn, per lap of a stint
    evolution_ms_per_hour: float  # the track getting faster (Bahrain runs into the night)
    fuel_stint_laps_mean: float  # a stint run to the fuel limit
    fuel_stint_laps_sd: float
    short_stint_rate: float  # stints cut short (a stop under yellow, a problem)
    drivers: int
    # PIT_TIME of an out-lap (pit lane and stationary): a full service around the
    # median; quicker stops (fuel only, drive-through) from the minimum up; repairs.
    pit_ms_median: int
    pit_ms_sd: int
    pit_short_rate: float
    pit_short_min_ms: int
    pit_long_rate: float
    pit_long_mean_ms: int  # mean excess of a repair over a long full service
    in_lap_extra_ms: int  # an in-lap over the car's pace (ends in the pit lane)
    out_lap_extra_ms: int  # an out-lap over pace + pit time (negative: lane shortcut)
    driver_change_rate: float  # share of stops with a driver change
    lap1_first_ms: int  # lap 1 of the class's first car (start line before the finish)
    lap1_spread_ms: int  # lap 1 of the class's last car minus the first's
    sector_shares: tuple[float, float, float]  # mean share of the lap in S1, S2, S3
    sector_share_sd: float
    retire_per_hour: float  # retirement hazard per car


def _fitted(name: str, values: dict[str, object]) -> ClassModel:
    values = {k: v for k, v in values.items() if k != "cars"}
    shares = values.pop("sector_shares")
    return ClassModel(name=name, sector_shares=tuple(shares), **values)  # type: ignore[arg-type]


# fitted by bench/fit_race.py from wec-2024-bahrain-8h-race.analysis.csv
# (7486 laps, 36 cars, 8.06 h; deleted laps 2, time penalties 1)
HYPERCAR: Final = _fitted("HYPERCAR", {'cars': 18, 'base_ms': 114162, 'car_sd_ms': 202, 'driver_sd_ms': 366, 'lap_sd_ms': 745, 'slow_lap_rate': 0.0054, 'slow_lap_mean_ms': 1633, 'degradation_ms_per_lap': 58.7, 'evolution_ms_per_hour': -109.8, 'fuel_stint_laps_mean': 31.4, 'fuel_stint_laps_sd': 1.6, 'short_stint_rate': 0.397, 'drivers': 3, 'pit_ms_median': 79247, 'pit_ms_sd': 7111, 'pit_short_rate': 0.158, 'pit_short_min_ms': 26650, 'pit_long_rate': 0.007, 'pit_long_mean_ms': 1452940, 'in_lap_extra_ms': 5304, 'out_lap_extra_ms': 802, 'driver_change_rate': 0.39, 'lap1_first_ms': 109935, 'lap1_spread_ms': 8014, 'sector_shares': [0.3152, 0.3715, 0.3133], 'sector_share_sd': 0.0124, 'retire_per_hour': 0.0312})  # noqa: E501
LMGT3: Final = _fitted("LMGT3", {'cars': 18, 'base_ms': 126159, 'car_sd_ms': 543, 'driver_sd_ms': 780, 'lap_sd_ms': 1001, 'slow_lap_rate': 0.0119, 'slow_lap_mean_ms': 1308, 'degradation_ms_per_lap': 106.9, 'evolution_ms_per_hour': -219.7, 'fuel_stint_laps_mean': 25.0, 'fuel_stint_laps_sd': 1.5, 'short_stint_rate': 0.25, 'drivers': 3, 'pit_ms_median': 80737, 'pit_ms_sd': 8202, 'pit_short_rate': 0.116, 'pit_short_min_ms': 26660, 'pit_long_rate': 0.014, 'pit_long_mean_ms': 1926981, 'in_lap_extra_ms': 6573, 'out_lap_extra_ms': -2505, 'driver_change_rate': 0.51, 'lap1_first_ms': 124563, 'lap1_spread_ms': 10315, 'sector_shares': [0.3171, 0.3651, 0.3177], 'sector_share_sd': 0.0125, 'retire_per_hour': 0.0312})  # noqa: E501


def _scaled(model: ClassModel, name: str, factor: float) -> ClassModel:
    """A class like ``model`` but ``factor`` times slower."""
    return replace(
        model, name=name, base_ms=round(model.base_ms * factor),
        lap1_first_ms=round(model.lap1_first_ms * factor),
    )


# ESTIMATE: LMP2 and GTE Am ran at Bahrain in 2023, not in the 2024 race. Their pace is
# the fitted class nearest in kind scaled by the 2023 Bahrain qualifying ratios in
# ../shared/seed/FACTS.md (LMP2 pole 1:52.290 and GTE Am pole 1:58.692 against the
# Hypercar pole 1:46.564); everything else is that class's.
LMP2: Final = _scaled(HYPERCAR, "LMP2", 112_290 / 106_564)
LMGTE: Final = _scaled(LMGT3, "LMGTE", (118_692 / 106_564) * HYPERCAR.base_ms / LMGT3.base_ms)

# The classes a field may have, fastest first (the grid's order of classes).
CLASSES: Final[dict[str, ClassModel]] = {
    m.name: m for m in sorted((HYPERCAR, LMP2, LMGTE, LMGT3), key=lambda m: m.base_ms)
}


@dataclass(frozen=True, kw_only=True)
class YellowModel:
    """A kind of neutralisation: how often, how long, how much slower every car laps."""

    flag: str  # a contract Flag value
    per_hour: float
    duration_ms_mean: int
    duration_ms_min: int
    duration_ms_max: int
    slow_factor: float  # lap time multiplier while it is out


# Fitted by bench/fit_race.py. The race had 3 full-course yellows and 2 safety cars;
# before each safety car the field ran ~10 minutes neutralised while the line still
# showed green, so the fit counts that time as part of the safety-car period.
FCY: Final = YellowModel(flag="FCY", per_hour=0.372, duration_ms_mean=200603,
                         duration_ms_min=119849, duration_ms_max=241449, slow_factor=1.924)
SAFETY_CAR: Final = YellowModel(flag="SAFETY_CAR", per_hour=0.248, duration_ms_mean=1351759,
                                duration_ms_min=1325958, duration_ms_max=1377560,
                                slow_factor=1.564)

# Corrections, fitted: 2 laps deleted in 7,486 (#54 lap 175, #82 lap 197) and 1 time
# penalty among 36 cars over 8.06 hours.
DELETED_LAP_RATE: Final = 0.000267
PENALTY_PER_CAR_HOUR: Final = 1 / 36 / 8.06
# ESTIMATE: the one real penalty (4:55 for the tyre allocation) is no distribution;
# these are the usual sizes of WEC time penalties.
PENALTIES_MS: Final = (5_000, 10_000, 30_000, 60_000)
# A correction is decided this long after the lap it concerns (ESTIMATE: stewards take
# one to five minutes).
DECISION_DELAY_MS: Final = (60_000, 300_000)


@dataclass(frozen=True, kw_only=True)
class QualifyingModel:
    """ESTIMATE throughout: the data is a race. Qualifying is runs of an out-lap,
    flying laps and an in-lap, with the car in the garage between runs."""

    pace_factor: float = 0.965  # flying laps against the race base (fresh tyres, no fuel)
    lap_sd_factor: float = 0.5  # drivers are more consistent on a flying lap
    tyre_fade_ms: int = 250  # each further flying lap of a run is slower by this much
    flying_laps: tuple[int, int] = (2, 3)
    out_lap_factor: float = 1.25
    in_lap_factor: float = 1.2
    garage_ms: tuple[int, int] = (180_000, 420_000)
    first_exit_share: float = 0.35  # first run starts within this share of the session
    minutes_per_lap_budget: float = 1.6  # session length: laps x slowest base x this
    deleted_lap_rate: float = 0.02  # track limits are policed on every flying lap


QUALIFYING: Final = QualifyingModel()
