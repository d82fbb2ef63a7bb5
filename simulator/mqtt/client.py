"""The one MQTT client of lapcast: ``CheckedClient``, whose refusals are errors.

aiomqtt 2.5 drops the PUBACK's reason code and returns the SUBACK's codes without
looking at them, so a publish the ACL refused would pass for a success.
``CheckedClient`` raises ``BrokerError`` naming the topic instead (what aiomqtt
drops is recovered by ``workarounds.AckRecordingClient``). A ``BrokerError`` is
final (wrong password, not authorized, untrusted certificate): the reconnect loop
(``reconnect.py``) retries ``aiomqtt.MqttError`` and gives up on ``BrokerError``.

The protocol profile lives here too. Under ``--mqtt-version auto`` a broker that
refuses v5 (CONNACK 0x84: NATS) or closes the connection on a v5 CONNECT (RabbitMQ)
is asked again at once in MQTT 3.1.1, and 3.1.1 is used from then on. Under 3.1.1,
``subscribe`` drops the v5-only subscription options (noLocal, retain-as-published)
and ``publish`` the properties; ``mqtt_v311`` tells a caller which profile it is in,
so that it carries in the payload what v5 carries in properties.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from simulator.errors import BrokerError
from simulator.mqtt.settings import (
    ENV_CA_FILE,
    ENV_MQTT_VERSION,
    ENV_PASSWORD,
    ENV_USERNAME,
    v311_kwargs,
)
from simulator.mqtt.workarounds import AckRecordingClient

if TYPE_CHECKING:
    from types import TracebackType

    from simulator.mqtt.settings import BrokerSettings

log = structlog.get_logger()

__all__ = ["CheckedClient", "check_puback", "check_suback", "is_final"]

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


def _v311_filters(topic: Any, qos: int) -> Any:
    """A subscription in 3.1.1 terms: each ``SubscribeOptions`` becomes its QoS."""
    if isinstance(topic, list):
        return [(t[0], t[1].QoS if isinstance(t[1], SubscribeOptions) else t[1])
                if isinstance(t, tuple) else t for t in topic]
    if isinstance(topic, tuple) and isinstance(topic[1], SubscribeOptions):
        return (topic[0], topic[1].QoS)
    return topic


def _refused_v5(exc: aiomqtt.MqttError) -> bool:
    """A v5 CONNECT the broker would not take: CONNACK 0x84 (or 3.1.1's code 1), or the
    connection closed or timed out after TCP was up (RabbitMQ closes it without a
    CONNACK). A refused TCP connection is no answer about the protocol."""
    if isinstance(exc, MqttConnectError):
        rc = exc.rc
        value = rc.value if isinstance(rc, ReasonCode) else int(rc or 0)
        return value in (0x84, 1)
    cause = exc.__cause__ or exc.__context__
    return not isinstance(cause, OSError | ssl.SSLError)


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


class CheckedClient(AckRecordingClient):
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

    def __init__(self, *args: Any, broker: str = "", settings: BrokerSettings | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.broker = broker or f"{kwargs.get('hostname', '?')}:{kwargs.get('port', '?')}"
        self._tls = kwargs.get("tls_context") is not None
        self._settings = settings
        self._kwargs = kwargs
        # MQTT 3.1.1: no properties, no subscription options, no reason codes.
        self.mqtt_v311 = kwargs.get("protocol") == aiomqtt.ProtocolVersion.V311

    async def __aenter__(self) -> Self:
        settings = self._settings
        try:
            entered = await self._connect()
        except aiomqtt.MqttError as exc:
            if settings is not None and not isinstance(exc, BrokerError):
                settings.route.failed = True
            raise
        if settings is not None and settings.mqtt_version == "auto" \
                and settings.route.protocol is None:
            settings.route.protocol = "3.1.1" if self.mqtt_v311 else "5"
            log.info("MQTT protocol chosen", version=settings.route.protocol,
                     broker=self.broker)
        return entered

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._settings is not None and isinstance(exc, aiomqtt.MqttError):
            self._settings.route.failed = True  # lost: the next connection tries the next node
        await super().__aexit__(exc_type, exc, tb)

    async def _connect(self) -> Self:
        settings = self._settings
        try:
            return await self._checked_connect()
        except (aiomqtt.MqttError, BrokerError) as exc:
            # 0x84 arrives as the BrokerError it would be under --mqtt-version 5.
            cause = exc.__cause__ if isinstance(exc, BrokerError) else exc
            if (settings is None or settings.mqtt_version != "auto" or self.mqtt_v311
                    or settings.route.protocol == "5"
                    or not isinstance(cause, aiomqtt.MqttError) or not _refused_v5(cause)):
                raise
            log.info("the broker refused MQTT v5; trying 3.1.1", broker=self.broker,
                     error=str(exc))
            # aiomqtt fixes the protocol when the client is built: build it again.
            kwargs = v311_kwargs(self._kwargs)
            AckRecordingClient.__init__(self, **kwargs)
            self._kwargs = kwargs
            self.mqtt_v311 = True
            entered = await self._checked_connect()
            settings.route.protocol = "3.1.1"
            log.info("MQTT protocol chosen", version="3.1.1", broker=self.broker)
            return entered

    async def _checked_connect(self) -> Self:
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
                elif value == 0x84:
                    hint = (": this broker does not speak MQTT "
                            f"{'3.1.1' if self.mqtt_v311 else 'v5'}; try --mqtt-version "
                            f"{'5' if self.mqtt_v311 else '3.1.1'} or auto "
                            f"(${ENV_MQTT_VERSION})")
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
        if self.mqtt_v311:
            properties = None  # carried in the payload by the caller (the envelope)
        limit = self.max_packet_size
        body = _payload_size(payload) if limit is not None else 0
        if limit is not None and body + len(topic) + _PROPERTIES_ROOM > limit:
            size = _packet_size(topic, body, qos, properties)
            if size > limit:
                raise BrokerError(
                    f"a publish to {topic} of {size} bytes exceeds the broker's maximum "
                    f"packet size of {self.max_packet_size} bytes ({self.broker})"
                )
        refusal = await self.publish_refusal(topic, payload, qos, retain, properties, *args,
                                             timeout=timeout, **kwargs)
        check_puback(topic, refusal)

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
        if self.mqtt_v311:
            topic, options, properties = _v311_filters(topic, qos), None, None
            if isinstance(topic, tuple):
                topic, qos = topic
        codes = await super().subscribe(topic, qos, options, properties, *args,
                                        timeout=timeout, **kwargs)
        try:
            check_suback(_topic_names(topic), codes)
        except BrokerError as exc:
            if not self.mqtt_v311:
                raise
            # A 3.1.1 SUBACK says 0x80 and nothing more: NATS answers so while its
            # JetStream recovers from a node's death, as well as for an ACL refusal. So
            # it is retried (the reconnect loop logs it each time), not final.
            raise aiomqtt.MqttError(f"{exc} (MQTT 3.1.1 gives no reason: retrying)") from exc
        return codes
