"""The stress test's ears for the consumers: one MQTT v5 subscriber, arrival times.

It runs paho's network thread (not an asyncio loop shared with anything else) and
stamps every state message with ``time.time_ns()`` on arrival, the clock the engine
stamps ``published_at_ns`` with (same machine). It decodes only the stamp of a state
document (``contract.StateStamp``) and the health documents whole (they are small),
with the contract's decoders. The events themselves are recorded by ``recorder``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from simulator import contract, topics
from simulator.connection import NO_DELAY, BrokerSettings
from simulator.errors import ContractError

__all__ = ["ConsumerTrace", "Probe"]

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
    """Subscribes to a session's consumer states, their healths and the engine status."""

    def __init__(self, *, host: str, port: int, session_id: str, consumers: list[str],
                 broker: BrokerSettings | None = None) -> None:
        self.session_id = session_id
        self.status_topic = topics.status(session_id)
        self.consumers = {name: ConsumerTrace(name) for name in consumers}
        self._state_topics = {topics.state(session_id, n): n for n in consumers}
        self._health_topics = {topics.consumer_status(session_id, n): n for n in consumers}
        self.engine_status: dict[str, Any] = {}
        self.undecodable = 0
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        v311 = broker is not None and broker.is_v311()
        self._client = paho.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"lapcast-stress-probe-{session_id}",
                                   protocol=paho.MQTTv311 if v311 else paho.MQTTv5)
        self._v311 = v311
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
        sock = self._client.socket()
        # As every lapcast client: no Nagle delay in the arrival stamps.
        if isinstance(sock, socket.socket):
            for option in NO_DELAY:
                sock.setsockopt(*option)
        self._client.loop_start()
        qos1: Any = 1 if self._v311 else SubscribeOptions(qos=1)
        wanted = [(self.status_topic, qos1)]
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
            if topic in self._state_topics:
                self._on_state(self.consumers[self._state_topics[topic]], msg, now)
            elif topic in self._health_topics:
                self._on_health(self.consumers[self._health_topics[topic]], bytes(msg.payload))
            elif topic == self.status_topic and msg.payload:
                self.engine_status = msgspec.to_builtins(
                    contract.decode_engine_status(bytes(msg.payload)))
        except ContractError:
            self.undecodable += 1

    def _on_state(self, trace: ConsumerTrace, msg: paho.MQTTMessage, now: int) -> None:
        if msg.retain or not msg.payload:
            return  # a retained state is an old one, not a new publication
        stamp = contract.decode_state_stamp(bytes(msg.payload))
        with self.lock:
            trace.states.append((stamp.seq, now, stamp.published_at_ns))
            trace.last_state = bytes(msg.payload)

    def _on_health(self, trace: ConsumerTrace, payload: bytes) -> None:
        if not payload:
            return
        doc = msgspec.to_builtins(contract.decode_consumer_health(payload))
        with self.lock:
            trace.health = doc
