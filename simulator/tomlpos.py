"""Where a TOML value sits in its text: line and column of every key, value and table.

``tomllib`` gives values but no positions, and its positions only come with syntax
errors. A scenario's semantic errors (an unknown car, a bad lap time) must still
name the line and column, so this small scanner walks text that ``tomllib`` has
already accepted and records where each path starts. It never computes values and
assumes valid TOML (run ``tomllib.loads`` first).

Paths are tuples of keys and array indices, as the loaded data is addressed:
``("cars", 3, "laps", 5, "time")`` is the ``time`` of the sixth lap of the fourth
``[[cars]]`` table. Lines and columns count from 1, like ``tomllib``'s errors.
"""

from __future__ import annotations

import tomllib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Path", "Positions", "locate"]

Path = tuple[str | int, ...]

_BARE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END: Final = frozenset(",]}#\n\r")


@dataclass(slots=True)
class Positions:
    """Offsets of the keys, values and table headers of one TOML text."""

    text: str
    keys: dict[Path, int] = field(default_factory=dict)
    values: dict[Path, int] = field(default_factory=dict)
    tables: dict[Path, int] = field(default_factory=dict)
    _line_starts: list[int] = field(default_factory=list)

    def line_column(self, offset: int) -> tuple[int, int]:
        if not self._line_starts:
            self._line_starts = [0] + [i + 1 for i, c in enumerate(self.text) if c == "\n"]
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def find(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line and column of ``path``'s value (or its key with ``key``).

        A path that is not in the text (a missing key) falls back to its nearest
        ancestor that is: the table that should have held it.
        """
        probe = path
        while True:
            for where in ((self.keys, self.values) if key else (self.values, self.keys)):
                if probe in where:
                    return self.line_column(where[probe])
            if probe in self.tables:
                return self.line_column(self.tables[probe])
            if not probe:
                return 1, 1
            probe = probe[:-1]


def locate(text: str) -> Positions:
    """The positions of everything in ``text`` (valid TOML)."""
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.out = Positions(text)
        # Arrays of tables ([[x]]) seen so far: resolved path -> number of elements.
        self.arrays: dict[Path, int] = {}

    # --- helpers ---------------------------------------------------------------------

    def _peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def _skip_blank(self, *, newlines: bool) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#" and newlines:
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def _skip_line_rest(self) -> None:
        n = len(self.s)
        while self.i < n and self.s[self.i] != "\n":
            self.i += 1

    # --- the document ----------------------------------------------------------------

    def run(self) -> Positions:
        current: Path = ()
        self.out.tables[()] = 0
        n = len(self.s)
        while True:
            self._skip_blank(newlines=True)
            if self.i >= n:
                return self.out
            start = self.i
            if self._peek(2) == "[[":
                self.i += 2
                names = self._key_parts()
                self.i += 2  # ]]
                parent = (*self._resolve(names[:-1]), names[-1])
                index = self.arrays.get(parent, 0)
                self.arrays[parent] = index + 1
                current = (*parent, index)
                self.out.tables.setdefault(parent, start)
                self.out.tables[current] = start
            elif self._peek() == "[":
                self.i += 1
                names = self._key_parts()
                self.i += 1  # ]
                current = self._resolve(names)
                self.out.tables[current] = start
            else:
                self._key_value(current)
            self._skip_line_rest()

    def _resolve(self, names: list[str]) -> Path:
        """A header's names as a data path: arrays of tables stand for their last element."""
        path: Path = ()
        for name in names:
            path = (*path, name)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def _key_value(self, table: Path) -> None:
        start = self.i
        names = self._key_parts()
        path = (*table, *names)
        self.out.keys[path] = start
        self._skip_blank(newlines=False)
        self.i += 1  # =
        self._skip_blank(newlines=False)
        self._value(path)

    def _key_parts(self) -> list[str]:
        names: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c in ("'", '"'):
                start = self.i
                self._string()
                names.append(tomllib.loads(f"k = {self.s[start:self.i]}")["k"])
            else:
                start = self.i
                while self.i < len(self.s) and self.s[self.i] in _BARE:
                    self.i += 1
                names.append(self.s[start:self.i])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return names
            self.i += 1

    # --- values ----------------------------------------------------------------------

    def _value(self, path: Path) -> None:
        self.out.values[path] = self.i
        c = self._peek()
        if c in ("'", '"'):
            self._string()
        elif c == "[":
            self._array(path)
        elif c == "{":
            self._inline_table(path)
        else:
            n = len(self.s)
            while self.i < n and self.s[self.i] not in _SCALAR_END:
                self.i += 1

    def _array(self, path: Path) -> None:
        self.i += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self._peek() == "]":
                self.i += 1
                return
            self._value((*path, index))
            index += 1
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self.i += 1

    def _inline_table(self, path: Path) -> None:
        self.i += 1
        while True:
            self._skip_blank(newlines=True)
            if self._peek() == "}":
                self.i += 1
                return
            self._key_value(path)
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self.i += 1

    def _string(self) -> None:
        s = self.s
        quote = s[self.i]
        if self._peek(3) == quote * 3:
            self.i += 3
            while s[self.i:self.i + 3] != quote * 3:
                self.i += 2 if quote == '"' and s[self.i] == "\\" else 1
            self.i += 3
            while self._peek() == quote:  # up to two quotes may end the content
                self.i += 1
            return
        self.i += 1
        while s[self.i] != quote:
            self.i += 2 if quote == '"' and s[self.i] == "\\" else 1
        self.i += 1
