"""``lapcast fold SOURCE``: fold a whole source offline and print the final tables.

The same ``Folder`` and the same projections as the live consumers, with no broker:
what this prints is what the consumers publish once the session has ended.
``--penalty CAR=SECONDS`` appends a ``TimePenalty`` after the source's last event
(a post-race decision the source does not carry).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from consumers.api import Consumer
from consumers.folding import Folder, fold_all
from consumers.registry import ALL_BUILTIN, load_consumer
from lapcast.cli.common import session_id_arg, source_arg, writable_file
from simulator.contract import Event, LapCompleted, SessionStarted, TimePenalty
from simulator.errors import LapcastError
from simulator.sources import Granularity, load_source
from simulator.timefmt import format_gap, format_ms, parse_duration

__all__ = ["FoldResult", "Penalty", "SourceReader", "fold_source", "parse_penalty", "register"]

PENALTY_REASON = "--penalty on the command line"


@dataclass(frozen=True, kw_only=True)
class Penalty:
    car: str
    penalty_ms: int


def parse_penalty(text: str) -> Penalty:
    """``"51=295"`` or ``"51=4:55"`` -> car 51, 295000 ms."""
    car, sep, amount = text.partition("=")
    car = car.strip()
    if not sep or not car or not amount.strip():
        raise argparse.ArgumentTypeError(
            f"--penalty {text!r}: expected CAR=SECONDS, e.g. 51=295 or 51=4:55"
        )
    try:
        ms = parse_duration(amount.lstrip("+"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--penalty {text!r}: {exc}") from None
    return Penalty(car=car, penalty_ms=ms)


@dataclass(kw_only=True)
class FoldResult:
    """The folders after the whole source, and what was read."""

    source: str
    session_id: str
    events: int
    lap_events: int
    folders: list[Folder[Any]]

    def views(self) -> dict[str, Any]:
        """snake_case name -> view; a projection whose view is None is left out."""
        out: dict[str, Any] = {}
        for folder in self.folders:
            view = folder.view()
            if view is not None:
                out[folder.consumer.json_key] = view
        return out


class SourceReader:
    """Passes the source's events through, counting them and noting what penalties need."""

    def __init__(self, source_name: str, penalties: list[Penalty]) -> None:
        self.source_name = source_name
        self.penalties = penalties
        self.events = 0
        self.lap_events = 0
        self.cars: set[str] = set()
        self.session_id = ""

    def __call__(self, events: Iterable[Event]) -> Iterator[Event]:
        last: Event | None = None
        for event in events:
            self.events += 1
            if isinstance(event, LapCompleted):
                self.lap_events += 1
                self.cars.add(event.car)
            elif isinstance(event, SessionStarted):
                self.cars.update(entry.car for entry in event.entries)
            last = event
            yield event
        if last is not None:
            self.session_id = last.session_id
        if not self.penalties:
            return
        if last is None:
            raise LapcastError(f"{self.source_name}: no events, nothing to penalize")
        seq = last.seq
        for penalty in self.penalties:
            if penalty.car not in self.cars:
                known = ", ".join(sorted(self.cars, key=_car_order)) or "none"
                raise LapcastError(
                    f"--penalty {penalty.car}=...: no car {penalty.car!r} in "
                    f"{self.source_name} (cars: {known})"
                )
            seq += 1
            self.events += 1
            yield TimePenalty(
                session_id=last.session_id, epoch=last.epoch, seq=seq,
                session_time_ms=last.session_time_ms, car=penalty.car,
                penalty_ms=penalty.penalty_ms, reason=PENALTY_REASON,
            )


def _car_order(car: str) -> tuple[int, str]:
    return (int(car), car) if car.isdigit() else (1 << 30, car)


def fold_source(
    spec: str,
    *,
    penalties: Iterable[Penalty] = (),
    granularity: Granularity = "lap",
    session_id: str | None = None,
    consumers: Iterable[Consumer[Any]] | None = None,
) -> FoldResult:
    """Load ``spec`` and fold it (plus the penalties) into the built-in projections."""
    source = load_source(spec, session_id=session_id, granularity=granularity)
    chosen = list(consumers) if consumers is not None else [load_consumer(n) for n in ALL_BUILTIN]
    reader = SourceReader(source.name or spec, list(penalties))
    folders = fold_all(chosen, reader(source.events()))
    return FoldResult(source=spec, session_id=reader.session_id or source.session_id,
                      events=reader.events, lap_events=reader.lap_events, folders=folders)


# --- output ------------------------------------------------------------------------------

def json_document(result: FoldResult) -> dict[str, Any]:
    """The one document ``--json`` prints."""
    views = result.views()
    doc: dict[str, Any] = {"source": result.source, "session_id": result.session_id,
                           "events": result.events, "lap_events": result.lap_events}
    running = views.get("running_order")
    if running is not None:
        doc["session_kind"] = running["session_kind"]
        doc["flag"] = running["flag"]
        doc["running_order"] = running["rows"]
    poles = views.get("class_poles")
    if poles is not None:
        doc["class_poles"] = poles
    for key, value in views.items():
        if key not in ("running_order", "class_poles"):
            doc[key] = value
    return doc


