"""``lapcast web``: the live timing page in a browser."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from lapcast.cli.common import add_broker_options, broker_settings, session_id_arg
from simulator.errors import LapcastError

__all__ = ["register"]


def port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free one), not {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "web", help="the live timing page in a browser",
        description="Serve a session's live timing page: per-class tables, class poles, "
        "the championship, gap and lap charts, the engine and the consumers. It reads the "
        "retained projection states (never the events) and prints the page's URL on one "
        "line. The browser never gets the broker's address or credentials.",
    )
    add_broker_options(parser)
    parser.add_argument("--session", required=True, type=session_id_arg, metavar="ID",
                        help="the session to show")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_arg, default=8080,
                        help="port to listen on (default 8080; 0: any free port)")
    parser.add_argument("--control", action="store_true",
                        help="let the page pause, resume, change the speed and seek the "
                        "replay (with operator credentials); the URL printed carries the "
                        "token control requests need")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `lapcast --help` need not load the web stack.
    from lapcast.web import WebSettings, serve

    settings = WebSettings(session_id=args.session, host=args.host, port=args.port,
                           control=args.control)
    broker = broker_settings(args)

    def ready(url: str) -> None:
        print(url, flush=True)

    try:
        asyncio.run(serve(broker, settings, ready=ready))
    except* LapcastError as group:
        raise group.exceptions[0] from None
    print("lapcast web: stopped", file=sys.stderr)
    return 0
