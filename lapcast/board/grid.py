"""A timing screen's table: fixed-width columns, drawn as styled lines of text.

``rich.table.Table`` measures and wraps every cell: about 25 ms for the 37 rows of
a WEC field, which at 8 frames a second is a fifth of a core. A timing screen needs
none of that: its figures have known widths and only the names stretch. ``Grid``
lays the columns out once per frame and draws each row as one ``Text`` line,
about ten times cheaper, with the same colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

__all__ = ["Column", "Grid"]

# Spaces between two columns.
GUTTER = 2


@dataclass(frozen=True, kw_only=True)
class Column:
    title: str
    # Cells wide; 0 makes the column share the width left over (names, teams).
    width: int = 0
    justify: Literal["left", "right", "center"] = "right"
    # A flexible column never gets narrower than this.
    min_width: int = 6


class Grid:
    """A titled table of styled cells; rows are lists of ``Text`` (or plain strings)."""

    def __init__(self, *, title: Text, columns: Sequence[Column],
                 rows: Sequence[Sequence[Text | str]], header_style: str = "bold dim") -> None:
        self.title = title
        self.columns = list(columns)
        self.rows = rows
        self.header_style = header_style

    def widths(self, max_width: int) -> list[int]:
        fixed = sum(c.width for c in self.columns) + GUTTER * (len(self.columns) - 1)
        flexible = [c for c in self.columns if not c.width]
        share, extra = divmod(max(max_width - fixed, 0), max(len(flexible), 1))
        widths = []
        for column in self.columns:
            if column.width:
                widths.append(column.width)
            else:
                widths.append(max(share + (1 if extra > 0 else 0), column.min_width))
                extra -= 1
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.widths(options.max_width)
        total = sum(widths) + GUTTER * (len(widths) - 1)
        lines = [self.title.copy(),
                 self._line([Text(c.title, style=self.header_style) for c in self.columns],
                            widths),
                 Text("─" * total, style="dim")]
        lines.extend(self._line(row, widths) for row in self.rows)
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "crop"
        yield text

    def _line(self, cells: Sequence[Text | str], widths: list[int]) -> Text:
        line = Text()
        for index, (cell, column, width) in enumerate(zip(cells, self.columns, widths,
                                                          strict=True)):
            if index:
                line.append(" " * GUTTER)
            fitted = cell.copy() if isinstance(cell, Text) else Text(cell)
            fitted.truncate(width, overflow="ellipsis")
            fitted.align(column.justify, width)
            line.append_text(fitted)
        return line
