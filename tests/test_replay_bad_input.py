"""Arbitrary input on the engine's two inbound topics: it stays up and answers everything.

A property test (hypothesis) against a running engine and a real Mosquitto: JSON of
any shape (numbers of any size, NaN and infinities, strings, nesting) and raw bytes
on ``control`` and ``catchup/request``. Every control message gets an ``accepted`` or
``rejected`` answer on status; every catch-up request naming a reply topic gets a
final reply (events or an error); one without a reply topic is logged and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import generated_source

ANSWER_TIMEOUT_S = 10.0

numbers = (st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([5e-324, 1e-300, 1e308, -0.0, 2**63, 2**64, -(2**63) - 1]))
scalars = st.none() | st.booleans() | numbers | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
commands = st.fixed_dictionaries(
    {"command": st.sampled_from(["pause", "resume", "speed", "seek"]) | st.text(max_size=10)},
    optional={"factor": json_values | st.sampled_from(["max", "MAX", "1e-300", "60"]),
              "to": json_values | st.sampled_from(["1:00", "0:00:01.5", "-1", "99:00:00"]),
              "extra": json_values})
requests = st.fixed_dictionaries(
    {"type": st.sampled_from(["CatchupRequest"]) | st.text(max_size=10)},
    optional={"epoch": json_values, "from_seq": json_values, "to_seq": json_values})


def _encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


payloads = st.one_of(
    json_values.map(_encoded), commands.map(_encoded), requests.map(_encoded),
    st.binary(max_size=64))


@dataclass
class Probe:
    """A plain paho client (its own thread) that counts the engine's answers."""

    session_id: str
    answers: int = 0  # status documents that carry "accepted" or "rejected"
    finals: set[bytes] = field(default_factory=set)  # correlation data of final replies
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self.cond:
            if message.topic == topics.status(self.session_id):
                doc = msgspec.json.decode(message.payload)
                if "accepted" in doc or "rejected" in doc:
                    self.answers += 1
            else:
                reply = msgspec.json.decode(message.payload)
                correlation = getattr(message.properties, "CorrelationData", None)
                if reply.get("final") and correlation is not None:
                    self.finals.add(bytes(correlation))
            self.cond.notify_all()

    def wait(self, predicate: Any) -> bool:
        """Until ``predicate()`` (checked on every message, and every 10 ms)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    return False
                self.cond.wait(0.01)
            return True


@dataclass
class Running:
    engine: ReplayEngine
    probe: Probe
    client: paho.Client
    reply_topic: str
    ids: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture
def running(broker: MosquittoProcess, session_id: str, tmp_path: Path) -> Iterator[Running]:
    """An engine in a thread of its own (its own event loop), and a probe subscribed."""
    settings = parse_broker_url(broker.url)
    engine = ReplayEngine(generated_source(session_id, cars=3, laps=20), ReplaySettings(
        broker=settings, journal_path=tmp_path / "j.jsonl", speed=1.0,
        status_interval_s=3600))
    loop = asyncio.new_event_loop()
    outcome: list[BaseException | None] = []

    def serve() -> None:
        try:
            loop.run_until_complete(engine.run())
            outcome.append(None)
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    probe = Probe(session_id)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = probe.on_message
    client.connect(settings.host, settings.port)
    client.loop_start()
    reply_topic = topics.catchup_reply_prefix(session_id) + "/probe"
    client.subscribe([(topics.status(session_id), 1), (reply_topic, 1)])
    # Up when its first status is out.
    assert probe.wait(lambda: engine.link.connected.is_set())
    try:
        yield Running(engine=engine, probe=probe, client=client, reply_topic=reply_topic)
        assert thread.is_alive() and not outcome, f"the engine stopped: {outcome}"
    finally:
        loop.call_soon_threadsafe(engine.stop)
        thread.join(30)
        client.loop_stop()
        client.disconnect()
    assert outcome == [None]


def _props(**values: Any) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


class TestArbitraryInput:
    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(payload=payloads)
    def test_every_control_message_is_answered(self, running: Running,
                                               payload: bytes) -> None:
        """Whatever arrives on control gets an accepted or rejected answer on status."""
        probe = running.probe
        with probe.cond:
            expected = probe.answers + 1
        running.client.publish(topics.control(running.engine.session_id), payload, qos=1)
        assert probe.wait(lambda: probe.answers >= expected), (
            f"no answer on status to {payload[:200]!r}")

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(payload=payloads, reply=st.booleans())
    def test_every_catchup_request_is_answered_or_counted(self, running: Running,
                                                         payload: bytes, reply: bool) -> None:
        """With a reply topic: a final reply (events or an error). Without: counted."""
        probe, stats = running.probe, running.engine.stats
        topic = topics.catchup_request(running.engine.session_id)
        if reply:
            correlation = str(next(running.ids)).encode()
            running.client.publish(topic, payload, qos=1, properties=_props(
                ResponseTopic=running.reply_topic, CorrelationData=correlation))
            assert probe.wait(lambda: correlation in probe.finals), (
                f"no final reply to {payload[:200]!r}")
        else:
            before = stats.catchup_without_reply_topic
            running.client.publish(topic, payload, qos=1)
            assert probe.wait(lambda: stats.catchup_without_reply_topic == before + 1)
