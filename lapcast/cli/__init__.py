"""The ``lapcast`` command: one entry point, one module per subcommand.

Each module in ``COMMANDS`` has ``register(subparsers)``, which adds its parser
and sets ``handler`` to a function taking the parsed arguments and returning the
exit code. Errors lapcast raises on purpose, and any ``OSError`` a command lets
escape (a path that turned out unusable after the up-front checks of
``lapcast.cli.common``: a disk that filled, a folder removed meanwhile), print one
clear line naming the command and the path, and exit 2; ``-vv`` logs the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import structlog

from lapcast import __version__
from lapcast.cli.common import oserror_line
from lapcast.logs import configure_logging
from simulator.errors import LapcastError

__all__ = ["build_parser", "main"]

# Subcommand modules, in the order `lapcast --help` lists them.
COMMANDS = (
    "replay",
    "fold",
    "board",
    "web",
    "demo",
    "consume",
    "consumers",
    "synth",
    "stress",
    "schema",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lapcast", description="Event-sourced live timing simulator for motor racing."
    )
    parser.add_argument("--version", action="version", version=f"lapcast {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug); quiet by default")
    parser.add_argument("--log-json", action="store_true", help="logs as JSON lines on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lapcast.cli.{name}_cmd").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbosity=args.verbose, json=args.log_json)
    try:
        return int(args.handler(args) or 0)
    except BaseException as exc:
        error = _innermost(exc)
        if isinstance(error, KeyboardInterrupt):
            return 130
        if isinstance(error, BrokenPipeError):  # `lapcast fold ... | head`
            return 0
        if isinstance(error, LapcastError):
            return _fail(args.command, str(error))
        if isinstance(error, OSError):
            return _fail(args.command, oserror_line(error))
        raise


def _innermost(exc: BaseException) -> BaseException:
    """The first error of a task group's (nested) group; any other error as it is."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _fail(command: str, line: str) -> int:
    structlog.get_logger().debug("command failed", exc_info=True)
    print(f"lapcast {command}: {' '.join(line.splitlines())}", file=sys.stderr)
    return 2
