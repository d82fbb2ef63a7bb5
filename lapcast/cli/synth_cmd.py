"""``lapcast synth``: generate a synthetic session as an event log (JSON lines).

The file is in the journal's format (one event a line, each line the event's JSON
payload), so ``lapcast fold FILE`` and ``lapcast replay FILE`` take it as it is.
Without ``--out`` the log goes to stdout; with it, a progress bar shows on stderr
and the file appears whole or not at all (written aside, then renamed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from lapcast.cli.common import PathError, describe_os_error, session_id_arg, writable_file
from simulator.contract import Event, LapCompleted, encode
from simulator.synth import SynthSpec, add_synth_options, events, spec_from_options

__all__ = ["register", "write_log"]

_WRITE_BUFFER = 1 << 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate a synthetic multi-class session (JSON lines)",
        description="Generate a plausible multi-class session, deterministically from the "
                    "seed, as an event log that `lapcast fold` and `lapcast replay` read. "
                    "The model is fitted to the 2024 Bahrain 8h race (see the README).",
    )
    add_synth_options(parser)
    parser.add_argument("--out", metavar="FILE",
                        help="write the log here (.jsonl) with a progress bar; default stdout")
    parser.add_argument("--session-id", type=session_id_arg, metavar="ID",
                        help="session id (default synth-{session}-{cars}-s{seed})")
    parser.add_argument("--granularity", choices=("lap", "sector"), default="lap",
                        help="sector: also SectorCompleted events (buffers more; keep fields "
                             "small)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_options(args)
    stream = events(spec, session_id=args.session_id, granularity=args.granularity)
    if args.out is None:
        out = sys.stdout.buffer
        write_log(stream, out)
        out.flush()
        return 0
    path = writable_file(args.out, what="output (--out)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    try:
        with open(partial, "wb", buffering=_WRITE_BUFFER) as f:
            if args.no_progress:
                count = write_log(stream, f)
            else:
                count = _write_with_progress(spec, stream, f)
        os.replace(partial, path)
    except OSError as exc:  # a disk that fills, an I/O error: the write names no file
        raise PathError(path, "output (--out)",
                        f"cannot write: {describe_os_error(exc)}") from exc
    finally:
        partial.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    Console(stderr=True).print(
        f"{path}: {count:,} events in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f}/s)"
    )
    return 0


def write_log(stream: Iterator[Event], out: BinaryIO) -> int:
    """Write one JSON line per event; returns the number written."""
    count = 0
    write = out.write
    for event in stream:
        write(encode(event))
        write(b"\n")
        count += 1
    return count


def _write_with_progress(spec: SynthSpec, stream: Iterator[Event], out: BinaryIO) -> int:
    """As ``write_log``, with a bar: the leader's laps (race) or the session's minutes."""
    race = spec.session == "race"
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[events]:>12,} events"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=False,
    )
    count = 0
    write = out.write
    with progress:
        task = progress.add_task("leader's lap" if race else "minute", total=None, events=0)
        total_set = False
        reached = 0
        for event in stream:
            write(encode(event))
            write(b"\n")
            count += 1
            if not total_set:
                # SessionStarted comes first: it knows the distance or the duration.
                total = spec.laps if race else (getattr(event, "duration_ms", 0) or 0) // 60_000
                progress.update(task, total=total)
                total_set = True
            if count & 0x3FF == 0 or not isinstance(event, LapCompleted):
                if race:
                    if isinstance(event, LapCompleted):
                        reached = max(reached, event.lap)
                else:
                    reached = event.session_time_ms // 60_000
                progress.update(task, completed=reached, events=count)
            elif race and isinstance(event, LapCompleted) and event.lap > reached:
                reached = event.lap
        progress.update(task, completed=progress.tasks[0].total, events=count)
    return count
