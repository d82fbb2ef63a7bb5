"""``lapcast replay SOURCE``: publish a session over MQTT, live, faster, paused or from any point.

The events go to ``lapcast/v1/sessions/{session}/events`` (QoS 1, seq order), each
appended to the journal first; ``meta`` and ``status`` are retained; ``control``
takes pause/resume/speed/seek; ``catchup/request`` is answered from the journal
until the engine stops (Ctrl-C, SIGTERM, or ``--exit-when-done``).

On a terminal: space pauses and resumes, + and - double and halve the speed,
right/left arrows seek 1 minute forward/back, up/down 10 minutes, q stops; a
progress line shows the session time, events published, speed and lag.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lapcast.cli.common import (
    add_broker_options,
    broker_settings,
    session_id_arg,
    source_arg,
    writable_file,
)
from simulator.errors import ControlError, LapcastError
from simulator.replay.bounds import check_batch, check_linger_ms, check_window, shown
from simulator.replay.control import parse_speed
from simulator.replay.engine import ReplayEngine, ReplaySettings, default_journal
from simulator.sources import load_source
from simulator.synth import add_synth_options, source_from_options
from simulator.timefmt import format_ms, parse_duration

__all__ = ["register"]

SEEK_SMALL_MS = 60_000
SEEK_LARGE_MS = 600_000
SLOWEST_FROM_MAX = 1024.0  # "-" at max speed goes down to this factor


def _option(name: str, parse: Callable[[str], Any], text: str) -> Any:
    """One option's value, or a ``LapcastError`` naming it (one line, exit 2)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise LapcastError(f"{name}: {exc}") from None


def _whole(name: str, check: Callable[[object], int]) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{shown(text)}: expected a whole number") from None
        return check(value)

    return parse


def _linger(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{shown(text)}: expected a number of milliseconds") from None
    return check_linger_ms(value)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="publish a session's events over MQTT in real time, faster, paused or from any point",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="an Al Kamel .csv, a scenario .toml, a journal .jsonl, synth:... "
                             "or synth (a field from --cars, --laps, --seed...)")
    add_broker_options(parser)
    add_synth_options(parser, title="synthetic field (SOURCE synth)")
    # The numbers are checked by run(), not by argparse: one line naming the option.
    parser.add_argument("--speed", default="1", metavar="FACTOR|max",
                        help="session seconds per wall second, 0.01 to 10,000,000 (default "
                             "1), or max: as fast as the broker acknowledges")
    parser.add_argument("--from", dest="start", default="0",
                        metavar="SESSION_TIME",
                        help="start at this session time, H:MM:SS[.fff] or seconds (the "
                             "events before it are published at once)")
    parser.add_argument("--session-id", metavar="ID", type=session_id_arg,
                        help="session id (topic level) instead of the source's")
    parser.add_argument("--batch", default="1", metavar="N",
                        help="pack up to N consecutive due events per message, 1 to 10,000 "
                             "(default 1)")
    parser.add_argument("--linger-ms", default="0", metavar="MS",
                        help="with --batch above 1 and a speed: once an event falls due, "
                             "wait up to MS ms (0 to 1000) for later ones to share its "
                             "message (default 0)")
    parser.add_argument("--window", default="64", metavar="N",
                        help="unacknowledged QoS 1 messages in flight at most, 1 to 65,535 "
                             "(default 64)")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json",
                        help="payload encoding of the events (default json; the journal is "
                             "always JSON)")
    parser.add_argument("--granularity", choices=("lap", "sector"), default="lap",
                        help="lap events only, or sector events too (sources that have them)")
    parser.add_argument("--journal", type=Path, metavar="PATH",
                        help="the journal (default journals/SESSION.jsonl); an existing one "
                             "of the same session gets the next epoch")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="exit once the last event is acknowledged instead of serving "
                             "catch-up until stopped")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    speed = _option("--speed", parse_speed, args.speed)
    start_ms = _option("--from", parse_duration, args.start)
    batch = _option("--batch", _whole("batch", check_batch), args.batch)
    window = _option("--window", _whole("window", check_window), args.window)
    linger_ms = _option("--linger-ms", _linger, args.linger_ms)
    source_arg(args.source)
    if args.journal is not None:
        writable_file(args.journal, what="journal (--journal)")
    broker = broker_settings(args, check_files=True)
    source = load_source(source_from_options(args.source, args), session_id=args.session_id,
                         granularity=args.granularity)
    journal = args.journal or writable_file(default_journal(source.session_id),
                                            what="journal (default; --journal)")
    settings = ReplaySettings(
        broker=broker,
        journal_path=journal,
        speed=speed,
        start_ms=start_ms,
        batch=batch,
        linger_ms=linger_ms,
        window=window,
        encoding=args.encoding,
        exit_when_done=args.exit_when_done,
    )
    engine = ReplayEngine(source, settings)
    # Pacing is to the millisecond: keep what is loaded by now out of the garbage
    # collector's full passes, which would otherwise walk it again and again.
    gc.collect()
    gc.freeze()
    interactive = sys.stdin.isatty()
    progress = sys.stderr.isatty()
    try:
        asyncio.run(_main(engine, keyboard=interactive, progress=progress))
    except asyncio.CancelledError:
        return 130
    return 0


