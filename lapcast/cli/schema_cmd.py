"""``lapcast schema``: the whole MQTT API as an AsyncAPI 3.0 document (JSON).

Generated from the contract (``simulator.asyncapi``), so it never drifts from what
lapcast puts on the wire; the built-in projections' states are typed by their views.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from consumers.projections import view_types
from lapcast.cli.common import writable_file
from simulator.asyncapi import asyncapi_document
from simulator.errors import LapcastError

__all__ = ["register", "render"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the MQTT API as an AsyncAPI 3.0 document",
        description="Print every topic lapcast publishes or reads (its address and "
                    "parameters, QoS, whether retained, the JSON Schema of each message) "
                    "as one AsyncAPI 3.0 document, generated from the wire contract.",
    )
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="write the document to FILE instead of stdout")
    parser.set_defaults(handler=run)


def render() -> str:
    """The document as printed: indented JSON, one trailing newline."""
    return json.dumps(asyncapi_document(view_types()), indent=2, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        writable_file(args.out, what="output (--out)")
    text = render()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LapcastError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    return 0
