"""One small error tree: everything lapcast raises on purpose is a ``LapcastError``.

Messages name the file, line, field or topic and say what is wrong, so a user
can fix the input without reading the code.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ContractError",
    "ControlError",
    "LapcastError",
    "SequenceGap",
    "SourceError",
]


class LapcastError(Exception):
    """Base of every error lapcast raises on purpose."""


class ContractError(LapcastError):
    """A payload does not fit the wire contract (names the field, e.g. ``$.lap``)."""


class SourceError(LapcastError):
    """A source file (CSV, scenario, journal) is wrong; names the file, line and column."""

    def __init__(self, path: str, message: str, *, line: int | None = None,
                 column: int | None = None) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = message
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class SequenceGap(LapcastError):
    """An event arrived whose seq is beyond the next expected one."""

    def __init__(self, epoch: int, expected: int, got: int) -> None:
        self.epoch = epoch
        self.expected = expected
        self.got = got
        super().__init__(f"epoch {epoch}: expected seq {expected}, got {got}")


class ControlError(LapcastError):
    """A control command was refused (the reason is published on the status topic)."""


class BrokerError(LapcastError):
    """The broker refused us: connection, publish or subscribe (names the topic)."""
