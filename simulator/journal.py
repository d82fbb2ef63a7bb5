"""The engine's journal: the durable record of every event it publishes.

Format: JSON lines, one event per line, each line byte-identical to the JSON payload
of that event (``encode(event, "json")``), in the order the engine handed the events
out. No header, nothing else: ``grep``, ``jq`` and ``lapcast fold`` read it as is.
Every epoch is recorded; a backward seek (or a new run of the engine on the same
journal) appends the next epoch, ``seq`` from 1 again. Epochs are contiguous blocks.

Write-ahead: the engine appends an event, and flushes it to the operating system,
before the MQTT message carrying it is published. So a crash of the engine's process
loses nothing a consumer may have seen, and the catch-up service (which serves from
this file) can answer for anything a consumer has seen.

fsync policy (what survives a power loss or a kernel crash):

* every append is flushed to the OS before the message is published (``flush``);
* ``fsync`` runs in the background at most ``fsync_interval_s`` (200 ms) after an
  append, so at most that much of the latest published events can be lost by a
  machine crash (consumers that saw them keep them; a replay starts a new epoch);
* ``fsync`` runs at once at a pause, a seek (so an epoch change is durable before the
  new epoch is published), the end of the session and on close.

A line cut short by a crash mid-append (no final newline) is a torn tail: readers
ignore it and the writer truncates it before appending again.

A journal that cannot be opened or written (no such folder, read-only, disk full,
I/O error) raises ``JournalError``, one line naming the path and the reason; the
engine then stops publishing (nothing goes out that the journal lacks).
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec
import structlog

from simulator.contract import Event, decode_event
from simulator.errors import ContractError, LapcastError, SourceError
from simulator.sources import Source

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_S",
    "EpochSpan",
    "JournalError",
    "JournalIndex",
    "JournalWriter",
    "load",
    "scan",
]

DEFAULT_FSYNC_INTERVAL_S = 0.2

log = structlog.get_logger()


class JournalError(LapcastError):
    """The journal cannot be opened or written; names the path and the reason."""

    def __init__(self, path: Path, doing: str, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno
        reason = exc.strerror or str(exc)
        if exc.errno is not None:
            reason += f" (errno {exc.errno})"
        super().__init__(f"journal {path}: cannot {doing}: {reason}")


class _Envelope(msgspec.Struct):
    """Just what indexing needs from a line; msgspec skips the rest of the object."""

    session_id: str
    epoch: int
    seq: int


_envelope_decoder = msgspec.json.Decoder(_Envelope)


@dataclass
class EpochSpan:
    """Where the lines of one epoch lie: ``starts[seq - 1]`` is the offset of seq's line."""

    epoch: int
    first_line: int  # 1-based line number of seq 1, for error messages
    starts: array[int] = field(default_factory=lambda: array("q"))
    end: int = 0  # offset just past the newline of the epoch's last line

    @property
    def last_seq(self) -> int:
        return len(self.starts)

    def byte_range(self, from_seq: int, to_seq: int) -> tuple[int, int]:
        """Offsets ``[start, stop)`` holding the lines ``from_seq..to_seq`` (clamped)."""
        to_seq = min(to_seq, self.last_seq)
        start = self.starts[from_seq - 1]
        stop = self.starts[to_seq] if to_seq < self.last_seq else self.end
        return start, stop


@dataclass
class JournalIndex:
    """Line offsets per epoch: enough to serve any range without keeping payloads."""

    session_id: str | None = None
    epochs: dict[int, EpochSpan] = field(default_factory=dict)
    size: int = 0  # bytes of whole lines
    lines: int = 0
    _last: EpochSpan | None = field(default=None, repr=False)

    @property
    def last_epoch(self) -> int:
        """The latest epoch journaled, 0 for an empty journal."""
        return max(self.epochs, default=0)

    def last_seq(self, epoch: int) -> int:
        span = self.epochs.get(epoch)
        return span.last_seq if span else 0

    def add(self, path: str, session_id: str, epoch: int, seq: int, offset: int,
            length: int) -> None:
        """Record one line; refuses anything that breaks the journal's order."""
        span = self._last
        if (span is not None and epoch == span.epoch and seq == len(span.starts) + 1
                and session_id == self.session_id):  # the common case, quickly
            span.starts.append(offset)
            span.end = self.size = offset + length
            self.lines += 1
            return
        line = self.lines + 1
        if self.session_id is None:
            self.session_id = session_id
        elif session_id != self.session_id:
            raise SourceError(path, f"session {session_id!r} in a journal of session "
                              f"{self.session_id!r}", line=line)
        span = self.epochs.get(epoch)
        if span is None:
            if epoch <= self.last_epoch:
                raise SourceError(path, f"epoch {epoch} after epoch {self.last_epoch}: "
                                  "epochs only grow", line=line)
            span = self.epochs[epoch] = self._last = EpochSpan(epoch=epoch, first_line=line)
        elif epoch != self.last_epoch:
            raise SourceError(path, f"epoch {epoch} resumes after epoch {self.last_epoch}",
                              line=line)
        if seq != span.last_seq + 1:
            raise SourceError(path, f"epoch {epoch}: seq {seq} after seq {span.last_seq} "
                              "(a journal is gapless)", line=line)
        span.starts.append(offset)
        span.end = offset + length
        self.size = span.end
        self.lines = line


