"""Options every networked subcommand shares, defined once."""

from __future__ import annotations

import argparse

from simulator.connection import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    BrokerSettings,
    parse_broker_url,
)
from simulator.topics import validate_client_id, validate_session_id

__all__ = ["add_broker_options", "broker_settings", "client_id_arg", "session_id_arg"]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument("--broker", default=DEFAULT_BROKER, metavar="URL",
                       help=f"mqtt://HOST:PORT or mqtts://HOST:PORT (default {DEFAULT_BROKER})")
    group.add_argument("--username", help=f"MQTT username (or ${ENV_USERNAME})")
    group.add_argument("--password", help=f"MQTT password (or ${ENV_PASSWORD}, which `ps` "
                       "does not show); never logged")
    group.add_argument("--ca-file", metavar="PEM",
                       help=f"CA certificate that signed the broker's (or ${ENV_CA_FILE})")


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    return parse_broker_url(args.broker, username=args.username, password=args.password,
                            ca_file=args.ca_file)


def session_id_arg(text: str) -> str:
    """argparse type for a session id: one portable topic level (checked before connecting)."""
    try:
        return validate_session_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def client_id_arg(text: str) -> str:
    """argparse type for a client id: portable like a session id (it names a topic level)."""
    try:
        return validate_client_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
