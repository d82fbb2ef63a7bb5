"""How every lapcast command reaches the broker: one URL, options, environment.

``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS), with credentials from the URL,
the options, or ``LAPCAST_MQTT_USERNAME`` / ``LAPCAST_MQTT_PASSWORD`` /
``LAPCAST_MQTT_CA_FILE``. Credentials are never logged: ``describe()`` masks them.
All clients speak MQTT v5, so a refused publish comes back with a reason code.

``BrokerSettings.client()`` builds a ``CheckedClient``: an ``aiomqtt.Client`` whose
refusals are errors. aiomqtt 2.5 drops the PUBACK's reason code and returns the
SUBACK's codes without looking at them, so a publish the ACL refused would pass for
a success. ``CheckedClient`` raises ``BrokerError`` naming the topic instead; a
``BrokerError`` is final (wrong password, not authorized, untrusted certificate):
reconnect loops retry ``aiomqtt.MqttError`` and give up on ``BrokerError``.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Self
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as paho
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulator.errors import BrokerError, LapcastError

__all__ = [
    "ENV_CA_FILE",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "BrokerSettings",
    "CheckedClient",
    "check_puback",
    "check_suback",
    "is_final",
    "parse_broker_url",
]

ENV_USERNAME = "LAPCAST_MQTT_USERNAME"
ENV_PASSWORD = "LAPCAST_MQTT_PASSWORD"
ENV_CA_FILE = "LAPCAST_MQTT_CA_FILE"

# CONNACK reason codes that no retry can fix (MQTT v5 3.2.2.2; v3 codes 1, 2, 4, 5).
_FINAL_CONNACK = {
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x8A: "banned",
    0x8C: "bad authentication method",
}
_V3_CONNACK = {1: 0x84, 2: 0x85, 4: 0x86, 5: 0x87}

# A handshake cut short (the broker stopping or restarting): worth another attempt.
_SSL_CUT_SHORT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)

# The mid of the last PUBLISH sent in this task (see CheckedClient.publish).
_last_mid: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "lapcast_last_mid", default=None
)


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


# --- refusals -------------------------------------------------------------------------


def check_puback(topic: str, reason_code: ReasonCode | int | None) -> None:
    """Raise ``BrokerError`` naming ``topic`` when a PUBACK refused the publish.

    Codes below 0x80 are successes (0x10 "no matching subscribers" included).
    """
    if reason_code is None:
        return
    value = reason_code.value if isinstance(reason_code, ReasonCode) else int(reason_code)
    if value >= 0x80:
        raise BrokerError(
            f"the broker refused a publish to {topic}: {_reason_text(reason_code)} "
            f"(reason code 0x{value:02X})"
        )


def check_suback(topics: Iterable[str], reason_codes: Iterable[Any]) -> None:
    """Raise ``BrokerError`` naming every topic whose subscription the SUBACK refused.

    MQTT v5 codes are ``ReasonCode``s (>= 0x80 refused); MQTT 3 grants are ints
    (0x80 refused). Mosquitto 2.0.11 grants any subscription and filters on delivery
    instead; other brokers (EMQX, HiveMQ, Mosquitto's dynamic security) refuse here.
    """
    refused = []
    for topic, code in zip(topics, reason_codes, strict=False):
        value = code.value if isinstance(code, ReasonCode) else int(code)
        if value >= 0x80:
            refused.append(f"{topic} ({_reason_text(code)}, reason code 0x{value:02X})")
    if refused:
        raise BrokerError("the broker refused to subscribe to " + ", ".join(refused))


def is_final(exc: BaseException) -> bool:
    """True when retrying cannot help: reconnect loops stop on these."""
    return isinstance(exc, BrokerError)


def _reason_text(code: Any) -> str:
    if isinstance(code, ReasonCode):
        return str(code).lower()
    return {0x80: "refused", 0x87: "not authorized"}.get(int(code), "refused")


def _topic_names(topic: Any) -> list[str]:
    """The topic filters of any form ``aiomqtt.Client.subscribe`` accepts."""
    if isinstance(topic, str):
        return [topic]
    if isinstance(topic, tuple):
        return [str(topic[0])]
    if isinstance(topic, aiomqtt.Topic | aiomqtt.Wildcard):
        return [str(topic)]
    return [name for item in topic for name in _topic_names(item)]


# Room left for a PUBLISH's properties before they are measured exactly: packing
# paho's Properties costs microseconds, so only a payload this close to the limit pays.
_PROPERTIES_ROOM = 64 * 1024


def _payload_size(payload: Any) -> int:
    if payload is None:
        return 0
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    if isinstance(payload, str):
        return len(payload.encode())
    return len(str(payload).encode())


def _packet_size(topic: str, body: int, qos: int, properties: Properties | None) -> int:
    """An upper bound of a PUBLISH packet's size (MQTT v5 3.3)."""
    props = len(properties.pack()) if properties is not None else 1  # type: ignore[no-untyped-call]
    # fixed header (1 + up to 4 length bytes) + topic (2 + n) + packet id + properties
    return 5 + 2 + len(topic.encode()) + (2 if qos else 0) + props + body


class CheckedClient(aiomqtt.Client):
    """``aiomqtt.Client`` that turns the broker's refusals into ``BrokerError``.

    * ``async with``: a refused CONNECT (bad password, not authorized) or a TLS
      failure (untrusted certificate, wrong host name) raises ``BrokerError``;
      an unreachable broker stays an ``aiomqtt.MqttError`` (worth retrying).
    * ``publish``: a QoS 1/2 publish the broker refuses (PUBACK >= 0x80, e.g.
      0x87 not authorized) raises ``BrokerError`` naming the topic; a payload beyond
      the broker's maximum packet size (from the CONNACK) is refused before it is
      sent, since the broker would answer it with a disconnect. QoS 0 has no
      acknowledgement: a refusal there cannot be seen.
    * ``subscribe``: a refused filter in the SUBACK raises ``BrokerError``.
    """

    def __init__(self, *args: Any, broker: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broker = broker or f"{kwargs.get('hostname', '?')}:{kwargs.get('port', '?')}"
        self._tls = kwargs.get("tls_context") is not None
        # The broker's MQTT v5 Maximum Packet Size, learnt from the CONNACK.
        self.max_packet_size: int | None = None
        # PUBACK refusals by mid, until the publisher that waits for them takes them.
        self._refusals: dict[int, ReasonCode] = {}
        paho_publish = self._client.publish

        def publish_noting_mid(*args: Any, **kwargs: Any) -> paho.MQTTMessageInfo:
            info = paho_publish(*args, **kwargs)
            # aiomqtt's publish does not return the mid; a context variable carries it
            # back to CheckedClient.publish in the same task (each task has its own).
            _last_mid.set(info.mid)
            return info

        self._client.publish = publish_noting_mid  # type: ignore[method-assign]

    async def __aenter__(self) -> Self:
        try:
            return await super().__aenter__()
        except MqttConnectError as exc:
            rc = exc.rc
            value = rc.value if isinstance(rc, ReasonCode) else _V3_CONNACK.get(int(rc or 0), 0)
            if value in _FINAL_CONNACK:
                hint = ""
                if value in (0x86, 0x87):
                    hint = (f": check the username and password (--username/--password or "
                            f"${ENV_USERNAME}/${ENV_PASSWORD})")
                raise BrokerError(f"{self.broker} refused the connection: "
                                  f"{_FINAL_CONNACK[value]} (reason code 0x{value:02X}){hint}"
                                  ) from exc
            raise
        except aiomqtt.MqttError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise BrokerError(
                    f"{self.broker}: the broker's TLS certificate is not trusted "
                    f"({cause.verify_message}): give the CA that signed it with --ca-file "
                    f"or ${ENV_CA_FILE}"
                ) from exc
            if isinstance(cause, ssl.SSLError) and not isinstance(cause, _SSL_CUT_SHORT):
                raise BrokerError(f"{self.broker}: TLS handshake failed ({cause.reason}): "
                                  "is this a TLS listener (mqtts://)?") from exc
            if self._tls and isinstance(cause, ConnectionResetError):
                # Mosquitto resets a plain listener's connection on a TLS hello; a broker
                # going down does the same, so this stays worth retrying, with a hint.
                raise aiomqtt.MqttError(f"{self.broker}: connection reset during the TLS "
                                        "handshake: is this a TLS listener (mqtts://)?"
                                        ) from exc
            raise

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason_code: ReasonCode, properties: Properties | None = None) -> None:
        size = getattr(properties, "MaximumPacketSize", None) if properties else None
        self.max_packet_size = int(size) if size else None
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        if reason_code.is_failure:
            self._refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish(
        self,
        /,
        topic: str,
        payload: Any = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        limit = self.max_packet_size
        body = _payload_size(payload) if limit is not None else 0
        if limit is not None and body + len(topic) + _PROPERTIES_ROOM > limit:
            size = _packet_size(topic, body, qos, properties)
            if size > limit:
                raise BrokerError(
                    f"a publish to {topic} of {size} bytes exceeds the broker's maximum "
                    f"packet size of {self.max_packet_size} bytes ({self.broker})"
                )
        _last_mid.set(None)
        await super().publish(topic, payload, qos, retain, properties, *args,
                              timeout=timeout, **kwargs)
        mid = _last_mid.get()
        if mid is not None:
            check_puback(topic, self._refusals.pop(mid, None))

    async def subscribe(
        self,
        /,
        topic: Any,
        qos: int = 0,
        options: Any = None,
        properties: Properties | None = None,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> tuple[int, ...] | list[ReasonCode]:
        codes = await super().subscribe(topic, qos, options, properties, *args,
                                        timeout=timeout, **kwargs)
        check_suback(_topic_names(topic), codes)
        return codes