def scan(path: str | Path) -> tuple[JournalIndex, int]:
    """Index an existing journal. Returns the index and the file's size on disk.

    A size beyond ``index.size`` is a torn tail (a line without its newline).
    Raises ``SourceError`` naming the line for anything else that is wrong.
    """
    name = str(path)
    index = JournalIndex()
    offset = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn tail: left to the caller
            try:
                env = _envelope_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise SourceError(name, f"not a journal line: {exc}",
                                  line=index.lines + 1) from exc
            index.add(name, env.session_id, env.epoch, env.seq, offset, len(raw))
            offset += len(raw)
        size = f.seek(0, os.SEEK_END)
    return index, size


def _read_lines(fd: int, start: int, stop: int) -> list[bytes]:
    data = os.pread(fd, stop - start, start)
    if len(data) != stop - start:
        raise LapcastError(f"journal shrank under us: wanted {stop - start} bytes at {start}")
    return data.split(b"\n")[:-1]


class JournalWriter:
    """Appends events, keeps the index, serves ranges (``read``) for catch-up.

    Not thread-safe, except ``fsync_now``, which only calls ``os.fsync`` and so may
    run in a worker thread while the event loop appends.
    """

    def __init__(self, path: str | Path, *, session_id: str,
                 fsync_interval_s: float = DEFAULT_FSYNC_INTERVAL_S) -> None:
        self.path = Path(path)
        self.fsync_interval_s = fsync_interval_s
        try:
            self._open(session_id)
        except OSError as exc:
            raise JournalError(self.path, "open it", exc) from None
        self.dirty = False  # appended since the last fsync

    def _open(self, session_id: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.index, size = scan(self.path)
            if self.index.session_id not in (None, session_id):
                raise LapcastError(
                    f"{self.path}: journal of session {self.index.session_id!r}, not "
                    f"{session_id!r} (use another --journal or --session-id)"
                )
            if size > self.index.size:
                log.warning("journal torn tail truncated", path=str(self.path),
                            bytes=size - self.index.size)
                os.truncate(self.path, self.index.size)
        else:
            self.index = JournalIndex()
        self.index.session_id = session_id
        # Read and append: the catch-up service reads ranges through the same descriptor.
        self._file: BinaryIO = open(self.path, "a+b")  # noqa: SIM115 - lives as long as we do
        self._fd = self._file.fileno()

    @property
    def last_epoch(self) -> int:
        return self.index.last_epoch

    def last_seq(self, epoch: int) -> int:
        return self.index.last_seq(epoch)

    def append(self, epoch: int, seq: int, line: bytes) -> None:
        """Buffer one event's JSON line (no newline in ``line``); ``flush`` sends it to the OS.

        The buffer may reach the OS here already: a write error is a ``JournalError``.
        """
        index = self.index
        assert index.session_id is not None
        index.add(str(self.path), index.session_id, epoch, seq, index.size, len(line) + 1)
        try:
            self._file.write(line)
            self._file.write(b"\n")
        except OSError as exc:
            raise JournalError(self.path, "write", exc) from None
        self.dirty = True

    def flush(self) -> None:
        """Everything appended reaches the OS, or ``JournalError``."""
        try:
            self._file.flush()
        except OSError as exc:
            raise JournalError(self.path, "write", exc) from None

    def fsync_now(self) -> None:
        """fsync what has been flushed (safe from a worker thread)."""
        self.dirty = False
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise JournalError(self.path, "fsync", exc) from None

    def sync(self) -> None:
        """Flush and fsync now (pause, seek, finish, close)."""
        self.flush()
        self.fsync_now()

    def read(self, epoch: int, from_seq: int, to_seq: int) -> list[bytes]:
        """The journal lines (no newlines) of ``epoch``, ``from_seq..to_seq`` clamped."""
        span = self.index.epochs.get(epoch)
        if span is None or from_seq > span.last_seq or to_seq < from_seq:
            return []
        self.flush()
        return _read_lines(self._fd, *span.byte_range(from_seq, to_seq))

    def close(self) -> None:
        """Sync and close; the file is closed even when the sync fails (which raises)."""
        if self._file.closed:
            return
        try:
            self.sync()
        finally:
            with contextlib.suppress(OSError):  # the data it could not write: said above
                self._file.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(path: str | Path, session_id: str | None = None) -> Source:
    """The latest epoch of a journal as a ``Source`` (what ``lapcast fold`` folds).

    ``session_id`` restamps the events with another session id.
    """
    name = str(path)
    index, size = scan(path)
    if size > index.size:
        log.warning("journal torn tail ignored", path=name, bytes=size - index.size)
    if not index.epochs:
        raise SourceError(name, "empty journal: no events")
    span = index.epochs[index.last_epoch]

    def events() -> Iterator[Event]:
        start, stop = span.byte_range(1, span.last_seq)
        with open(path, "rb") as f:
            f.seek(start)
            remaining = stop - start
            line_no = span.first_line
            for raw in f:
                if remaining <= 0:
                    break
                remaining -= len(raw)
                try:
                    event = decode_event(raw)
                except ContractError as exc:
                    raise SourceError(name, str(exc), line=line_no) from exc
                if session_id is not None and event.session_id != session_id:
                    event = msgspec.structs.replace(event, session_id=session_id)
                yield event
                line_no += 1

    return Source(name=name, session_id=session_id or index.session_id or "",
                  open_events=events, size=span.last_seq)
