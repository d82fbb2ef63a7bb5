"""``lapcast demo``: broker, replay engine, consumers and the live board (and page), at once."""

from __future__ import annotations

import argparse
from typing import Any

from lapcast.cli.board_cmd import positive_fps
from lapcast.cli.common import readable_file
from lapcast.cli.web_cmd import port_arg
from lapcast.demo import DEFAULT_SOURCE, DemoSettings, resolve_source, run_demo
from simulator.connection import parse_broker_url
from simulator.replay.control import parse_speed

__all__ = ["register"]


def speed(text: str) -> str:
    """Checked as ``lapcast replay --speed`` checks it, then passed on as given."""
    try:
        parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="replay a session live: broker, engine, consumers and the board",
        description="Start Mosquitto on a free loopback port, the replay engine, the four "
        "built-in consumers (each its own process) and the live board in the foreground. Ctrl-C "
        "stops everything and leaves no process behind.",
    )
    parser.add_argument("--speed", type=speed, default="1", metavar="FACTOR",
                        help="session seconds per wall second, or max (default 1: real time)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, metavar="PATH",
                        help=f"what to replay: a scenario .toml or an Al Kamel .csv "
                        f"(default {DEFAULT_SOURCE})")
    parser.add_argument("--broker", metavar="URL",
                        help="use this broker instead of starting a private Mosquitto "
                        "(credentials in the URL or LAPCAST_MQTT_* variables)")
    parser.add_argument("--fps", type=positive_fps, default=8.0, metavar="N",
                        help="board redraws per second at most (default 8)")
    parser.add_argument("--web", action="store_true",
                        help="also serve the live timing page (lapcast web, with the replay's "
                        "controls) and print its URL")
    parser.add_argument("--web-port", type=port_arg, default=0, metavar="PORT",
                        help="the page's port with --web (default: any free port)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="stop everything and exit once the replay has finished and the "
                        "board shows its final state (default: keep showing it until Ctrl-C)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source = readable_file(resolve_source(args.source), what="source (--source)")
    if args.broker:
        parse_broker_url(args.broker)  # a bad URL said before anything starts
    settings = DemoSettings(source=source, speed=args.speed,
                            broker=args.broker, fps=args.fps,
                            exit_when_done=args.exit_when_done, web=args.web,
                            web_port=args.web_port)
    return run_demo(settings)
