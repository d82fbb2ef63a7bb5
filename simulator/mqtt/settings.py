"""How every lapcast command reaches the broker: one URL, options, environment.

``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS), with credentials from the URL,
the options, or ``LAPCAST_MQTT_USERNAME`` / ``LAPCAST_MQTT_PASSWORD`` /
``LAPCAST_MQTT_CA_FILE``. Credentials are never logged: ``describe()`` masks them.
All clients speak MQTT v5, so a refused publish comes back with a reason code.
``BrokerSettings.client()`` builds a ``CheckedClient`` (``client.py``), whose
refusals are errors.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog

from simulator.errors import LapcastError

if TYPE_CHECKING:
    from simulator.mqtt.client import CheckedClient

__all__ = [
    "ENV_CA_FILE",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "NO_DELAY",
    "BrokerSettings",
    "parse_broker_url",
]

ENV_USERNAME = "LAPCAST_MQTT_USERNAME"
ENV_PASSWORD = "LAPCAST_MQTT_PASSWORD"
ENV_CA_FILE = "LAPCAST_MQTT_CA_FILE"


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def __repr__(self) -> str:  # never show the password
        return f"BrokerSettings({self.describe()})"

    def describe(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"

    def with_credentials(self, username: str | None, password: str | None) -> BrokerSettings:
        return replace(self, username=username or self.username,
                       password=password or self.password)

    def tls_context(self) -> ssl.SSLContext:
        """Verify the broker against ``ca_file`` (or the system's CAs), TLS 1.2 at least."""
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise LapcastError(f"CA file {self.ca_file}: not found (--ca-file / ${ENV_CA_FILE})")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise LapcastError(f"CA file {self.ca_file}: not a PEM certificate ({exc})") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def client_kwargs(self, *, identifier: str | None = None, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client`` (MQTT v5, TLS when asked).

        They hold the password: never log them; log ``describe()``.
        """
        if not self.tls and self.username and not _is_loopback(self.host):
            structlog.get_logger().warning(
                "credentials sent in clear: use mqtts://", broker=self.describe()
            )
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "identifier": identifier,
            "username": self.username,
            "password": self.password,
            # Nagle's algorithm holds a small write while an earlier one is unacknowledged,
            # and Linux delays that ACK up to 40 ms: a state, its changes and a health
            # message written in a row would wait for it whenever the link is quiet.
            "socket_options": NO_DELAY,
        }
        if self.tls:
            kwargs["tls_context"] = self.tls_context()
        kwargs.update(extra)
        return kwargs

    def client(self, *, identifier: str | None = None, **extra: Any) -> CheckedClient:
        """A connected-on-``async with`` client whose refusals raise ``BrokerError``."""
        from simulator.mqtt.client import CheckedClient  # here: client.py imports this module

        return CheckedClient(broker=self.describe(),
                             **self.client_kwargs(identifier=identifier, **extra))


# TCP_NODELAY on every client socket (aiomqtt's socket_options): see client_kwargs.
NO_DELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_broker_url(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    environ: dict[str, str] | None = None,
) -> BrokerSettings:
    """``mqtt[s]://[user[:password]@]host[:port]`` plus options and environment.

    Precedence: options, then the URL, then the environment.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    # Never echo the URL itself: it may carry a password.
    shown = _mask_url(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise LapcastError(
            f"broker URL {shown!r}: scheme must be mqtt:// or mqtts://, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise LapcastError(f"broker URL {shown!r}: no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise LapcastError(f"broker URL {shown!r}: bad port") from exc
    if ca_file and not tls:
        # A CA file only makes sense with TLS; a plain URL here is most likely a slip
        # that would send the password in clear.
        raise LapcastError(f"--ca-file given for the plain URL {shown!r}: use mqtts://")
    settings = BrokerSettings(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=username or (unquote(parts.username) if parts.username else None)
        or env.get(ENV_USERNAME),
        password=password or (unquote(parts.password) if parts.password else None)
        or env.get(ENV_PASSWORD),
        ca_file=(ca_file or env.get(ENV_CA_FILE)) if tls else None,
    )
    if settings.password and not settings.username:
        raise LapcastError(f"a password without a username for {settings.describe()}: "
                           f"give --username or ${ENV_USERNAME}")
    return settings


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
