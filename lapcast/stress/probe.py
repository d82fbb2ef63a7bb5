"""The stress test's ears: one MQTT v5 subscriber recording what it hears, and when.

It runs paho's network thread (not an asyncio loop shared with anything else) and
stamps every message with ``time.time_ns()`` on arrival, the clock the engine stamps
``published_at_ns`` with (same machine). It decodes only the envelope it needs:
``(epoch, seq)`` of the events in an events message, ``(epoch, seq, published_at_ns)``
of a state document, the health documents whole (they are small).
"""

from __future__ import annotations

import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from simulator import topics
from simulator.connection import BrokerSettings

__all__ = ["PUBLISHED_AT", "ConsumerTrace", "EventsTrace", "Probe"]

PUBLISHED_AT: Final = "published_at_ns"


class _Envelope(msgspec.Struct):
    epoch: int = 1
    seq: int = 0


class _EventsMessage(msgspec.Struct):
    """An event or a ``Batch``: msgspec skips every other field."""

    type: str = ""
    epoch: int = 1
    seq: int = 0
    events: list[_Envelope] = []


class _StateStamp(msgspec.Struct):
    epoch: int = 0
    seq: int = 0
    published_at_ns: int = 0


_json_events: Final = msgspec.json.Decoder(_EventsMessage)
_msgpack_events: Final = msgspec.msgpack.Decoder(_EventsMessage)
_json_stamp: Final = msgspec.json.Decoder(_StateStamp)


@dataclass
class EventsTrace:
    """Every events message of one topic: its seq range, publish stamp, arrival time."""

    first_seq: array[int] = field(default_factory=lambda: array("q"))
    last_seq: array[int] = field(default_factory=lambda: array("q"))
    published_ns: array[int] = field(default_factory=lambda: array("q"))
    received_ns: array[int] = field(default_factory=lambda: array("q"))
    # Deliveries per seq (epoch 1): 0 lost, 2+ delivered again (QoS 1 redelivery).
    seen: bytearray = field(default_factory=bytearray)
    events: int = 0  # events received, duplicates included
    max_seq: int = 0

    def add(self, first: int, last: int, published: int, received: int) -> None:
        self.first_seq.append(first)
        self.last_seq.append(last)
        self.published_ns.append(published)
        self.received_ns.append(received)
        if len(self.seen) <= last:
            self.seen.extend(bytes(max(last + 1 - len(self.seen), len(self.seen))))
        seen = self.seen
        for seq in range(first, last + 1):
            if seen[seq] < 255:
                seen[seq] += 1
        self.events += last - first + 1
        self.max_seq = max(self.max_seq, last)

    @property
    def messages(self) -> int:
        return len(self.first_seq)


@dataclass
class ConsumerTrace:
    """One consumer's state messages (seq, arrival) and the health it reported."""

    name: str
    states: list[tuple[int, int, int]] = field(default_factory=list)  # (seq, recv, stamp)
    last_state: bytes = b""
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return self.states[-1][0] if self.states else 0


class Probe:
    """Subscribes to a session's events, states, healths and engine status."""

    def __init__(self, *, host: str, port: int, session_id: str, consumers: list[str],
                 broker: BrokerSettings | None = None) -> None:
        self.session_id = session_id
        self.events_topic = topics.events(session_id)
        self.status_topic = topics.status(session_id)
        self.events = EventsTrace()
        self.consumers = {name: ConsumerTrace(name) for name in consumers}
        self._state_topics = {topics.state(session_id, n): n for n in consumers}
        self._health_topics = {topics.consumer_status(session_id, n): n for n in consumers}
        self.engine_status: dict[str, Any] = {}
        self.undecodable = 0
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"lapcast-stress-probe-{session_id}",
                                   protocol=paho.MQTTv5)
        if broker is not None and broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker is not None and broker.tls:
            self._client.tls_set_context(broker.tls_context())
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._host, self._port = host, port

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        qos1 = SubscribeOptions(qos=1)
        wanted = [(self.events_topic, qos1), (self.status_topic, qos1)]
        wanted += [(t, qos1) for t in self._state_topics]
        wanted += [(t, qos1) for t in self._health_topics]
        self._client.subscribe(wanted)
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"probe: no SUBACK from {self._host}:{self._port} in {timeout} s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    # --- receiving (paho's thread) -------------------------------------------------------

    def _on_message(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.time_ns()
        topic = msg.topic
        try:
            if topic == self.events_topic:
                self._on_events(self.events, msg, now)
            elif topic in self._state_topics:
                self._on_state(self.consumers[self._state_topics[topic]], msg, now)
            elif topic in self._health_topics:
                self._on_health(self.consumers[self._health_topics[topic]], bytes(msg.payload))
            elif topic == self.status_topic and msg.payload:
                self.engine_status = msgspec.json.decode(msg.payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.undecodable += 1

    def _on_events(self, trace: EventsTrace, msg: paho.MQTTMessage, now: int) -> None:
        if msg.retain:
            return
        payload = msg.payload
        stripped = payload.lstrip()[:1]
        decoded = (_json_events if stripped == b"{" else _msgpack_events).decode(payload)
        if decoded.events:
            first, last = decoded.events[0].seq, decoded.events[-1].seq
        else:
            first = last = decoded.seq
        if first < 1:
            raise msgspec.ValidationError("an events message without a seq")
        with self.lock:
            trace.add(first, last, _published_at(msg.properties) or now, now)

    def _on_state(self, trace: ConsumerTrace, msg: paho.MQTTMessage, now: int) -> None:
        if msg.retain or not msg.payload:
            return  # a retained state is an old one, not a new publication
        stamp = _json_stamp.decode(msg.payload)
        with self.lock:
            trace.states.append((stamp.seq, now, stamp.published_at_ns))
            trace.last_state = bytes(msg.payload)

    def _on_health(self, trace: ConsumerTrace, payload: bytes) -> None:
        if not payload:
            return
        doc = msgspec.json.decode(payload)
        if not isinstance(doc, dict):
            return
        with self.lock:
            trace.health = doc


def _published_at(props: Properties | None) -> int | None:
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == PUBLISHED_AT:
            try:
                return int(value)
            except ValueError:
                return None
    return None
