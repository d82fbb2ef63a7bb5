"""Every workaround of aiomqtt 2.5 / paho-mqtt 2.x behaviour lapcast relies on, in one place.

Each one says what it works around and when it can go. They are written against
aiomqtt 2.5.x (pinned ``>=2.5,<3``) and paho-mqtt 2.1; aiomqtt 3 leaves paho, so
most of them go with it.

* ``install_properties_speedup`` / ``properties_speedup_matches_paho``: paho builds
  its lookup tables for every MQTT v5 ``Properties``.
* ``install_publish_decode_speedup`` / ``publish_decode_speedup_matches_paho``: paho
  decodes every incoming PUBLISH's properties one attribute lookup at a time.
* ``Inbox``: aiomqtt's message iterator creates one task per message.
* ``AckRecordingClient``: aiomqtt drops a PUBLISH's mid, the PUBACK's reason code
  and the CONNACK's maximum packet size.
* ``run_until``: aiomqtt's ``asyncio.wait_for`` can swallow a cancellation on 3.11.
* ``PublishedAt``: paho's ``Properties`` costs ~50 us to build and pack per PUBLISH.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulator.contract import PUBLISHED_AT
from simulator.errors import LapcastError

__all__ = [
    "AckRecordingClient",
    "Inbox",
    "PublishedAt",
    "install_properties_speedup",
    "install_publish_decode_speedup",
    "properties_speedup_matches_paho",
    "publish_decode_speedup_matches_paho",
    "run_until",
]


# --- paho: Properties rebuilt for every packet ----------------------------------------
#
# Works around: ``paho.mqtt.properties.Properties.__init__`` rebuilds two constant lookup
# tables (about 30 entries, each through an overridden ``__setattr__``) for every MQTT v5
# packet, incoming ones included: on a consumer receiving events that was the largest
# single cost, about 80 us of ~300 us per message. paho never mutates the tables, so
# every instance can share one copy. Checked against paho's own result at install: a paho
# release that changes the class is left alone.
# Can go: when paho builds the tables once (not as of paho-mqtt 2.1), or with aiomqtt 3.

_original_properties_init = Properties.__init__


def install_properties_speedup() -> bool:
    """Share paho's property tables between instances; False if paho looks different.

    Idempotent.
    """
    if getattr(Properties.__init__, "_lapcast_shared", False):
        return True
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    shared = {k: getattr(template, k, None) for k in ("types", "names", "properties")}
    if set(vars(template)) != {"packetType", *shared} or None in shared.values():
        return False  # not the class this was written against

    def shared_init(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        for name, value in shared.items():
            object.__setattr__(self, name, value)

    shared_init._lapcast_shared = True  # type: ignore[attr-defined]
    Properties.__init__ = shared_init  # type: ignore[method-assign]
    return True


def properties_speedup_matches_paho(packet_type: int = PacketTypes.PUBLISH) -> bool:
    """A shared-table instance packs and looks like one paho built itself."""
    fast = Properties(packet_type)  # type: ignore[no-untyped-call]
    slow: Any = object.__new__(Properties)
    _original_properties_init(slow, packet_type)  # type: ignore[no-untyped-call]
    fast.UserProperty = ("published_at_ns", "1")
    slow.UserProperty = ("published_at_ns", "1")
    same_bytes = fast.pack() == slow.pack()  # type: ignore[no-untyped-call]
    return bool(same_bytes and vars(fast).keys() == vars(slow).keys())


# --- paho: every incoming PUBLISH's properties parsed generically ------------------------
#
# Works around: ``paho.mqtt._packet.decode_publish`` builds a ``struct`` format string per
# field and copies the rest of the packet at each, then ``Properties.unpack`` reads each
# property through name lookups, a ``__setattr__`` that checks the name against every
# property of MQTT v5 and ``hasattr`` probes; for the engine's events (one user property,
# ``published_at_ns``) that was about 40% of a consumer's cost of receiving a message.
# ``_fast_decode_publish`` decodes an MQTT v5 PUBLISH whose properties are only user
# properties (what lapcast sends) straight from the bytes, into the same ``PublishPacket``
# (same types, same ``Properties``); anything else, or anything it would have to refuse,
# goes to paho's own function, which decodes it or raises its ``MalformedPacket``.
# Checked against paho's own results at install: a paho that differs is left alone.
# Can go: when paho decodes properties without the generic path (not as of paho-mqtt 2.2),
# or with aiomqtt 3.

_original_decode_publish = _packet.decode_publish
_USER_PROPERTY_ID = 0x26
_V5 = MQTTProtocolVersion.MQTTv5


def _user_properties(packet: Any, start: int, end: int) -> list[tuple[str, str]] | None:
    """The UTF-8 string pairs of ``packet[start:end]`` if that is all it holds, else None."""
    pairs: list[tuple[str, str]] = []
    i = start
    while i < end:
        if packet[i] != _USER_PROPERTY_ID:
            return None
        strings: list[str] = []
        i += 1
        for _ in range(2):
            if i + 2 > end:
                return None
            length = (packet[i] << 8) | packet[i + 1]
            i += 2
            if i + length > end:
                return None
            text = bytes(packet[i:i + length]).decode("utf-8")  # no surrogates in UTF-8
            if "\x00" in text or "\ufeff" in text:
                return None  # paho refuses these (MQTT-1.5.4-2, -3)
            strings.append(text)
            i += length
        pairs.append((strings[0], strings[1]))
    return pairs


def _fast_decode_publish(header: int, packet: Any, protocol: Any) -> _packet.PublishPacket:
    if protocol != _V5:
        return _original_decode_publish(header, packet, protocol)
    try:
        qos = (header & 0x06) >> 1
        slen = (packet[0] << 8) | packet[1]
        pos = 2 + slen
        mid = 0
        if qos > 0:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        props_len = packet[pos]
        if props_len & 0x80:  # a multi-byte length: never ours
            return _original_decode_publish(header, packet, protocol)
        start = pos + 1
        end = start + props_len
        if end > len(packet):
            return _original_decode_publish(header, packet, protocol)
        pairs = _user_properties(packet, start, end)
    except (IndexError, UnicodeDecodeError):
        pairs = None
    if pairs is None:
        return _original_decode_publish(header, packet, protocol)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if pairs:
        object.__setattr__(properties, "UserProperty", pairs)
    view = memoryview(packet)
    return _packet.PublishPacket(
        dup=(header & 0x08) != 0, qos=qos, retain=(header & 0x01) != 0,
        topic=bytes(view[2:2 + slen]), mid=mid, properties=properties,
        payload=bytes(view[end:]),
    )


def _publish_samples() -> list[tuple[int, bytes]]:
    """PUBLISH packets (header, bytes after the fixed header) of the shapes lapcast sees."""
    def string(text: bytes) -> bytes:
        return len(text).to_bytes(2, "big") + text

    user = bytes((_USER_PROPERTY_ID,)) + string(b"published_at_ns") + string(b"17957394")
    other = bytes((0x01, 0x01))  # PayloadFormatIndicator: paho's own path
    samples = []
    for header in (0x30, 0x32, 0x3B, 0x31):
        for props in (b"", user, user + user, other, user + other):
            mid = b"\x01\x02" if header & 0x06 else b""
            body = string(b"lapcast/v1/sessions/s/events") + mid
            samples.append((header, body + bytes((len(props),)) + props + b'{"seq":1}'))
    return samples


def publish_decode_speedup_matches_paho() -> bool:
    """The fast decode gives what paho's gives, types included, on the shapes we send."""
    for header, packet in _publish_samples():
        for buffer in (packet, bytearray(packet)):
            fast = _fast_decode_publish(header, buffer, _V5)
            slow = _original_decode_publish(header, buffer, _V5)
            if (fast._replace(properties=None) != slow._replace(properties=None)
                    or type(fast.payload) is not type(slow.payload)
                    or type(fast.topic) is not type(slow.topic)
                    or vars(fast.properties) != vars(slow.properties)):
                return False
    return True


