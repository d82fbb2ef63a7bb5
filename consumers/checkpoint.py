"""Checkpoints: a consumer's state and the ``(epoch, seq)`` it reflects, in one file.

Written atomically (temporary file, fsync, rename, fsync of the folder), so a
``kill -9`` at any moment leaves either the previous checkpoint or the new one,
never half of one. State and position are pickled together, which is the whole
point: a state without the seq it reflects could not be resumed exactly once.

A write killed between its temporary file and the rename leaves that file
(``.NAME.checkpoint.*.tmp``) behind; ``load``, which every consumer calls once at
start, removes its own (``remove_stale_temps``) before reading.

The file is a pickle, so it is as trusted as the state folder that holds it (the
consumer's own; never load a checkpoint somebody else handed you).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from consumers.api import Consumer
from consumers.folding import Folder
from simulator.errors import LapcastError

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_path",
    "encode",
    "load",
    "remove_stale_temps",
    "save",
    "write",
]

FORMAT = 1

log = structlog.get_logger()


class CheckpointError(LapcastError):
    """A checkpoint file could not be written (names the file)."""


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """What a checkpoint holds: whose state, at which position, and the state."""

    session_id: str
    consumer: str
    epoch: int
    seq: int
    state: Any
    # Latest engine publish time (wall-clock ns) reflected, for the state stamp.
    published_at_ns: int = 0
    # Session time of the last event applied, for the state stamp.
    session_time_ms: int = 0
    # The log the state belongs to (``simulator.logid``), "" if the engine never named
    # one; None in a checkpoint written before log ids: an unknown log, which the
    # runner never resumes.
    log_id: str | None = ""

    def folder(self, consumer: Consumer[Any]) -> Folder[Any]:
        """A folder for ``consumer`` resumed at this checkpoint."""
        folder: Folder[Any] = Folder(consumer)
        folder.epoch, folder.seq, folder.state = self.epoch, self.seq, self.state
        folder.log_id = self.log_id or ""
        return folder


def checkpoint_path(state_dir: Path, session_id: str, consumer: str) -> Path:
    return state_dir / session_id / f"{consumer}.checkpoint"


def encode(checkpoint: Checkpoint, path: Path | None = None) -> bytes:
    """The bytes of a checkpoint file (``path`` only names it in errors)."""
    # The consumer is stored by name, not pickled: the runner already holds it, and
    # a consumer given as module:attr would not be found again by name.
    data = {
        "format": FORMAT,
        "session_id": checkpoint.session_id,
        "consumer": checkpoint.consumer,
        "epoch": checkpoint.epoch,
        "seq": checkpoint.seq,
        "published_at_ns": checkpoint.published_at_ns,
        "session_time_ms": checkpoint.session_time_ms,
        "log_id": checkpoint.log_id,
        "state": checkpoint.state,
    }
    try:
        return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path or 'checkpoint'}: state of {checkpoint.consumer!r} is not picklable: {exc}"
        ) from exc


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temps(state_dir: Path, consumer: str) -> list[Path]:
    """Remove the temporary files of ``consumer``'s checkpoint writes left in ``state_dir``.

    ``state_dir`` is the folder holding the checkpoint (the session's). Called at start,
    before this consumer writes anything: a temporary file there is from a write that
    never reached its rename (a kill -9 mid-checkpoint). Returns what was removed.
    """
    prefix = _temp_prefix(Path(f"{consumer}.checkpoint"))
    removed: list[Path] = []
    try:
        entries = list(os.scandir(state_dir))
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise CheckpointError(f"{state_dir}: cannot list the state folder: {exc}") from exc
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and entry.is_file(
                follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CheckpointError(f"{entry.path}: cannot remove a stale checkpoint "
                                      f"temporary file: {exc}") from exc
            removed.append(Path(entry.path))
    if removed:
        log.info("stale checkpoint temporary files removed", folder=str(state_dir),
                 consumer=consumer, files=[p.name for p in removed])
    return removed


def write(path: Path, payload: bytes) -> None:
    """Replace ``path`` by ``payload`` atomically: temp file, fsync, rename, fsync the folder.

    No shared state: safe to run in a worker thread while the fold goes on.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp",
                                   dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # The rename is durable only once the folder's entry is on disk too.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint: {exc}") from exc


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (``encode`` then ``write``)."""
    write(path, encode(checkpoint, path))


def load(path: Path, *, session_id: str, consumer: str) -> Checkpoint | None:
    """The checkpoint at ``path``, or None if there is none usable.

    A file that does not unpickle, or belongs to another session or consumer, is
    set aside (renamed ``*.unusable``) with a warning: folding again from seq 1 is
    always correct, merely slower. Stale temporary files of ``consumer``'s writes in
    the same folder are removed first.
    """
    remove_stale_temps(path.parent, consumer)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    reason: str | None = None
    try:
        data = pickle.loads(raw)
    except Exception as exc:  # a damaged file can raise anything from unpickling
        data, reason = None, f"does not unpickle ({type(exc).__name__}: {exc})"
    if reason is None:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            reason = "not a lapcast checkpoint of format 1"
        elif data.get("session_id") != session_id:
            reason = f"belongs to session {data.get('session_id')!r}, not {session_id!r}"
        elif data.get("consumer") != consumer:
            reason = f"belongs to consumer {data.get('consumer')!r}, not {consumer!r}"
        elif not all(isinstance(data.get(k), int) and data[k] >= 0 for k in ("epoch", "seq")):
            reason = "has no valid (epoch, seq)"
        elif not isinstance(data.get("log_id", ""), str | None):
            reason = "has no valid log id"
    if reason is not None:
        aside = path.with_name(path.name + ".unusable")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.warning("checkpoint ignored", path=str(path), reason=reason, moved_to=str(aside))
        return None
    assert isinstance(data, dict)
    return Checkpoint(
        session_id=session_id,
        consumer=consumer,
        epoch=data["epoch"],
        seq=data["seq"],
        state=data["state"],
        published_at_ns=int(data.get("published_at_ns", 0)),
        session_time_ms=int(data.get("session_time_ms", 0)),
        log_id=data.get("log_id"),
    )