async def _main(engine: ReplayEngine, *, keyboard: bool, progress: bool) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stops = 0

    def stop() -> None:  # first signal: stop cleanly; second: now
        nonlocal stops
        stops += 1
        if stops == 1:
            engine.stop()
        else:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    with contextlib.ExitStack() as stack:
        if keyboard:
            stack.enter_context(_keyboard(engine, stop))
        ticker = asyncio.create_task(_progress(engine, sys.stderr)) if progress else None
        try:
            await engine.run()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                sys.stderr.write("\r" + _progress_line(engine) + "\n")


def _progress_line(engine: ReplayEngine) -> str:
    status = engine.status()
    speed = status["speed"]
    speed_text = "max" if speed == "max" else f"{speed:g}x"
    return (f"{status['state']:<8} epoch {status['epoch']}  "
            f"{format_ms(status['session_time_ms'], hours=True)} / "
            f"{format_ms(status['end_ms'], hours=True)}  "
            f"{status['events_published']:,}/{status['total_events']:,} events  "
            f"speed {speed_text}  lag {status['lag_ms']:,} ms")


async def _progress(engine: ReplayEngine, out: TextIO) -> None:
    while True:
        out.write("\r" + _progress_line(engine).ljust(100)[:100])
        out.flush()
        await asyncio.sleep(0.25)


_ARROWS = {b"C": SEEK_SMALL_MS, b"D": -SEEK_SMALL_MS, b"A": SEEK_LARGE_MS, b"B": -SEEK_LARGE_MS}


def _on_key(engine: ReplayEngine, data: bytes, stop: Callable[[], None]) -> None:
    """Apply one read of keys. Refusals (a seek past the end) are ignored, as the
    control topic would answer them: nothing changes."""
    i = 0
    while i < len(data):
        key = data[i:i + 1]
        try:
            if key == b" " and engine.paused:
                engine.resume()
            elif key == b" ":
                engine.pause()
            elif key in (b"+", b"="):
                speed = engine.pacer.speed
                if speed is not None:
                    engine.set_speed(speed * 2)
            elif key in (b"-", b"_"):
                speed = engine.pacer.speed
                engine.set_speed(SLOWEST_FROM_MAX if speed is None else speed / 2)
            elif key == b"\x1b" and data[i + 1:i + 2] == b"[" and data[i + 2:i + 3] in _ARROWS:
                step = _ARROWS[data[i + 2:i + 3]]
                engine.seek(min(max(engine.pacer.session_time_ms() + step, 0), engine.end_ms))
                i += 2
            elif key in (b"q", b"Q"):
                stop()
        except ControlError:
            pass
        i += 1


@contextlib.contextmanager
def _keyboard(engine: ReplayEngine, stop: Callable[[], None]) -> Iterator[None]:
    """Keys without Enter (cbreak mode), restored on exit."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved: Any = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, lambda: _on_key(engine, os.read(fd, 64), stop))
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