def install_publish_decode_speedup() -> bool:
    """Decode incoming PUBLISH packets the fast way; False if paho looks different.

    Idempotent. Install ``install_properties_speedup`` first (the check builds
    ``Properties`` both ways).
    """
    if _packet.decode_publish is _fast_decode_publish:
        return True
    if not publish_decode_speedup_matches_paho():
        return False
    _packet.decode_publish = _fast_decode_publish
    return True


# --- aiomqtt: one task per incoming message ----------------------------------------------
#
# Works around: ``aiomqtt.Client.messages`` waits for each message with a new task
# (``create_task(queue.get())``, raced against the disconnection), a cost per message
# that dominates a busy consumer. Passed as ``queue_type=``, an ``Inbox`` keeps the queue
# aiomqtt creates, so the receive loop takes one message through the iterator (which
# still notices a disconnection) and drains what has arrived meanwhile with
# ``get_nowait()``.
# Can go: when aiomqtt's iterator stops creating a task per message (not as of 2.5.1).


class Inbox:
    """``queue_type=`` for ``aiomqtt.Client``: remembers the queue it made."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()

    def __call__(self, maxsize: int = 0) -> asyncio.Queue[aiomqtt.Message]:
        self.queue = asyncio.Queue(maxsize)
        return self.queue


# --- aiomqtt: what it drops from CONNACK, PUBLISH and PUBACK ------------------------------
#
# Works around: aiomqtt 2.5's ``publish`` neither returns the PUBLISH's message id nor
# looks at the PUBACK's reason code, so a publish the broker refused (0x87 not authorized)
# passes for a success; it also drops the CONNACK's properties, among them the broker's
# Maximum Packet Size. ``AckRecordingClient`` wraps paho's ``publish`` to note the mid in
# a context variable (each task has its own, so concurrent publishers do not mix them up)
# and overrides aiomqtt's private ``_on_connect`` and ``_on_publish`` callbacks to keep the
# packet size and the refusals by mid. ``simulator.mqtt.client.CheckedClient`` turns them
# into errors.
# Can go: when aiomqtt reports PUBACK reason codes and CONNACK properties itself (not as
# of 2.5.1), or with aiomqtt 3.

# The mid of the last PUBLISH sent in this task.
_last_mid: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "lapcast_last_mid", default=None
)


class AckRecordingClient(aiomqtt.Client):
    """``aiomqtt.Client`` that keeps the mid, PUBACK code and CONNACK packet size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The broker's MQTT v5 Maximum Packet Size, learnt from the CONNACK.
        self.max_packet_size: int | None = None
        # PUBACK refusals by mid, until the publisher that waits for them takes them.
        self._refusals: dict[int, ReasonCode] = {}
        paho_publish = self._client.publish

        def publish_noting_mid(*args: Any, **kwargs: Any) -> paho.MQTTMessageInfo:
            info = paho_publish(*args, **kwargs)
            _last_mid.set(info.mid)
            return info

        self._client.publish = publish_noting_mid  # type: ignore[method-assign]

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

    async def publish_refusal(
        self, topic: str, payload: Any, qos: int, retain: bool,
        properties: Properties | None, *args: Any, timeout: float | None = None,
        **kwargs: Any,
    ) -> ReasonCode | None:
        """``aiomqtt.Client.publish``, returning the PUBACK's refusal (None if accepted)."""
        _last_mid.set(None)
        await aiomqtt.Client.publish(self, topic, payload, qos, retain, properties, *args,
                                     timeout=timeout, **kwargs)
        mid = _last_mid.get()
        return self._refusals.pop(mid, None) if mid is not None else None


