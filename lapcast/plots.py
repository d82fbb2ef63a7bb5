"""Gap and lap charts drawn offline (``lapcast fold --chart``), with matplotlib.

The same charts as the web page, from the same ``lap-chart`` fold: the gap chart is
each car's gap to a reference car lap by lap (the reference's class; ahead above),
the lap chart the positions by lap (overall, coloured by class). matplotlib is an
optional extra (``pip install 'lapcast[plots]'``); nothing else imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from simulator.errors import LapcastError

__all__ = ["ChartKind", "draw_chart"]

ChartKind = Literal["gap", "laps"]
Cells = Sequence[Sequence[int | None]]
_CLASS_COLOURS = {"HYPERCAR": "#e10600", "LMP2": "#2f6fe4", "LMGT3": "#1fa34a",
                  "LMGTE AM": "#f08a24", "GTE AM": "#f08a24", "LMGTE": "#f08a24"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise LapcastError("charts need matplotlib: pip install 'lapcast[plots]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def draw_chart(kind: ChartKind, *, laps: Mapping[str, Cells], classes: Mapping[str, str],
               leader: str | None, reference: str | None, out: Path, title: str) -> int:
    """Draw the chart into ``out`` (.svg or .png); the number of lines drawn."""
    if out.suffix.lower() not in (".svg", ".png"):
        raise LapcastError(f"--out {out}: a chart is written as .svg or .png")
    if reference is not None and reference not in laps:
        known = ", ".join(sorted(laps, key=lambda c: (len(c), c))) or "none"
        raise LapcastError(f"--reference {reference}: no car {reference!r} (cars: {known})")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 7), dpi=110)
    lines = (_gap(ax, laps, classes, reference or leader) if kind == "gap"
             else _laps(ax, laps, classes))
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel("lap")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise LapcastError(f"--out {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return lines


def _gap(ax: Any, laps: Mapping[str, Cells], classes: Mapping[str, str],
         reference: str | None) -> int:
    if reference is None or reference not in laps:
        raise LapcastError("no reference car for the gap chart (no laps?)")
    ref = {cell[0]: cell[3] for cell in laps[reference] if cell[3] is not None}
    car_class = classes.get(reference, "")
    drawn = 0
    spread: list[float] = []
    for car, cells in laps.items():
        if classes.get(car, "") != car_class:
            continue
        points = [(cell[0], (cell[3] - ref[cell[0]]) / 1000) for cell in cells
                  if cell[3] is not None and cell[0] in ref]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        spread.extend(abs(y) for y in ys)
        ax.plot(xs, ys, linewidth=2.5 if car == reference else 1.2, label=f"#{car}")
        ax.annotate(f"#{car}", (xs[-1], ys[-1]), fontsize=7, xytext=(3, 0),
                    textcoords="offset points", va="center")
        drawn += 1
    spread.sort()
    if spread:  # the pack, not the one car a lap down, sets the scale
        span = max(2.0, spread[int(len(spread) * 0.9)] * 1.15)
        ax.set_ylim(span, -span)
    ax.axhline(0, color="#666666", linewidth=0.8)
    ax.set_ylabel(f"seconds to #{reference} ({car_class}; ahead above)")
    return drawn


def _laps(ax: Any, laps: Mapping[str, Cells], classes: Mapping[str, str]) -> int:
    drawn = 0
    for car, cells in laps.items():
        points = [(cell[0], cell[1]) for cell in cells if cell[1] is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, linewidth=1.0,
                color=_CLASS_COLOURS.get(classes.get(car, "").upper(), "#888888"))
        ax.annotate(f"#{car}", (xs[-1], ys[-1]), fontsize=6, xytext=(3, 0),
                    textcoords="offset points", va="center")
        drawn += 1
    ax.invert_yaxis()
    ax.set_ylabel("position (overall)")
    return drawn
