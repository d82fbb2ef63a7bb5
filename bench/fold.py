"""How fast the built-in projections fold, against a bare msgspec decode of the same bytes.

Run from the repository root (it pins itself to one CPU and prints its figures):

    .venv/bin/python bench/fold.py            # the shared race, synthetic 36 and 1,000 cars
    .venv/bin/python bench/fold.py --quick    # fewer repeats, a smaller 1,000-car field

Per workload, over the events JSON-encoded once (as they travel on the wire):

* baseline: a bare loop of ``msgspec.json.Decoder(Event).decode`` over the bytes;
* folds: the same decode plus ``Folder.apply`` of every built-in projection
  (running-order, class-poles, championship, lap-chart: the live runner's path), and
  a final ``view()`` of each;
* per projection: each one's fold alone, in microseconds per event (decode excluded);
* ratio: folds / baseline in events per second. Target: at least 15 %;
* scaling: cost per event of the folds at 1,000 cars over that at 36 cars, with the
  same generator. Target: at most 2x (no re-sort and no O(field) work per event).

Each figure is the best of ``--repeat`` runs; baseline and folds alternate so that
they share whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from consumers.folding import Folder
from consumers.registry import ALL_BUILTIN, load_consumer
from simulator.contract import Event, LapCompleted, encode
from simulator.sources import load_source

REPO = Path(__file__).resolve().parents[1]
RACE_CSV = REPO.parent / "shared" / "data" / "wec-2024-bahrain-8h-race.analysis.csv"
RATIO_TARGET = 0.15
SCALING_TARGET = 2.0


@dataclass(frozen=True)
class Workload:
    name: str
    cars: int
    lines: list[bytes]
    laps: int


@dataclass(frozen=True)
class Figures:
    workload: Workload
    decode_s: float
    fold_s: float
    view_s: float

    @property
    def events(self) -> int:
        return len(self.workload.lines)

    @property
    def decode_rate(self) -> float:
        return self.events / self.decode_s

    @property
    def fold_rate(self) -> float:
        return self.events / self.fold_s

    @property
    def ratio(self) -> float:
        return self.decode_s / self.fold_s

    @property
    def fold_us(self) -> float:
        """Cost per event of the three folds alone (the decode taken out)."""
        return (self.fold_s - self.decode_s) / self.events * 1e6


def pin_to_one_cpu(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def workload(name: str, spec: str) -> Workload:
    events = list(load_source(spec).events())
    cars = {e.car for e in events if isinstance(e, LapCompleted)}
    laps = sum(isinstance(e, LapCompleted) for e in events)
    return Workload(name=name, cars=len(cars), lines=[encode(e) for e in events], laps=laps)


def bare_decode(lines: list[bytes]) -> None:
    decode = msgspec.json.Decoder(Event).decode
    for line in lines:
        decode(line)


CONSUMERS = [load_consumer(name) for name in ALL_BUILTIN]  # entry points: looked up once


def decode_and_fold(lines: list[bytes]) -> list[Folder[Any]]:
    decode = msgspec.json.Decoder(Event).decode
    folders = [Folder(consumer) for consumer in CONSUMERS]
    for line in lines:
        event = decode(line)
        for folder in folders:
            folder.apply(event)
    return folders


def best_of(repeat: int, *runs: Callable[[], Any]) -> list[float]:
    """Best time of each run over ``repeat`` alternating rounds."""
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            gc.collect()
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def per_projection(w: Workload, repeat: int) -> dict[str, float]:
    """Microseconds per event of each projection's fold alone, over decoded events."""
    decode = msgspec.json.Decoder(Event).decode
    events = [decode(line) for line in w.lines]
    out = {}
    for consumer in CONSUMERS:
        def run(consumer: Any = consumer) -> None:
            folder = Folder(consumer)
            for event in events:
                folder.apply(event)
        out[consumer.name] = best_of(repeat, run)[0] / len(events) * 1e6
    return out


def measure(w: Workload, repeat: int) -> Figures:
    def fold_and_view() -> None:
        for folder in decode_and_fold(w.lines):
            folder.view()

    decode_s, fold_s = best_of(repeat, lambda: bare_decode(w.lines), fold_and_view)
    folders = decode_and_fold(w.lines)
    start = time.perf_counter()
    for folder in folders:
        folder.view()
    return Figures(workload=w, decode_s=decode_s, fold_s=fold_s,
                   view_s=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--race", type=Path, default=RACE_CSV, help="the shared race CSV")
    parser.add_argument("--cars", type=int, default=1000, help="the big field (default 1000)")
    parser.add_argument("--laps", type=int, default=120,
                        help="race distance of the synthetic fields (default 120)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (best of, default 5)")
    parser.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 60 laps")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.laps = 3, 60

    print(f"lapcast bench/fold.py, Python {sys.version.split()[0]}, msgspec "
          f"{msgspec.__version__}, {pin_to_one_cpu(args.cpu)}")
    print(f"projections: {', '.join(ALL_BUILTIN)}; best of {args.repeat} rounds")
    print("generating workloads...", flush=True)
    small = f"synth:cars=36,seed=7,laps={args.laps}"
    big = f"synth:cars={args.cars},seed=7,laps={args.laps}"
    workloads = [workload("shared race", str(args.race)), workload("synth 36 cars", small),
                 workload(f"synth {args.cars} cars", big)]

    print()
    print(f"{'workload':<18} {'cars':>5} {'events':>8} {'bare decode/s':>14} "
          f"{'decode+folds/s':>17} {'ratio':>6} {'folds us/event':>15} {'views ms':>11}")
    results = []
    for w in workloads:
        f = measure(w, args.repeat)
        results.append(f)
        print(f"{w.name:<18} {w.cars:>5} {f.events:>8} {f.decode_rate:>14,.0f} "
              f"{f.fold_rate:>17,.0f} {f.ratio:>6.1%} {f.fold_us:>15.2f} "
              f"{f.view_s * 1e3:>11.1f}", flush=True)

    print()
    print("per projection, fold alone (us/event): "
          + ", ".join(f"{w.name}: " + " ".join(f"{name} {us:.2f}" for name, us in
                                               per_projection(w, args.repeat).items())
                      for w in workloads))
    race, small_f, big_f = results
    scaling = big_f.fold_us / small_f.fold_us
    scaling_total = small_f.fold_rate / big_f.fold_rate
    worst_ratio = min(f.ratio for f in results)
    print()
    print(f"ratio decode+folds / bare decode: {race.ratio:.1%} on the shared race, "
          f"worst {worst_ratio:.1%} (target >= {RATIO_TARGET:.0%}): "
          f"{'ok' if worst_ratio >= RATIO_TARGET else 'MISSED'}")
    print(f"cost per event, {big_f.workload.cars} cars vs 36 cars: folds {scaling:.2f}x, "
          f"decode+folds {scaling_total:.2f}x (target <= {SCALING_TARGET:.0f}x): "
          f"{'ok' if scaling <= SCALING_TARGET else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
