"""Fit the synthetic field's model to the real race, and print the constants.

Run once (``.venv/bin/python bench/fit_race.py``); the printed block is pasted into
``simulator/synth/model.py`` (``FITTED``). The model it fits, per class::

    lap_ms = base + car_offset + driver_offset + degradation * lap_of_stint
             + evolution * hour_of_race + noise (+ an occasional slow lap)

Clean laps are green laps that are not lap 1, not an in- or out-lap, and whose
interval does not touch a yellow period; "slow laps" (traffic, a moment off track)
are clean laps more than 4 noise deviations above the car's fit, modelled as an
exponential excess with the observed rate and mean.

Reads ``../shared/data/wec-2024-bahrain-8h-race.analysis.csv`` (or the path given).
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics as st
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Lap", "RealRace", "fit", "read_race"]

DEFAULT_CSV = (Path(__file__).resolve().parents[2]
               / "shared/data/wec-2024-bahrain-8h-race.analysis.csv")

YELLOW = {"FCY": "FCY", "SF": "SAFETY_CAR"}
SLOW_SIGMAS = 4.0
PIT_SIGMAS = 3.0
NEUTRALIZED_EXCESS_MS = 30_000
NEUTRALIZED_LOOKBACK_MS = 1_200_000


def _ms(text: str) -> int | None:
    if not text:
        return None
    parts = text.split(":")
    whole = 0
    for p in parts[:-1]:
        whole = whole * 60 + int(p)
    return round((whole * 60 + float(parts[-1])) * 1000)


@dataclass(slots=True)
class Lap:
    car: str
    car_class: str
    driver: str
    lap: int
    lap_ms: int | None
    end_ms: int  # ELAPSED: the crossing
    in_pit: bool
    pit_ms: int | None
    flag: str
    sectors: tuple[int | None, ...]

    @property
    def start_ms(self) -> int:
        return self.end_ms - (self.lap_ms or 0)


@dataclass
class RealRace:
    laps: list[Lap]
    by_car: dict[str, list[Lap]] = field(default_factory=dict)
    # (start, end, kind) of every yellow period, from the first crossing showing it to
    # the first green crossing after it.
    yellows: list[tuple[int, int, str]] = field(default_factory=list)
    duration_ms: int = 0


def read_race(path: Path = DEFAULT_CSV) -> RealRace:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=";")
        header = [h.strip() for h in next(reader)]
        laps = []
        for raw in reader:
            row = dict(zip(header, (c.strip() for c in raw), strict=False))
            laps.append(Lap(
                car=row["NUMBER"], car_class=row["CLASS"], driver=row["DRIVER_NUMBER"],
                lap=int(row["LAP_NUMBER"]), lap_ms=_ms(row["LAP_TIME"]),
                end_ms=_ms(row["ELAPSED"]) or 0, in_pit=row["CROSSING_FINISH_LINE_IN_PIT"] == "B",
                pit_ms=_ms(row["PIT_TIME"]), flag=row["FLAG_AT_FL"],
                sectors=tuple(_ms(row[f"S{i}"]) for i in (1, 2, 3)),
            ))
    race = RealRace(laps=laps)
    for lap in laps:
        race.by_car.setdefault(lap.car, []).append(lap)
    for car_laps in race.by_car.values():
        car_laps.sort(key=lambda x: x.lap)
    current: tuple[int, str] | None = None
    for lap in sorted(laps, key=lambda x: x.end_ms):
        kind = YELLOW.get(lap.flag)
        if current is None and kind is not None:
            current = (lap.end_ms, kind)
        elif current is not None and kind != current[1]:
            race.yellows.append((current[0], lap.end_ms, current[1]))
            current = (lap.end_ms, kind) if kind else None
    race.duration_ms = max(lap.end_ms for lap in laps)
    race.yellows = _neutralized(race)
    return race


def _neutralized(race: RealRace) -> list[tuple[int, int, str]]:
    """Yellow periods as the field drove them, not as the line showed them.

    Before each safety car the field ran for ~10 minutes at neutralized speed while the
    line still showed green (laps 30 s and more over the car's pace, every car, just
    before the SC flag): the period starts at the earliest such lap.
    """
    pace = {}
    for car, laps in race.by_car.items():
        pace[car] = st.median(x.lap_ms for x in laps if x.lap_ms and x.flag == "GF" and x.lap > 1)
    out = []
    for start, end, kind in race.yellows:
        if kind == "SAFETY_CAR":
            slow = [x.start_ms for x in race.laps
                    if x.lap_ms and x.lap > 1 and not x.in_pit and x.pit_ms is None
                    and x.lap_ms - pace[x.car] > NEUTRALIZED_EXCESS_MS
                    and start - NEUTRALIZED_LOOKBACK_MS <= x.end_ms <= start]
            start = min([start, *slow])
        out.append((start, end, kind))
    return out


def _touches_yellow(race: RealRace, lap: Lap, pad_ms: int = 0) -> bool:
    return any(lap.start_ms - pad_ms < end and lap.end_ms + pad_ms > start
               for start, end, _ in race.yellows)


def _stints(car_laps: list[Lap]) -> list[list[Lap]]:
    """Laps split at pit stops: a stint runs from an out-lap to the next in-lap."""
    stints: list[list[Lap]] = [[]]
    for lap in car_laps:
        stints[-1].append(lap)
        if lap.in_pit:
            stints.append([])
    return [s for s in stints if s]


def _robust_sd(values: list[float]) -> float:
    med = st.median(values)
    return 1.4826 * st.median(abs(v - med) for v in values)


def fit(race: RealRace) -> dict[str, dict[str, float]]:
    classes = sorted({lap.car_class for lap in race.laps})
    out: dict[str, dict[str, float]] = {}
    for cls in classes:
        cars = [c for c, laps in race.by_car.items() if laps[0].car_class == cls]
        # --- clean laps, tagged with their stint and lap of stint -----------------
        clean: list[tuple[str, str, int, int, float, int]] = []  # car, driver, stint, k, hour, ms
        stint_lengths: list[int] = []
        in_extra: list[int] = []
        out_extra: list[int] = []
        pit_times: list[int] = []
        stops = changes = 0
        for car in cars:
            laps = race.by_car[car]
            stints = _stints(laps)
            for si, stint in enumerate(stints):
                complete = stint[-1].in_pit and si + 1 < len(stints)
                if complete and si > 0:
                    stint_lengths.append(len(stint))
                for k, lap in enumerate(stint):
                    if (lap.lap == 1 or lap.in_pit or lap.pit_ms is not None or lap.flag != "GF"
                            or lap.lap_ms is None or _touches_yellow(race, lap, 5_000)):
                        continue
                    clean.append((car, lap.driver, si, k, lap.end_ms / 3_600_000, lap.lap_ms))
            for prev, nxt in itertools.pairwise(laps):
                if prev.in_pit and nxt.pit_ms is not None:
                    stops += 1
                    changes += prev.driver != nxt.driver
                    pit_times.append(nxt.pit_ms)
        # --- within-group centring, then a joint slope on lap-of-stint and hour -----
        groups: dict[tuple[str, str, int], list[tuple[int, float, int]]] = defaultdict(list)
        for car, drv, si, k, hour, ms in clean:
            groups[(car, drv, si)].append((k, hour, ms))
        # Drop slow laps before fitting slopes (median-based, per group).
        core: dict[tuple[str, str, int], list[tuple[int, float, int]]] = {}
        all_dev = []
        for items in groups.values():
            med = st.median(ms for _, _, ms in items)
            all_dev.extend(ms - med for _, _, ms in items)
        sd0 = _robust_sd(all_dev)
        for key, items in groups.items():
            med = st.median(ms for _, _, ms in items)
            kept = [it for it in items if it[2] - med < SLOW_SIGMAS * sd0]
            if len(kept) >= 3:
                core[key] = kept
        # Degradation: the slope on lap-of-stint within each (car, driver, stint) group.
        sxx = sxy = 0.0
        for items in core.values():
            mk = st.fmean(k for k, _, _ in items)
            mm = st.fmean(ms for _, _, ms in items)
            sxx += sum((k - mk) ** 2 for k, _, _ in items)
            sxy += sum((k - mk) * (ms - mm) for k, _, ms in items)
        slope_k = sxy / sxx
        # Track evolution: across stints of one car and driver, on stint means corrected
        # for degradation (within a stint, hours and laps move together).
        per_pair: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for (car, drv, _), items in core.items():
            mh = st.fmean(h for _, h, _ in items)
            mm = st.fmean(ms - slope_k * k for k, _, ms in items)
            per_pair[(car, drv)].append((mh, mm))
        hxx = hxy = 0.0
        for pts in per_pair.values():
            if len(pts) < 2:
                continue
            mh = st.fmean(h for h, _ in pts)
            mm = st.fmean(m for _, m in pts)
            hxx += sum((h - mh) ** 2 for h, _ in pts)
            hxy += sum((h - mh) * (m - mm) for h, m in pts)
        evo = hxy / hxx
        # Within a stint an hour passes every ~30 laps: take that share out of the slope.
        typical_lap_h = st.median(ms for items in core.values() for _, _, ms in items) / 3.6e6
        deg = slope_k - evo * typical_lap_h
        # --- offsets: car, then driver within car, at lap-of-stint 0 and hour 0 ----
        def adjusted(k: int, h: float, ms: int, deg: float = deg, evo: float = evo) -> float:
            return ms - deg * k - evo * h

        car_means: dict[str, float] = {}
        driver_devs: list[float] = []
        residuals: list[float] = []
        for car in cars:
            items = [(drv, adjusted(k, h, ms)) for (c, drv, _), its in core.items() if c == car
                     for k, h, ms in its]
            if not items:
                continue
            car_means[car] = st.median(v for _, v in items)
            by_drv: dict[str, list[float]] = defaultdict(list)
            for drv, v in items:
                by_drv[drv].append(v)
            for vals in by_drv.values():
                dmed = st.median(vals)
                driver_devs.append(dmed - car_means[car])
                residuals.extend(v - dmed for v in vals)
        base = st.median(car_means.values())
        noise_sd = _robust_sd(residuals)
        # Slow laps: every clean lap, against its car/driver fit.
        fit_of = {}
        for (car, drv, _), its in core.items():
            fit_of[(car, drv)] = st.median(adjusted(k, h, ms) for k, h, ms in its)
        excess = [adjusted(k, h, ms) - fit_of[(car, drv)]
                  for car, drv, _, k, h, ms in clean if (car, drv) in fit_of]
        slow = [e for e in excess if e > SLOW_SIGMAS * noise_sd]
        # --- in- and out-laps against the car's pace at that point ------------------
        for car in cars:
            laps = race.by_car[car]
            if car not in car_means:
                continue
            for i, lap in enumerate(laps):
                if lap.lap_ms is None or lap.lap == 1 or _touches_yellow(race, lap, 5_000):
                    continue
                pace = car_means[car] + evo * lap.end_ms / 3_600_000
                if lap.in_pit and i + 1 < len(laps):
                    in_extra.append(lap.lap_ms - round(pace))
                if lap.pit_ms is not None:
                    out_extra.append(lap.lap_ms - lap.pit_ms - round(pace))
        # --- lap 1: rolling start, timed from the start line ---------------------
        firsts = sorted(race.by_car[c][0].lap_ms or 0 for c in cars)
        # --- sectors: share of the lap, on clean laps ------------------------------
        shares: list[list[float]] = [[], [], []]
        for lap in race.laps:
            if (lap.car_class == cls and lap.flag == "GF" and not lap.in_pit
                    and lap.pit_ms is None and lap.lap > 1 and lap.lap_ms
                    and all(s is not None for s in lap.sectors)):
                for i, s in enumerate(lap.sectors):
                    shares[i].append((s or 0) / lap.lap_ms)
        # Stints: most run to the fuel limit; the rest are cut short (a stop under a
        # yellow, a problem), at any length.
        p90 = sorted(stint_lengths)[int(0.9 * len(stint_lengths))]
        full = [n for n in stint_lengths if n >= 0.8 * p90]
        # Pit time (PIT_TIME of the out-lap): a full service around the median; quicker
        # stops (fuel only, a drive-through) and repairs as rates beside it.
        pit_mid = st.median(pit_times)
        pit_sd = _robust_sd(pit_times)
        pit_lo, pit_hi = pit_mid - PIT_SIGMAS * pit_sd, pit_mid + PIT_SIGMAS * pit_sd
        short = [t for t in pit_times if t < pit_lo]
        long = [t for t in pit_times if t > pit_hi]
        retired = sum(1 for c in cars if race.by_car[c][-1].flag != "FF")
        hours = race.duration_ms / 3_600_000
        out[cls] = {
            "cars": len(cars),
            "base_ms": round(base),
            "car_sd_ms": round(st.pstdev(car_means.values())),
            "driver_sd_ms": round(st.pstdev(driver_devs)),
            "lap_sd_ms": round(noise_sd),
            "slow_lap_rate": round(len(slow) / len(excess), 4),
            "slow_lap_mean_ms": round(st.fmean(e - SLOW_SIGMAS * noise_sd for e in slow)),
            "degradation_ms_per_lap": round(deg, 1),
            "evolution_ms_per_hour": round(evo, 1),
            "fuel_stint_laps_mean": round(st.fmean(full), 1),
            "fuel_stint_laps_sd": round(st.pstdev(full), 1),
            "short_stint_rate": round(1 - len(full) / len(stint_lengths), 3),
            "drivers": max(len({x.driver for x in race.by_car[c]}) for c in cars),
            "pit_ms_median": round(pit_mid),
            "pit_ms_sd": round(pit_sd),
            "pit_short_rate": round(len(short) / len(pit_times), 3),
            "pit_short_min_ms": min(pit_times),
            "pit_long_rate": round(len(long) / len(pit_times), 3),
            "pit_long_mean_ms": round(st.fmean(t - pit_hi for t in long)) if long else 0,
            "in_lap_extra_ms": round(st.median(in_extra)),
            "out_lap_extra_ms": round(st.median(out_extra)),
            "driver_change_rate": round(changes / stops, 2),
            "lap1_first_ms": firsts[0],
            "lap1_spread_ms": firsts[-1] - firsts[0],
            "sector_shares": [round(st.fmean(s), 4) for s in shares],
            "sector_share_sd": round(st.fmean(st.pstdev(s) for s in shares), 4),
            "retire_per_hour": round(-math.log(1 - retired / len(cars)) / hours, 4),
        }
    return out


def fit_yellows(race: RealRace) -> dict[str, dict[str, float]]:
    """Rate, duration and slow-down of each kind of yellow period."""
    hours = race.duration_ms / 3_600_000
    # Each car's green pace: median of its clean laps.
    pace: dict[str, float] = {}
    for car, laps in race.by_car.items():
        clean = [x.lap_ms for x in laps if x.lap_ms and x.flag == "GF" and x.lap > 1
                 and not x.in_pit and x.pit_ms is None and not _touches_yellow(race, x, 5_000)]
        pace[car] = st.median(clean)
    out: dict[str, dict[str, float]] = {}
    for kind in ("FCY", "SAFETY_CAR"):
        periods = [(s, e) for s, e, k in race.yellows if k == kind]
        excess = inside = 0.0
        for lap in race.laps:
            if lap.lap_ms is None or lap.in_pit or lap.pit_ms is not None or lap.lap == 1:
                continue
            overlap = sum(max(0, min(e, lap.end_ms) - max(s, lap.start_ms)) for s, e in periods)
            others = [(s, e) for s, e, k in race.yellows if k != kind]
            if overlap <= 0 or any(min(e, lap.end_ms) > max(s, lap.start_ms) for s, e in others):
                continue
            excess += lap.lap_ms - pace[lap.car]
            inside += overlap
        slow_factor = 1 / (1 - excess / inside)
        out[kind] = {
            "per_hour": round(len(periods) / hours, 3),
            "duration_ms_mean": round(st.fmean(e - s for s, e in periods)),
            "duration_ms_min": min(e - s for s, e in periods),
            "duration_ms_max": max(e - s for s, e in periods),
            "slow_factor": round(slow_factor, 3),
        }
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_CSV
    race = read_race(path)
    deleted = 2  # #54 lap 175 and #82 lap 197: see ../shared/data/README.md
    print(f"# fitted by bench/fit_race.py from {path.name}")
    print(f"# ({len(race.laps)} laps, {len(race.by_car)} cars, "
          f"{race.duration_ms / 3_600_000:.2f} h; deleted laps {deleted}, time penalties 1)")
    for cls, values in fit(race).items():
        print(f"{cls} = {values!r}")
    for kind, values in fit_yellows(race).items():
        print(f"{kind} = {values!r}")
    print(f"deleted_lap_rate = {deleted / len(race.laps):.6f}")
    print(f"penalty_per_car = {1 / len(race.by_car):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
