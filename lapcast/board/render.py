"""The timing board as a ``rich`` renderable: a pure function of one snapshot.

``render_board(snapshot)`` draws what the consumers and the engine published: a
header (series, event, session clock, flag, engine state and lag), one table per
class, the class poles and the championship with its clinch lines. It reads no
topic and no clock, so tests draw it on a recording console with hand-made states.

Colours follow timing screens: purple for the best lap of the class (bold for the
best overall), green for a personal best, yellow for a car in the pit lane.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from lapcast.board.grid import Column, Grid
from lapcast.board.store import BoardSnapshot
from lapcast.board.views import (
    ChampionshipView,
    ClassPole,
    ConsumerHealth,
    EngineLost,
    EngineStatus,
    PoleChange,
    RunningOrderRow,
    RunningOrderView,
)
from simulator.timefmt import format_gap, format_ms

__all__ = ["MARKER_STYLES", "Board", "render_board"]

# Lap and sector markers, as the running-order projection names them.
MARKER_STYLES = {
    "overall-best": "bold magenta",
    "class-best": "magenta",
    "personal-best": "green",
}
_FLAG_STYLES = {
    "GREEN": "bold white on green",
    "YELLOW": "bold black on yellow",
    "FCY": "bold black on yellow",
    "CODE_60": "bold white on purple",
    "VSC": "bold black on yellow",
    "SAFETY_CAR": "bold black on yellow",
    "RED": "bold white on red",
    "CHEQUERED": "bold black on white",
}
_ENGINE_STYLES = {"running": "green", "paused": "yellow", "finished": "cyan", "lost": "bold red",
                  "error": "bold red"}
# Colours of the class bands on WEC timing screens.
_CLASS_STYLES = {
    "HYPERCAR": "bold red",
    "LMP2": "bold blue",
    "LMGT3": "bold green",
    "GTE AM": "bold dark_orange",
    "LMGTE AM": "bold dark_orange",
    "GTE": "bold dark_orange",
}
# Below this width the right-hand column (poles, championship) goes under the tables.
_SIDE_BY_SIDE_WIDTH = 170
_SECTORS_WIDTH = 140
# Width of the right-hand column: the championship's crews fit.
_RIGHT_WIDTH = 70


def render_board(snapshot: BoardSnapshot) -> RenderableType:
    """The whole board for ``snapshot``; it lays itself out for the console's width."""
    return Board(snapshot)


class Board:
    """A renderable that picks its layout from the width it is given."""

    def __init__(self, snapshot: BoardSnapshot) -> None:
        self.snapshot = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        snap = self.snapshot
        running = _as(snap.view("running-order"), RunningOrderView)
        poles: dict[str, ClassPole] = snap.view("class-poles") or {}
        championship = _as(snap.view("championship"), ChampionshipView)
        full = Group(*self._full(console, options, running, poles, championship))
        # The full board when it fits the console's height; else the compact one, which
        # keeps every class's leader, the poles and the title statement on screen.
        height = options.max_height
        lines = console.render_lines(full, options.update(height=None), pad=False)
        if len(lines) <= height:
            for line in lines:
                yield from line
                yield Segment.line()
            return
        from lapcast.board.compact import compact_lines

        yield from compact_lines(console, options, snap, height=height,
                                 header=_header(snap, running), running=running, poles=poles,
                                 championship=championship)

    def _full(self, console: Console, options: ConsoleOptions,
              running: RunningOrderView | None, poles: dict[str, ClassPole],
              championship: ChampionshipView | None) -> Iterator[RenderableType]:
        snap = self.snapshot
        yield _header(snap, running)
        # Sector times only where they leave the names readable.
        tables = _class_tables(snap, running, poles,
                               sectors=options.max_width >= _SECTORS_WIDTH)
        side = [_poles_panel(snap, poles), _championship_panel(snap, championship)]
        if options.max_width >= _SIDE_BY_SIDE_WIDTH:
            yield _SideBySide(Group(*tables), Group(*side))
        else:
            yield from tables
            yield from side
        footer = _footer(snap)
        if footer is not None:
            yield footer


class _SideBySide:
    def __init__(self, left: RenderableType, right: RenderableType) -> None:
        self.left, self.right = left, right

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from _side_by_side(console, options, self.left, self.right)


