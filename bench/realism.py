"""How close is a synthetic field to the real race? Side by side, per class.

    .venv/bin/python bench/realism.py [--seeds 5]

Real: the 2024 8 Hours of Bahrain (``../shared/data``), through the Al Kamel loader.
Synthetic: the same shape of field (18 HYPERCAR + 18 LMGT3, 235 laps), pooled over a
few seeds, through the same event analysis. Prints Markdown tables: lap-time
percentiles per class (green race laps, then every lap), and the session's shape
(stops, stint lengths, pit time, yellows, retirements, duration).
"""

from __future__ import annotations

import argparse
import itertools
import statistics as st
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    SessionStarted,
    TimePenalty,
)
from simulator.sources import load_source
from simulator.synth import SynthSpec, events
from simulator.timefmt import format_ms

REAL_CSV = (Path(__file__).resolve().parents[2]
            / "shared/data/wec-2024-bahrain-8h-race.analysis.csv")
CLASSES = ("HYPERCAR", "LMGT3")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass
class Shape:
    """What one or more sessions look like, per class where it matters."""

    sessions: int = 0
    green: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    every: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    stops: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    stints: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    pit_ms: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    cars: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retired: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    yellows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duration_ms: list[int] = field(default_factory=list)
    deleted: int = 0
    penalties: int = 0

    def add(self, stream: Iterable[Event]) -> None:
        self.sessions += 1
        class_of: dict[str, str] = {}
        laps: dict[str, list[LapCompleted]] = defaultdict(list)
        for event in stream:
            if isinstance(event, SessionStarted):
                class_of = {e.car: e.car_class for e in event.entries}
                for cls in class_of.values():
                    self.cars[cls] += 1
            elif isinstance(event, LapCompleted):
                laps[event.car].append(event)
            elif isinstance(event, FlagChanged) and event.flag in (Flag.FCY, Flag.SAFETY_CAR):
                self.yellows[event.flag.value] += 1
            elif isinstance(event, CarRetired):
                self.retired[class_of[event.car]] += 1
            elif isinstance(event, ChequeredFlag):
                self.duration_ms.append(event.session_time_ms)
            elif isinstance(event, LapDeleted):
                self.deleted += 1
            elif isinstance(event, TimePenalty):
                self.penalties += 1
        for car, car_laps in laps.items():
            cls = class_of[car]
            since = 0
            stops = 0
            for lap in car_laps:
                if lap.lap_time_ms is None:
                    continue
                self.every[cls].append(lap.lap_time_ms)
                if (lap.flag is Flag.GREEN and lap.lap > 1 and not lap.in_pit
                        and lap.pit_time_ms is None):
                    self.green[cls].append(lap.lap_time_ms)
                if lap.pit_time_ms is not None:
                    self.pit_ms[cls].append(lap.pit_time_ms)
            for prev, lap in itertools.pairwise(car_laps):
                if prev.in_pit:
                    stops += 1
                    if since:
                        self.stints[cls].append(lap.lap - since)
                    since = lap.lap
            self.stops[cls].append(stops)


def _q(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sec(ms: float) -> str:
    return format_ms(round(ms))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="synthetic sessions pooled (5)")
    parser.add_argument("--csv", default=str(REAL_CSV), help="the real race's analysis CSV")
    args = parser.parse_args(argv)
    real, synth = Shape(), Shape()
    real.add(load_source(args.csv).events())
    for seed in range(1, args.seeds + 1):
        synth.add(events(SynthSpec(cars=36, laps=235, seed=seed)))
    print(f"Real: {Path(args.csv).name}. Synthetic: `synth:cars=36,laps=235,seed=1..{args.seeds}`"
          " pooled.\n")
    for title, attr in (("Green race laps (no lap 1, in- or out-lap, yellow)", "green"),
                        ("Every lap", "every")):
        print(f"**{title}**, lap time at percentile:\n")
        header = " | ".join(f"p{round(q * 100)}" for q in QUANTILES)
        print(f"| class | source | laps | {header} |")
        print("|---|---|---:|" + "---:|" * len(QUANTILES))
        for cls in CLASSES:
            for name, shape in (("real", real), ("synthetic", synth)):
                values = getattr(shape, attr)[cls]
                cells = " | ".join(_sec(_q(values, q)) for q in QUANTILES)
                per = len(values) / shape.sessions
                print(f"| {cls} | {name} | {per:,.0f} | {cells} |")
        print()
    print("**The session's shape** (per session; synthetic: mean over the seeds):\n")
    print("| | real | synthetic |")
    print("|---|---:|---:|")
    for cls in CLASSES:
        for label, fn in (
            ("pit stops per car", lambda s, c=cls: st.fmean(s.stops[c])),
            ("stint laps, median", lambda s, c=cls: st.median(s.stints[c])),
            ("stint laps, p90", lambda s, c=cls: _q(s.stints[c], 0.9)),
            ("pit time, median (s)", lambda s, c=cls: st.median(s.pit_ms[c]) / 1000),
            ("retired cars", lambda s, c=cls: s.retired[c] / s.sessions),
        ):
            print(f"| {cls} {label} | {fn(real):.1f} | {fn(synth):.1f} |")
    for flag in ("FCY", "SAFETY_CAR"):
        print(f"| {flag} periods | {real.yellows[flag] / real.sessions:.1f} | "
              f"{synth.yellows[flag] / synth.sessions:.1f} |")
    print(f"| deleted laps / time penalties | {real.deleted} / {real.penalties} | "
          f"{synth.deleted / synth.sessions:.1f} / {synth.penalties / synth.sessions:.1f} |")
    print(f"| winner's time for 235 laps | {format_ms(real.duration_ms[0], hours=True)} | "
          f"{format_ms(round(st.fmean(synth.duration_ms)), hours=True)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
