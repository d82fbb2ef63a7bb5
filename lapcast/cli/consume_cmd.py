"""``lapcast consume NAME``: run one consumer live, as its own process.

It folds the session's event stream with the very fold ``lapcast fold`` uses,
publishes the state (retained) and its health, checkpoints, and survives
restarts. SIGTERM or SIGINT stop it cleanly: last publication, checkpoint, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from consumers.registry import load_consumer
from consumers.runner import ConsumerRunner, RunnerSettings, default_state_dir
from lapcast.cli.common import (
    add_broker_options,
    broker_settings,
    client_id_arg,
    readable_file,
    session_id_arg,
    writable_dir,
)
from simulator.errors import LapcastError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "consume",
        help="run one consumer (projection) live over MQTT",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME",
                        help="running-order, class-poles, championship, any consumer installed "
                             "under the entry-point group lapcast.consumers (see `lapcast "
                             "consumers`), or module:attr")
    add_broker_options(parser)
    parser.add_argument("--session", required=True, type=session_id_arg, metavar="ID",
                        help="session id to follow")
    parser.add_argument("--journal", type=Path, metavar="PATH",
                        help="catch up from the engine's journal file instead of its "
                             "catch-up service")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"where checkpoints live (default {default_state_dir()})")
    parser.add_argument("--checkpoint-events", type=int, default=1000, metavar="K",
                        help="checkpoint after K events applied (default 1000)")
    parser.add_argument("--checkpoint-ms", type=int, default=1000, metavar="T",
                        help="checkpoint at least every T ms while events arrive (default 1000)")
    parser.add_argument("--publish-ms", type=int, default=100, metavar="N",
                        help="publish the state at most every N ms (default 100)")
    parser.add_argument("--client-id", metavar="ID", type=client_id_arg,
                        help="MQTT client id, stable across restarts "
                             "(default lapcast-NAME-SESSION)")
    parser.add_argument("--max-payload-bytes", type=int, default=1024 * 1024, metavar="B",
                        help="refuse events messages bigger than B bytes (default 1 MiB); "
                             "one opening with the engine's SessionStarted may have up to "
                             "16 MiB")
    parser.add_argument("--session-expiry", type=int, default=3600, metavar="S",
                        help="broker keeps the session (and queues events) S seconds "
                             "after a disconnection (default 3600)")
    parser.add_argument("--catchup-timeout", type=float, default=5.0, metavar="S",
                        help="give up on a catch-up answer after S seconds of silence "
                             "(default 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    state_dir = writable_dir(args.state_dir or default_state_dir(),
                             what="state folder (--state-dir)")
    if args.journal is not None:
        # It may not exist yet: the engine writes it, perhaps started after us.
        readable_file(args.journal, what="journal (--journal)", missing_ok=True)
    broker = broker_settings(args, check_files=True)
    try:
        consumer = load_consumer(args.name)
    except (ImportError, AttributeError, SyntaxError) as exc:  # module:attr, a plug-in
        raise LapcastError(f"consumer {args.name!r}: cannot load it: "
                           f"{type(exc).__name__}: {exc}") from exc
    settings = RunnerSettings(
        session_id=args.session,
        client_id=args.client_id,
        state_dir=state_dir,
        journal=args.journal,
        checkpoint_events=args.checkpoint_events,
        checkpoint_ms=args.checkpoint_ms,
        publish_ms=args.publish_ms,
        max_payload_bytes=args.max_payload_bytes,
        session_expiry_s=args.session_expiry,
        catchup_timeout_s=args.catchup_timeout,
    )
    runner = ConsumerRunner(consumer, broker, settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()

    asyncio.run(main())
    return 0
