"""Every workaround of aiomqtt 2.5 / paho-mqtt 2.x behaviour lapcast relies on, in one place.

Each one says what it works around and when it can go. They are written against
aiomqtt 2.5.x (pinned ``>=2.5,<3``) and paho-mqtt 2.1; aiomqtt 3 leaves paho, so
most of them go with it.

* ``install_properties_speedup`` / ``properties_speedup_matches_paho``: paho builds
  its lookup tables for every MQTT v5 ``Properties``.
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
    "properties_speedup_matches_paho",
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