def _running_table(view: dict[str, Any]) -> Table:
    when = ("chequered flag" if view["chequered"]
            else format_ms(view["session_time_ms"], hours=True))
    if view["flag"] == "RED" and not view["chequered"]:
        when += ", RED flag" + (": ended under red" if view["finished"] else "")
    title = f"Running order ({view['session_kind']}, {when})"
    table = Table(title=title, title_justify="left")
    for name, justify in (("Pos", "right"), ("PIC", "right"), ("Car", "right"), ("Class", "left"),
                          ("Team", "left"), ("Driver", "left"), ("Status", "left"),
                          ("Laps", "right"), ("Gap", "right"), ("Int", "right"),
                          ("Last", "right"), ("Best", "right"), ("Pits", "right")):
        table.add_column(name, justify=justify, no_wrap=True,  # type: ignore[arg-type]
                         max_width=26 if name in ("Team", "Driver") else None,
                         overflow="ellipsis")
    styles = {"overall-best": "magenta", "class-best": "cyan", "personal-best": "green"}
    for row in view["rows"]:
        last = format_ms(row["last_lap_ms"])
        marker = styles.get(row["last_lap_marker"])
        if marker:
            last = f"[{marker}]{last}[/]"
        status = row["status"]
        if row["penalty_ms"]:
            status += f" (+{row['penalty_ms'] // 1000}s)"
        table.add_row(
            str(row["position"]), str(row["class_position"]), row["car"], row["class"],
            row["team"], row["driver"], status, str(row["laps"]),
            format_gap(row["gap_ms"], row["gap_laps"]),
            format_gap(row["interval_ms"], row["interval_laps"]),
            last, format_ms(row["best_lap_ms"]), str(row["pit_stops"]),
        )
    return table


def _poles_table(view: dict[str, Any], race: bool) -> Table:
    table = Table(title="Class fastest laps" if race else "Class poles", title_justify="left")
    for name in ("Class", "Car", "Driver", "Lap", "Time", "Changes"):
        table.add_column(name)
    for name, pole in view.items():
        table.add_row(name, pole["car"] or "", pole["driver"] or "",
                      "" if pole["lap"] is None else str(pole["lap"]),
                      format_ms(pole["lap_time_ms"]), str(len(pole["history"])))
    return table


def print_tables(result: FoldResult, console: Console) -> None:
    views = result.views()
    console.print(f"{result.source}: {result.events} events ({result.lap_events} laps)")
    running = views.get("running_order")
    race = running is None or running["session_kind"] == "race"
    if running is not None:
        console.print(_running_table(running))
    poles = views.get("class_poles")
    if poles is not None:
        console.print(_poles_table(poles, race))
    championship = views.get("championship")
    if championship is not None:
        from consumers.projections.championship import summary_lines

        for line in summary_lines(championship):
            console.print(line, markup=False, highlight=False)


def draw(result: FoldResult, args: argparse.Namespace) -> int:
    """``--chart``: the gap or lap chart of the whole session, into ``--out``."""
    from consumers.projections.lap_chart import full_history
    from lapcast.plots import draw_chart

    folder = next(f for f in result.folders if f.consumer.name == "lap-chart")
    laps = full_history(folder.state)
    running = result.views().get("running_order") or {"rows": []}
    classes = {row["car"]: row["class"] for row in running["rows"]}
    leader = next((row["car"] for row in running["rows"] if row["position"] == 1), None)
    kind = "gap chart" if args.chart == "gap" else "lap chart"
    lines = draw_chart(args.chart, laps=laps, classes=classes, leader=leader,
                       reference=args.reference, out=Path(args.out),
                       title=f"{result.session_id}: {kind}")
    print(f"{args.out}: {kind}, {lines} cars", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    source_arg(args.source)
    if args.chart is not None and args.out is None:
        raise LapcastError("--chart needs --out FILE.svg or FILE.png")
    if args.reference is not None and args.chart != "gap":
        raise LapcastError("--reference is the gap chart's reference car (--chart gap)")
    if args.out is not None:
        writable_file(args.out, what="chart (--out)")
    result = fold_source(args.source, penalties=args.penalty, granularity=args.granularity,
                         session_id=args.session_id)
    if args.chart is not None:
        return draw(result, args)
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(json_document(result)) + b"\n")
        sys.stdout.flush()
    else:
        # Piped output keeps whole rows (rich would squeeze them into 80 columns).
        width = None if sys.stdout.isatty() else 160
        print_tables(result, Console(highlight=False, width=width))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fold", help="fold a whole source offline and print the final tables",
        description="Fold a source (Al Kamel .csv, scenario .toml, journal .jsonl, synth:...) "
                    "with the built-in projections, no broker, and print the final state. "
                    "A journal folds its latest epoch.",
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="an Al Kamel .csv, a scenario .toml, a journal .jsonl or synth:...")
    parser.add_argument("--penalty", action="append", type=parse_penalty, default=[],
                        metavar="CAR=SECONDS",
                        help="add a time penalty after the last event (repeatable), "
                             "e.g. --penalty 51=295 or 51=4:55")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of tables")
    parser.add_argument("--granularity", choices=("lap", "sector"), default="lap",
                        help="emit sector events too (default lap); the final state is the same")
    parser.add_argument("--session-id", metavar="ID", type=session_id_arg,
                        help="session id for the events (default: derived from the source)")
    parser.add_argument("--chart", choices=("gap", "laps"),
                        help="draw the gap chart (gaps to --reference, its class) or the lap "
                             "chart (positions by lap) into --out; needs the [plots] extra")
    parser.add_argument("--reference", metavar="CAR",
                        help="the gap chart's reference car (default: the overall leader)")
    parser.add_argument("--out", metavar="FILE", help="the chart's file, .svg or .png")
    parser.set_defaults(handler=run)