def _side_by_side(console: Console, options: ConsoleOptions, left: RenderableType,
                  right: RenderableType) -> Iterator[Segment]:
    """Two columns of fixed widths, pasted line by line: the right one is as wide as the
    championship's crews need, whatever the terminal, and the tables take the rest."""
    right_width = min(_RIGHT_WIDTH, options.max_width * 2 // 5)
    left_width = options.max_width - right_width - 1
    left_lines = console.render_lines(left, options.update_width(left_width), pad=True)
    right_lines = console.render_lines(right, options.update_width(right_width), pad=True)
    blank_left, blank_right = Segment(" " * left_width), Segment(" " * right_width)
    for index in range(max(len(left_lines), len(right_lines))):
        yield from left_lines[index] if index < len(left_lines) else (blank_left,)
        yield Segment(" ")
        yield from right_lines[index] if index < len(right_lines) else (blank_right,)
        yield Segment.line()


def _as(value: Any, kind: type[Any]) -> Any:
    return value if isinstance(value, kind) else None


# --- header ---------------------------------------------------------------------------


def _header(snap: BoardSnapshot, running: RunningOrderView | None) -> RenderableType:
    meta, status = snap.meta, snap.status
    title = Text()
    if meta is not None:
        title.append(f"{meta.series} · {meta.event_name}", style="bold")
        title.append(f" · {meta.session_kind.value.title()}")
    else:
        title.append("lapcast", style="bold")
        title.append(" · waiting for the session's entry list", style="dim")
    title.append(f"   session {snap.session_id}", style="dim")

    line = Text()
    clock = status.session_time_ms if isinstance(status, EngineStatus) else (
        running.session_time_ms if running else None)
    line.append("clock ", style="dim")
    line.append(format_ms(clock or 0, hours=True), style="bold")
    if meta is not None and meta.duration_ms:
        line.append(f" / {format_ms(meta.duration_ms, hours=True)}", style="dim")
        remaining = max(meta.duration_ms - (clock or 0), 0)
        line.append(f"  to go {format_ms(remaining, hours=True)}")
    flag = _flag(running)
    if flag:
        line.append("   ")
        line.append(f" {flag} ", style=_FLAG_STYLES.get(flag, "reverse"))
        if flag == "RED" and running is not None:
            line.append(" ended under red" if running.finished else " session suspended",
                        style="bold red")
    line.append("   ")
    line.append_text(_engine(status))
    line.append_text(_lag(snap, status))
    return Group(title, line)


def _flag(running: RunningOrderView | None) -> str:
    if running is None:
        return ""
    if running.chequered:
        return "CHEQUERED"
    return running.flag or ""


def _engine(status: EngineStatus | EngineLost | None) -> Text:
    text = Text("engine ", style="dim")
    if status is None:
        text.append("not heard yet", style="yellow")
        return text
    text.append(status.state, style=_ENGINE_STYLES.get(status.state, "bold"))
    if not isinstance(status, EngineStatus):
        return text  # its last will: nothing else is known
    if status.state == "error" and isinstance(status.reason, str) and status.reason:
        # The engine stopped publishing (its journal failed): say why, it is the story.
        text.append(f" ({status.reason})", style="red")
        return text
    if isinstance(status.speed, str):
        text.append(f" at {status.speed} speed")
    else:
        text.append(f" at {_number(status.speed)}x")
    return text


def _lag(snap: BoardSnapshot, status: EngineStatus | EngineLost | None) -> Text:
    """The feed's lag: the engine's behind its deadlines, the board's behind the engine."""
    text = Text()
    if not isinstance(status, EngineStatus):
        return text
    text.append("   engine lag ", style="dim")
    text.append(f"{status.lag_ms:.0f} ms")
    shown = snap.states.get("running-order")
    if shown is not None:
        behind = max(status.last_seq - shown.seq, 0) if shown.epoch == (status.epoch or 1) else 0
        text.append("   board behind ", style="dim")
        text.append(f"{behind} event" + ("" if behind == 1 else "s"),
                    style="yellow" if behind else "")
    return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- class tables ---------------------------------------------------------------------


def _class_order(snap: BoardSnapshot, seen: Iterable[str]) -> list[str]:
    """The entry list's order of classes, then any other class seen in a state."""
    order = list(snap.meta.classes) if snap.meta is not None else []
    order.extend(c for c in dict.fromkeys(seen) if c not in order)
    return order


def _class_tables(
    snap: BoardSnapshot, running: RunningOrderView | None, poles: dict[str, ClassPole], *,
    sectors: bool,
) -> list[RenderableType]:
    if running is None:
        return [Panel(Text("waiting for the running order…", style="dim"),
                      title="running order", border_style="dim")]
    rows = running.rows
    count = max((len(r.last_sectors_ms) for r in rows), default=0) if sectors else 0
    overall_best = min((r.best_lap_ms for r in rows if r.best_lap_ms is not None), default=None)
    tables: list[RenderableType] = []
    for car_class in _class_order(snap, (r.car_class for r in rows)):
        in_class = sorted((r for r in rows if r.car_class == car_class),
                          key=lambda r: (r.class_position or 10**9, r.position or 10**9))
        if not in_class:
            continue
        pole = poles.get(car_class)
        class_best = pole.lap_time_ms if pole is not None else min(
            (r.best_lap_ms for r in in_class if r.best_lap_ms is not None), default=None)
        tables.append(_class_table(car_class, in_class, sectors=count,
                                   class_best=class_best, overall_best=overall_best))
    return tables


def _class_table(
    car_class: str, rows: list[RunningOrderRow], *, sectors: int,
    class_best: int | None, overall_best: int | None,
) -> Grid:
    style = _CLASS_STYLES.get(car_class.upper(), "bold")
    # Fixed widths for the figures, so that the columns of every class line up.
    columns = [
        Column(title="Pos", width=3),
        Column(title="Car", width=8, justify="left"),
        Column(title="Driver", justify="left"),
        Column(title="Team", justify="left"),
        Column(title="Laps", width=4),
        Column(title="Best", width=8),
        Column(title="Gap", width=9),
        Column(title="Int", width=9),
        Column(title="Last", width=8),
        *(Column(title=f"S{index + 1}", width=6) for index in range(sectors)),
        Column(title="Pit", width=6, justify="center"),
    ]
    cells: list[list[Text | str]] = [
        [
            str(row.class_position or ""),
            _car(row),
            _short_name(row.driver or ""),
            row.team or "",
            str(row.laps),
            _best(row, class_best=class_best, overall_best=overall_best),
            format_gap(row.class_gap_ms, row.class_gap_laps or 0),
            format_gap(row.class_interval_ms, row.class_interval_laps or 0),
            Text(format_ms(row.last_lap_ms), style=MARKER_STYLES.get(row.last_lap_marker, "")),
            *_sectors(row, sectors),
            _pit(row),
        ]
        for row in rows
    ]
    return Grid(title=Text.assemble((f" {car_class} ", f"{style} reverse")), columns=columns,
                rows=cells)


def _short_name(name: str) -> str:
    """``Brendon Hartley`` -> ``B. Hartley``, as timing screens save width."""
    first, _, rest = name.strip().partition(" ")
    return f"{first[0]}. {rest}" if first and rest else name


def _car(row: RunningOrderRow) -> Text:
    text = Text(f"#{row.car}", style="bold")
    if row.penalty_ms:
        text.append(f" +{row.penalty_ms // 1000}s", style="red")
    return text


def _best(row: RunningOrderRow, *, class_best: int | None, overall_best: int | None) -> Text:
    if row.best_lap_ms is None:
        return Text("")
    style = ""
    if row.best_lap_ms == overall_best:
        style = MARKER_STYLES["overall-best"]
    elif row.best_lap_ms == class_best:
        style = MARKER_STYLES["class-best"]
    return Text(format_ms(row.best_lap_ms), style=style)


def _sectors(row: RunningOrderRow, count: int) -> list[Text]:
    """The sectors of the lap under way (or just completed), coloured as they are set."""
    cells = []
    for index in range(count):
        ms = row.last_sectors_ms[index] if index < len(row.last_sectors_ms) else None
        marker = row.last_sector_markers[index] if index < len(row.last_sector_markers) else ""
        cells.append(Text(_seconds(ms), style=MARKER_STYLES.get(marker, "")))
    return cells


def _seconds(ms: int | None) -> str:
    """A sector time in seconds, as timing screens print them: ``35.123``."""
    if ms is None:
        return ""
    return f"{ms // 1000}.{ms % 1000:03d}"


def _pit(row: RunningOrderRow) -> Text:
    status = row.status.lower()
    if status in ("retired", "disqualified"):
        return Text("RET" if status == "retired" else "DSQ", style="bold red")
    if row.in_pit:
        return Text("IN PIT", style="bold black on yellow")
    if status == "finished":
        return Text("FIN", style="bold")
    return Text(str(row.pit_stops) if row.pit_stops else "", style="dim")


# --- class poles and championship -----------------------------------------------------


def _poles_panel(snap: BoardSnapshot, poles: dict[str, ClassPole]) -> RenderableType:
    kind = snap.meta.session_kind.value if snap.meta is not None else ""
    title = "class poles" if kind != "race" else "class fastest laps"
    if not poles:
        return Panel(Text("waiting for the class poles…", style="dim"), title=title,
                     border_style="magenta", title_align="left")
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False, expand=True)
    table.add_column("class", no_wrap=True)
    table.add_column("car", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("driver", no_wrap=True, overflow="ellipsis", ratio=1)
    for car_class in _class_order(snap, poles):
        pole = poles.get(car_class)
        if pole is None:
            continue
        name = Text(car_class, style=_CLASS_STYLES.get(car_class.upper(), "bold"))
        if pole.car is None:
            table.add_row(name, "", Text("no time yet", style="dim"), "")
            continue
        lap = f" lap {pole.lap}" if pole.lap is not None else ""
        table.add_row(name, Text(f"#{pole.car}", style="bold"),
                      Text(format_ms(pole.lap_time_ms), style=MARKER_STYLES["class-best"]),
                      f"{pole.driver or ''}{lap}")
        for line in _corrections(pole.history)[-2:]:
            table.add_row("", "", "", Text(line, style="dim italic"))
    return Panel(table, title=title, border_style="magenta", title_align="left")


def _corrections(history: list[PoleChange]) -> list[str]:
    """One line per pole a correction took away: whose lap, and when it was deleted."""
    lines = []
    for before, after in pairwise(history):
        if after.cause != "deleted" or before.car is None:
            continue
        when = (f" at {format_ms(after.session_time_ms, hours=True)}"
                if after.session_time_ms is not None else "")
        lines.append(f"#{before.car} {format_ms(before.lap_time_ms)} deleted{when}")
    return lines


def _championship_panel(snap: BoardSnapshot, view: ChampionshipView | None) -> RenderableType:
    if view is None:
        heard = "championship" in snap.states
        text = "no championship for this session" if heard else "waiting for the championship…"
        return Panel(Text(text, style="dim"), title="championship", border_style="cyan",
                     title_align="left")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), collapse_padding=True,
                  pad_edge=False,
                  expand=True, header_style="bold dim")
    table.add_column("Pos", justify="right", no_wrap=True)
    table.add_column("Car", justify="right", no_wrap=True)
    table.add_column("Crew", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("Before", justify="right", no_wrap=True)
    table.add_column("Pole", justify="right", no_wrap=True)
    table.add_column("Race", justify="right", no_wrap=True)
    table.add_column("Pts", justify="right", no_wrap=True)
    for row in view.standings:
        table.add_row(str(row.position or ""), Text(f"#{row.car}", style="bold"), row.name,
                      _points(row.points_before), _points(row.pole_points, plus=True),
                      _points(row.race_points, plus=True),
                      Text(_points(row.points), style="bold"))
    lines: list[RenderableType] = [table]
    lines.extend(Text(line, style="bold") for line in view.clinch)
    lines.extend(Text(line, style="dim italic") for line in view.counterfactuals)
    title = view.name + (f" · {view.car_class}" if view.car_class else "")
    return Panel(Group(*lines), title=title or "championship", border_style="cyan",
                 title_align="left")


def _points(value: int | None, *, plus: bool = False) -> str:
    if value is None:
        return ""
    if plus:
        return f"+{value}" if value else ""
    return str(value)


# --- footer ---------------------------------------------------------------------------


def _footer(snap: BoardSnapshot) -> RenderableType | None:
    parts: list[RenderableType] = []
    if snap.consumers:
        line = Text("consumers ", style="dim")
        for name, health in sorted(snap.consumers.items()):
            ok = health.state not in ("lost", "stopped")
            line.append(f"{name}", style="green" if ok else "bold red")
            detail = ""
            if isinstance(health, ConsumerHealth):  # not its last will: figures to show
                detail = f" seq {health.last_seq}"
                if health.lag_events:
                    detail += f" lag {health.lag_events}"
                if health.dead_letters:
                    detail += f" dead {health.dead_letters}"
            line.append(f"{detail}  ", style="dim")
        parts.append(line)
    if snap.connection:
        parts.append(Text(snap.connection, style="bold red"))
    parts.extend(Text(problem, style="red") for problem in snap.problems)
    return Group(*parts) if parts else None
