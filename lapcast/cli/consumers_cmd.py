"""``lapcast consumers``: the consumers installed, built-in and plug-ins alike."""

from __future__ import annotations

import argparse
import json

from consumers.registry import available, load_consumer
from simulator.errors import LapcastError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "consumers",
        help="list the consumers `lapcast consume` can run",
        description="List every consumer registered under the entry-point group "
                    "lapcast.consumers: its name, where it lives, and what it computes.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON array on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name, target in available().items():
        try:
            description = load_consumer(name).description
        except (LapcastError, ImportError, AttributeError) as exc:
            # A broken plug-in is listed with its error rather than hiding the others.
            description = f"cannot load: {exc}"
        rows.append({"name": name, "entry_point": target, "description": description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['description']}  ({row['entry_point']})")
    return 0
