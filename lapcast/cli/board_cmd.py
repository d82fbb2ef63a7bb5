"""``lapcast board``: the live timing board in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from lapcast.board import BoardSettings, run_board
from lapcast.board.keys import control_keys
from lapcast.cli.common import add_broker_options, broker_settings, session_id_arg
from simulator.connection import BrokerSettings
from simulator.errors import LapcastError

__all__ = ["register"]


def positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError(f"frames per second must be in (0, 60], not {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "board", help="the live timing board in the terminal",
        description="Show a session's live timing board: per-class tables, class poles, "
        "the championship and the clock. It reads the retained projection states, so it "
        "is complete at once when started late.",
    )
    add_broker_options(parser)
    parser.add_argument("--session", required=True, type=session_id_arg, metavar="ID",
                        help="the session to show")
    parser.add_argument("--fps", type=positive_fps, default=8.0, metavar="N",
                        help="redraws per second at most (default 8)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="exit once the replay has finished and the board shows its "
                        "final state (for scripts)")
    parser.add_argument("--control", action="store_true",
                        help="take the replay's keys (with operator credentials): space "
                        "pause/resume, + and - double/halve the speed, arrows seek ±1 min "
                        "(left/right) and ±10 min (down/up), q quits")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = BoardSettings(session_id=args.session, fps=args.fps,
                             exit_when_done=args.exit_when_done)
    broker = broker_settings(args, check_files=True)
    try:
        asyncio.run(_main(broker, settings, control=args.control))
    except* LapcastError as group:  # a refusal by the broker, out of the board's task group
        raise group.exceptions[0] from None
    return 0


async def _main(broker: BrokerSettings, settings: BoardSettings, *, control: bool) -> None:
    board = asyncio.create_task(run_board(broker, settings))

    def quit_board() -> None:  # `q`: the board stops, its last frame stays on screen
        board.cancel()

    keys = (asyncio.create_task(control_keys(broker, settings.session_id, quit_board))
            if control else None)
    me = asyncio.current_task()
    try:
        await board
    except asyncio.CancelledError:
        if me is not None and me.cancelling():
            raise  # Ctrl-C: not `q`
    finally:
        if keys is not None:
            keys.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keys