# --- aiomqtt on Python 3.11: a cancellation swallowed by wait_for -------------------------
#
# Works around: aiomqtt waits for acknowledgements with ``asyncio.wait_for``, which on
# Python 3.11 can swallow a cancellation that races with its result; a loop that lost its
# cancellation would keep an ``asyncio.TaskGroup`` (and the whole process) waiting forever.
# So cancellation is repeated until every task has ended.
# Can go: on Python 3.12+ (``wait_for`` rebuilt on ``asyncio.timeout``), then a TaskGroup
# does the job.


async def run_until(stop: asyncio.Event, coroutines: list[Coroutine[Any, Any, Any]]) -> None:
    """Run ``coroutines`` as tasks until ``stop`` is set or one of them ends; raise its error.

    Every task has ended when this returns. A ``LapcastError`` (a refusal) is raised in
    preference to the disconnection it caused.
    """
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        everything = [*tasks, stopper]
        while pending := [task for task in everything if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.05)
    errors = [task.exception() for task in tasks if not task.cancelled()]
    failures = [exc for exc in errors if exc is not None]
    if failures:
        failures.sort(key=lambda exc: not isinstance(exc, LapcastError))
        raise failures[0]


_USER_PROPERTY: Final = 0x26  # MQTT v5 property identifier of a User Property
_KEY: Final = len(PUBLISHED_AT).to_bytes(2, "big") + PUBLISHED_AT.encode()


# --- paho: a PUBLISH's Properties, built and packed per message ---------------------------
#
# Works around: ``paho.mqtt.properties.Properties`` builds and packs the one user property
# the engine stamps on every events message through string-munged name lookups.
# Can go: with aiomqtt 3 (no paho), or if paho packs properties cheaply.


class PublishedAt(Properties):
    """A PUBLISH's properties: only the user property ``published_at_ns``, packed by hand.

    paho's ``Properties`` costs some 50 microseconds per message to build and pack
    (name lookups by string munging), more than the rest of a publish; at QoS 1 and
    thousands of messages per second that alone would cap the engine. This packs the
    same bytes (MQTT v5 2.2.2: property length, then identifier 0x26 and a UTF-8
    string pair); a test checks them against paho's own packing.
    """

    __setattr__ = object.__setattr__  # paho's checks every name against its table

    def __init__(self, ns: int) -> None:  # paho's __init__ is the cost we avoid
        self.ns = ns
        value = str(ns).encode()
        body = bytes((_USER_PROPERTY,)) + _KEY + len(value).to_bytes(2, "big") + value
        self._packed = bytes((len(body),)) + body  # < 128 bytes: a one-byte length

    def pack(self) -> bytes:
        return self._packed

    def __repr__(self) -> str:
        return f"[UserProperty : [('{PUBLISHED_AT}', '{self.ns}')]]"

    __str__ = __repr__
