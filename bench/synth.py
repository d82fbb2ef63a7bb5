"""How generation and folding cost per event grow with the field: 36, 1,000, 10,000 cars.

    .venv/bin/python bench/synth.py            # the three fields, a few seconds each
    .venv/bin/python bench/synth.py --quick    # fewer laps

For each field: generate the log (events/s, microseconds per event, peak RSS of a
fresh process doing only that), then fold it with the built-in projections from
the stream (microseconds per event per projection set). Each measurement runs in
its own subprocess so one field's memory does not hide in the next one's figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

# (cars, laps): laps chosen so every field yields some 10^4..10^5 events.
FIELDS = ((36, 235), (1_000, 50), (10_000, 10))
QUICK = ((36, 60), (1_000, 12), (10_000, 4))


def _measure(cars: int, laps: int, what: str) -> dict[str, Any]:
    """Run in a child: generate (and maybe fold) one field, report the figures."""
    from simulator.contract import encode
    from simulator.synth import SynthSpec, events

    spec = SynthSpec(cars=cars, laps=laps, seed=1)
    started = time.perf_counter()
    count = 0
    if what == "generate":
        for event in events(spec):
            encode(event)  # what writing the log costs too
            count += 1
    else:
        from consumers.folding import Folder
        from consumers.registry import BUILTIN, load_consumer

        folders = [Folder(load_consumer(name)) for name in BUILTIN]
        for event in events(spec):
            for folder in folders:
                folder.apply(event)
            count += 1
        for folder in folders:
            folder.view()
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cars": cars, "laps": laps, "what": what, "events": count, "seconds": elapsed,
            "peak_rss_mb": peak_mb}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("CARS", "LAPS", "WHAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cars, laps, what = int(args.child[0]), int(args.child[1]), args.child[2]
        print(json.dumps(_measure(cars, laps, what)))
        return 0
    rows = []
    for cars, laps in QUICK if args.quick else FIELDS:
        figures = {}
        for what in ("generate", "generate+fold"):
            out = subprocess.run([sys.executable, __file__, "--child", str(cars), str(laps), what],
                                 check=True, capture_output=True, text=True)
            figures[what] = json.loads(out.stdout)
        gen, both = figures["generate"], figures["generate+fold"]
        n = gen["events"]
        gen_us = gen["seconds"] / n * 1e6
        fold_us = both["seconds"] / n * 1e6 - gen_us
        rows.append((cars, laps, n, gen_us, n / gen["seconds"], fold_us, gen["peak_rss_mb"],
                     both["peak_rss_mb"]))
    print("| cars | laps | events | generate µs/event | generate events/s | fold µs/event "
          "(3 projections) | peak RSS generate | peak RSS generate+fold |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cars, laps, n, gen_us, rate, fold_us, rss_gen, rss_fold in rows:
        print(f"| {cars:,} | {laps} | {n:,} | {gen_us:.1f} | {rate:,.0f} | {fold_us:.1f} | "
              f"{rss_gen:.0f} MB | {rss_fold:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
