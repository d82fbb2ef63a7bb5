"""Options every networked subcommand shares, and the checks of paths, defined once.

Every path a command reads or writes is checked before anything connects or runs
(``readable_file``, ``writable_file``, ``writable_dir``): a path that cannot be used
is a ``PathError`` naming it and saying what is wrong, which ``lapcast``'s ``main()``
prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from simulator.connection import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    BrokerSettings,
    parse_broker_url,
)
from simulator.errors import LapcastError
from simulator.mqtt.settings import ENV_BROKER, ENV_MQTT_VERSION, MQTT_VERSIONS
from simulator.names import validate_client_id, validate_session_id

__all__ = [
    "PathError",
    "add_broker_options",
    "broker_settings",
    "broker_url",
    "client_id_arg",
    "describe_os_error",
    "oserror_line",
    "readable_file",
    "session_id_arg",
    "source_arg",
    "writable_dir",
    "writable_file",
]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker")
    group.add_argument("--broker", default=None, metavar="URL[,URL...]",
                       help="mqtt://HOST:PORT or mqtts://HOST:PORT, or a comma-separated list "
                       "of a cluster's nodes, rotated through on reconnect "
                       f"(or ${ENV_BROKER}; default {DEFAULT_BROKER})")
    group.add_argument("--mqtt-version", choices=MQTT_VERSIONS, default=None,
                       help=f"MQTT protocol (or ${ENV_MQTT_VERSION}; default auto: v5, and "
                       "3.1.1 when the broker refuses v5)")
    group.add_argument("--username", help=f"MQTT username (or ${ENV_USERNAME})")
    group.add_argument("--password", help=f"MQTT password (or ${ENV_PASSWORD}, which `ps` "
                       "does not show); never logged")
    group.add_argument("--ca-file", metavar="PEM",
                       help=f"CA certificate that signed the broker's (or ${ENV_CA_FILE})")


def broker_settings(args: argparse.Namespace, *, check_files: bool = False) -> BrokerSettings:
    """The broker options as settings; ``check_files``: the CA file must be readable now
    (a command checks it before it starts anything, see ``readable_file``)."""
    settings = parse_broker_url(broker_url(args), username=args.username,
                                password=args.password, ca_file=args.ca_file,
                                mqtt_version=getattr(args, "mqtt_version", None))
    if check_files and settings.ca_file:
        readable_file(settings.ca_file, what=f"CA file (--ca-file / ${ENV_CA_FILE})")
    return settings


def broker_url(args: argparse.Namespace) -> str:
    """``--broker``, else ``$LAPCAST_MQTT_BROKER``, else the local default."""
    return str(getattr(args, "broker", None) or os.environ.get(ENV_BROKER) or DEFAULT_BROKER)


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


# --- paths ------------------------------------------------------------------------------

class PathError(LapcastError):
    """A path given to a command cannot be read or written; names the path and why."""

    def __init__(self, path: str | os.PathLike[str], what: str, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{what} {self.path}: {problem}")


def describe_os_error(exc: OSError) -> str:
    """``exc`` as its reason alone ("Read-only file system"), the path left to the caller."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


def readable_file(path: str | os.PathLike[str], *, what: str = "file",
                  missing_ok: bool = False) -> Path:
    """``path`` if it is a regular file that can be opened for reading.

    ``missing_ok``: a file that does not exist yet passes (another process writes
    it later), unless the path leads through a file.
    """
    p = Path(path)
    if not p.exists() and missing_ok:
        ancestor = _existing_ancestor(p)
        if not ancestor.is_dir():
            raise PathError(path, what, f"{ancestor} is a file, not a folder")
        return p
    if not p.exists():
        ancestor = _existing_ancestor(p)
        if not ancestor.is_dir():
            raise PathError(path, what, f"{ancestor} is a file, not a folder")
        raise PathError(path, what, "no such file" if ancestor == p.parent
                        else f"no such file (no folder {p.parent})")
    if p.is_dir():
        raise PathError(path, what, "is a directory, not a file")
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise PathError(path, what, f"cannot read: {describe_os_error(exc)}") from exc
    return p


def _existing_ancestor(p: Path) -> Path:
    for parent in p.parents:
        if parent.exists():
            return parent
    return Path(".")


def _check_creatable(p: Path, what: str) -> None:
    """``p`` does not exist: its nearest existing ancestor must be a writable folder."""
    ancestor = _existing_ancestor(p)
    if not ancestor.is_dir():
        raise PathError(p, what, f"{ancestor} is a file, not a folder")
    try:
        # A real probe: access(2) says nothing of a full disk, and root passes it anyway.
        with tempfile.TemporaryFile(dir=ancestor, prefix=".lapcast-probe-"):
            pass
    except OSError as exc:
        raise PathError(p, what, f"cannot create it in {ancestor}: "
                        f"{describe_os_error(exc)}") from exc


def writable_file(path: str | os.PathLike[str], *, what: str = "file") -> Path:
    """``path`` if it is a file that can be appended to, or one that can be created.

    Nothing is created or changed: an existing file is opened for appending and closed,
    a new one is probed with a temporary file in the folder that would hold it.
    """
    p = Path(path)
    if p.is_dir():
        raise PathError(path, what, "is a directory, not a file")
    if p.exists():
        try:
            with p.open("ab"):
                pass
        except OSError as exc:
            raise PathError(path, what, f"cannot write: {describe_os_error(exc)}") from exc
        return p
    _check_creatable(p, what)
    return p


def source_arg(spec: str) -> str:
    """A SOURCE argument checked up front: ``synth...`` as it is, else a readable file."""
    if spec != "synth" and not spec.startswith("synth:"):
        readable_file(spec, what="source")
    return spec


def writable_dir(path: str | os.PathLike[str], *, what: str = "folder") -> Path:
    """``path`` if it is a folder files can be created in, or one that can be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PathError(path, what, "is a file, not a folder")
    if not p.exists():
        _check_creatable(p, what)
        return p
    try:
        with tempfile.TemporaryFile(dir=p, prefix=".lapcast-probe-"):
            pass
    except OSError as exc:
        raise PathError(path, what, f"cannot write in it: {describe_os_error(exc)}") from exc
    return p


def oserror_line(exc: OSError) -> str:
    """One line for an ``OSError`` that escaped a command: the path(s) and the reason."""
    reason = describe_os_error(exc)
    if exc.filename is None:
        return reason
    names = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        names += f" -> {os.fsdecode(exc.filename2)}"
    return f"{names}: {reason}"
