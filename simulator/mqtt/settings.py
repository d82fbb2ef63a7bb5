"""How every lapcast command reaches the broker: URLs, options, environment.

``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS), or a comma-separated list of such
URLs, the nodes of a cluster (``--broker`` or ``LAPCAST_MQTT_BROKER``), with
credentials from the URL, the options, or ``LAPCAST_MQTT_USERNAME`` /
``LAPCAST_MQTT_PASSWORD`` / ``LAPCAST_MQTT_CA_FILE``. Credentials are never logged:
``describe()`` masks them.

Several endpoints: a connection goes to the current one; after a failed or lost
connection the next ``client()`` goes to the next one (``Route``, shared by every
client built from the same settings), so the one reconnect loop (``reconnect.py``)
rotates through the cluster with its usual backoff.

The protocol (``--mqtt-version`` / ``LAPCAST_MQTT_VERSION``): ``5`` (what Mosquitto
gets by default: a refused publish comes back with a reason code), ``3.1.1`` (the
clustered brokers: NATS, RabbitMQ), or ``auto``: v5 first, and 3.1.1 from then on
when the broker refuses v5 (CONNACK 0x84) or closes the connection on a v5 CONNECT
(``client.py``). Callers describe a connection in v5 terms (``clean_start=False``, a
session expiry); ``v311_kwargs`` says the same in 3.1.1 (``clean_session=False``).
``BrokerSettings.client()`` builds a ``CheckedClient`` (``client.py``), whose
refusals are errors.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog

from simulator.errors import LapcastError

if TYPE_CHECKING:
    from simulator.mqtt.client import CheckedClient

__all__ = [
    "ENV_BROKER",
    "ENV_CA_FILE",
    "ENV_MQTT_VERSION",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "MQTT_VERSIONS",
    "NO_DELAY",
    "BrokerSettings",
    "MqttVersion",
    "Route",
    "parse_broker_url",
    "v311_kwargs",
]

ENV_BROKER = "LAPCAST_MQTT_BROKER"
ENV_USERNAME = "LAPCAST_MQTT_USERNAME"
ENV_PASSWORD = "LAPCAST_MQTT_PASSWORD"
ENV_CA_FILE = "LAPCAST_MQTT_CA_FILE"
ENV_MQTT_VERSION = "LAPCAST_MQTT_VERSION"

MqttVersion = Literal["auto", "5", "3.1.1"]
MQTT_VERSIONS: Final[tuple[MqttVersion, ...]] = ("auto", "5", "3.1.1")

log = structlog.get_logger()


@dataclass(eq=False)
class Route:
    """Where the next connection goes, shared by every client of one ``BrokerSettings``.

    ``index`` is the endpoint in use; a failed or lost connection sets ``failed`` and the
    next client goes to the next endpoint. ``protocol`` is what ``auto`` has chosen
    (None until a connection has told).
    """

    index: int = 0
    failed: bool = False
    protocol: Literal["5", "3.1.1"] | None = None
    # Endpoint changes so far (a test and the logs read it).
    rotations: int = 0


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    mqtt_version: MqttVersion = "auto"
    # The other nodes of a cluster, after (host, port): connections rotate through them.
    others: tuple[tuple[str, int], ...] = ()
    route: Route = field(default_factory=Route, compare=False, repr=False)

    def __repr__(self) -> str:  # never show the password
        return f"BrokerSettings({self.describe()})"

    @property
    def endpoints(self) -> tuple[tuple[str, int], ...]:
        return ((self.host, self.port), *self.others)

    def current(self) -> tuple[str, int]:
        """The endpoint the next connection goes to."""
        endpoints = self.endpoints
        return endpoints[self.route.index % len(endpoints)]

    def describe(self) -> str:
        """The endpoint in use, as a URL (password masked)."""
        host, port = self.current()
        return self._url(host, port)

    def describe_all(self) -> str:
        return ",".join(self._url(host, port) for host, port in self.endpoints)

    def _url(self, host: str, port: int) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{user}{shown}:{port}"

    def protocol(self) -> Literal["5", "3.1.1"]:
        """The protocol of the next connection: ``auto`` is v5 until a broker refused it."""
        if self.mqtt_version == "auto":
            return self.route.protocol or "5"
        return self.mqtt_version

    def is_v311(self) -> bool:
        return self.protocol() == "3.1.1"

    def next_endpoint(self) -> None:
        """After a failed or lost connection: the next one goes to the next endpoint."""
        route = self.route
        route.failed = False
        if len(self.endpoints) > 1:
            route.index = (route.index + 1) % len(self.endpoints)
            route.rotations += 1
            log.info("trying the next broker endpoint", broker=self.describe())

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
        """Keyword arguments for ``aiomqtt.Client`` (the current endpoint and protocol,
        TLS when asked). ``extra`` speaks v5 (``clean_start``, ``properties``); under
        3.1.1 it is translated (``v311_kwargs``).

        They hold the password: never log them; log ``describe()``.
        """
        if self.route.failed:
            self.next_endpoint()
        host, port = self.current()
        if not self.tls and self.username and not _is_loopback(host):
            structlog.get_logger().warning(
                "credentials sent in clear: use mqtts://", broker=self.describe()
            )
        kwargs: dict[str, Any] = {
            "hostname": host,
            "port": port,
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
        return v311_kwargs(kwargs) if self.is_v311() else kwargs

    def client(self, *, identifier: str | None = None, **extra: Any) -> CheckedClient:
        """A connected-on-``async with`` client whose refusals raise ``BrokerError``.

        Built for the current endpoint; a failed connection moves the next one on.
        """
        from simulator.mqtt.client import CheckedClient  # here: client.py imports this module

        kwargs = self.client_kwargs(identifier=identifier, **extra)
        return CheckedClient(broker=self.describe(), settings=self, **kwargs)


def v311_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``aiomqtt.Client`` keywords written for v5, said in MQTT 3.1.1.

    ``clean_start=False`` (resume the session on every connect) is
    ``clean_session=False``; CONNECT properties (the session expiry) have no 3.1.1
    form: the broker keeps a persistent session until it expires it by its own
    configuration (NATS: until the client connects clean; Mosquitto:
    ``persistent_client_expiration``).
    """
    out = dict(kwargs)
    out["protocol"] = aiomqtt.ProtocolVersion.V311
    clean_start = out.pop("clean_start", None)
    out.pop("properties", None)
    if out.get("clean_session") is None:
        out["clean_session"] = clean_start is not False
    will = out.get("will")
    if will is not None and getattr(will, "properties", None) is not None:
        out["will"] = aiomqtt.Will(will.topic, will.payload, will.qos, will.retain)
    return out


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
    mqtt_version: str | None = None,
    environ: dict[str, str] | None = None,
) -> BrokerSettings:
    """``mqtt[s]://[user[:password]@]host[:port]``, or several comma-separated, plus
    options and environment.

    Precedence: options, then the URL, then the environment. The URLs of a list share
    one scheme and one set of credentials (the first URL's, or the options').
    """
    env = os.environ if environ is None else environ
    version = mqtt_version or env.get(ENV_MQTT_VERSION) or "auto"
    if version not in MQTT_VERSIONS:
        raise LapcastError(f"MQTT version {version!r} (--mqtt-version / ${ENV_MQTT_VERSION}): "
                           f"expected one of {', '.join(MQTT_VERSIONS)}")
    urls = [part.strip() for part in url.split(",")]
    if len(urls) > 1:
        if not all(urls):
            raise LapcastError(f"broker URL list {_mask_url(url)!r}: an empty entry")
        first = parse_broker_url(urls[0], username=username, password=password,
                                 ca_file=ca_file, mqtt_version=version, environ=dict(env))
        others: list[tuple[str, int]] = []
        for other in urls[1:]:
            node = parse_broker_url(other, username=first.username, password=first.password,
                                    ca_file=first.ca_file, mqtt_version=version,
                                    environ=dict(env))
            if node.tls != first.tls:
                raise LapcastError(f"broker URL list {_mask_url(url)!r}: mixes mqtt:// "
                                   "and mqtts://")
            others.append((node.host, node.port))
        return replace(first, others=tuple(others), route=Route())
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
        mqtt_version=version,
    )
    if settings.password and not settings.username:
        raise LapcastError(f"a password without a username for {settings.describe()}: "
                           f"give --username or ${ENV_USERNAME}")
    return settings


def _mask_url(url: str) -> str:
    if "," in url:
        return ",".join(_mask_url(part) for part in url.split(","))
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
