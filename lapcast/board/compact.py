"""The board for a terminal too small for the full tables (80x24, say).

What stays on screen, in this order of priority: the header, the class poles, the
title statement (the championship's first clinch line), and every class's leader;
then, as the height allows, a hint that the tables are cut, more cars per class,
the latest pole correction of each class and a counterfactual. Every block is
measured at the terminal's width before it is placed, so the frame never runs past
the last line (where ``rich.live`` would crop it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.segment import Segment
from rich.text import Text

from lapcast.board.grid import Column, Grid
from lapcast.board.store import BoardSnapshot
from lapcast.board.views import ChampionshipView, ClassPole, RunningOrderRow, RunningOrderView
from simulator.timefmt import format_gap, format_ms

__all__ = ["compact_lines"]


def _lines(console: Console, options: ConsoleOptions, block: RenderableType) -> list[Any]:
    return console.render_lines(block, options.update(height=None), pad=False)


def compact_lines(
    console: Console, options: ConsoleOptions, snap: BoardSnapshot, *, height: int,
    header: RenderableType, running: RunningOrderView | None, poles: dict[str, ClassPole],
    championship: ChampionshipView | None,
) -> Iterator[Segment]:
    """The compact board's lines, at most ``height`` of them."""
    from lapcast.board import render  # the full board's helpers: one look for both

    head = _lines(console, options, header)
    pole_texts, corrections = _poles(snap, poles, render)
    pole_lines = _lines(console, options, Group(*pole_texts))
    title, counterfactual = _title(championship)
    classes = _classes(snap, running, render)
    fixed = len(head) + len(pole_lines) + (len(_lines(console, options, title))
                                           if title is not None else 0)
    blocks: list[list[Any]] = []
    # One row a class at least; the leaders grid costs three lines of its own.
    spare = height - fixed - 3 - len(classes)
    per_class = 1
    hint = spare >= 1 and any(len(rows) > 1 for _, rows in classes)
    spare -= 1 if hint else 0
    while classes and spare >= len(classes) and any(len(r) > per_class for _, r in classes):
        per_class += 1
        spare -= len(classes)
    shown_corrections = [c for c in corrections if c is not None][:max(spare, 0)]
    spare -= len(shown_corrections)
    show_cf = counterfactual is not None and spare >= 2
    blocks.append(head)
    if classes:
        blocks.append(_lines(console, options,
                             _leaders(classes, per_class, render, options.max_width)))
    blocks.append(pole_lines)
    if shown_corrections:
        blocks.append(_lines(console, options, Group(*shown_corrections)))
    if title is not None:
        blocks.append(_lines(console, options, title))
    if show_cf and counterfactual is not None:
        blocks.append(_lines(console, options, counterfactual)[:2])
    if hint:
        shown = sum(min(len(rows), per_class) for _, rows in classes)
        total = sum(len(rows) for _, rows in classes)
        blocks.append(_lines(console, options, Text(
            f"{shown} of {total} cars: a taller terminal shows the full tables",
            style="dim italic", no_wrap=True, overflow="ellipsis")))
    out = [line for block in blocks for line in block][:height]
    for line in out:
        yield from line
        yield Segment.line()


def _classes(snap: BoardSnapshot, running: RunningOrderView | None,
             render: Any) -> list[tuple[str, list[RunningOrderRow]]]:
    if running is None:
        return []
    out = []
    for car_class in render._class_order(snap, (r.car_class for r in running.rows)):
        rows = sorted((r for r in running.rows if r.car_class == car_class),
                      key=lambda r: (r.class_position or 10**9, r.position or 10**9))
        if rows:
            out.append((car_class, rows))
    return out


def _leaders(classes: list[tuple[str, list[RunningOrderRow]]], per_class: int, render: Any,
             width: int) -> Grid:
    wide = width >= 110
    columns = [
        Column(title="Class", width=8, justify="left"),
        Column(title="Pos", width=3),
        Column(title="Car", width=5, justify="left"),
        Column(title="Driver", justify="left", min_width=10),
        *([Column(title="Team", justify="left")] if wide else []),
        Column(title="Laps", width=4),
        Column(title="Best", width=8),
        Column(title="Gap", width=8),
        Column(title="Pit", width=3, justify="center"),
    ]
    cells: list[list[Text | str]] = []
    for car_class, rows in classes:
        style = render._CLASS_STYLES.get(car_class.upper(), "bold")
        for index, row in enumerate(rows[:per_class]):
            band = Text(car_class if index == 0 else "", style=style)
            pit = render._pit(row)
            if row.in_pit and pit.plain == "IN PIT":
                pit = Text("PIT", style=pit.style)
            cells.append([
                band, str(row.class_position or ""), Text(f"#{row.car}", style="bold"),
                render._short_name(row.driver or ""), *([row.team or ""] if wide else []),
                str(row.laps), format_ms(row.best_lap_ms),
                format_gap(row.class_gap_ms, row.class_gap_laps or 0),
                pit,
            ])
    return Grid(title=Text("leaders", style="bold"), columns=columns, rows=cells)


def _poles(snap: BoardSnapshot, poles: dict[str, ClassPole],
           render: Any) -> tuple[list[Text], list[Text | None]]:
    kind = snap.meta.session_kind.value if snap.meta is not None else ""
    title = "class poles" if kind != "race" else "class fastest laps"
    lines = [Text(title, style="bold magenta", no_wrap=True)]
    corrections: list[Text | None] = []
    if not poles:
        lines.append(Text("  waiting for the class poles…", style="dim", no_wrap=True))
        return lines, corrections
    for car_class in render._class_order(snap, poles):
        pole = poles.get(car_class)
        if pole is None:
            continue
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{car_class:<9}", style=render._CLASS_STYLES.get(car_class.upper(), "bold"))
        if pole.car is None:
            line.append("no time yet", style="dim")
        else:
            line.append(f"#{pole.car:<4}", style="bold")
            line.append(f" {format_ms(pole.lap_time_ms)}", style=render.MARKER_STYLES["class-best"])
            lap = f" lap {pole.lap}" if pole.lap is not None else ""
            line.append(f"  {pole.driver or ''}{lap}")
        lines.append(line)
        fixes = render._corrections(pole.history)
        corrections.append(Text(f"  {fixes[-1]}", style="dim italic", no_wrap=True,
                                overflow="ellipsis") if fixes else None)
    return lines, corrections


def _title(view: ChampionshipView | None) -> tuple[Text | None, Text | None]:
    if view is None or not view.clinch:
        return None, None
    cf = Text(view.counterfactuals[0], style="dim italic") if view.counterfactuals else None
    return Text(view.clinch[0], style="bold"), cf
