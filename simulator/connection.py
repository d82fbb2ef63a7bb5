"""How every lapcast command reaches the broker: one URL, options, environment.

``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS), with credentials from the URL,
the options, or ``LAPCAST_MQTT_USERNAME`` / ``LAPCAST_MQTT_PASSWORD`` /
``LAPCAST_MQTT_CA_FILE``. Credentials are never logged: ``describe()`` masks them.
All clients speak MQTT v5, so a refused publish comes back with a reason code.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from simulator.errors import LapcastError

__all__ = ["BrokerSettings", "parse_broker_url"]

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
        return f"{scheme}://{user}{self.host}:{self.port}"

    def with_credentials(self, username: str | None, password: str | None) -> BrokerSettings:
        return replace(self, username=username or self.username,
                       password=password or self.password)

    def client_kwargs(self, *, identifier: str | None = None, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client`` (MQTT v5, TLS when asked)."""
        import aiomqtt

        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "identifier": identifier,
            "username": self.username,
            "password": self.password,
        }
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            kwargs["tls_context"] = context
        kwargs.update(extra)
        return kwargs


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
    if parts.scheme not in ("mqtt", "mqtts"):
        raise LapcastError(
            f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise LapcastError(f"broker URL {url!r}: no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise LapcastError(f"broker URL {url!r}: bad port") from exc
    return BrokerSettings(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=username or (unquote(parts.username) if parts.username else None)
        or env.get(ENV_USERNAME),
        password=password or (unquote(parts.password) if parts.password else None)
        or env.get(ENV_PASSWORD),
        ca_file=ca_file or env.get(ENV_CA_FILE),
    )
