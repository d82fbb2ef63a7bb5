"""The MQTT edge (simulator/mqtt/): the one reconnect loop over a real Mosquitto that
stops and comes back, the payload clean-up, the workarounds' task runner."""

from __future__ import annotations

import asyncio
import random

import aiomqtt
import pytest

from lapcast.mosquitto import MosquittoProcess, free_port
from simulator.errors import BrokerError
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.payload import payload_bytes
from simulator.mqtt.reconnect import Reconnector
from simulator.mqtt.settings import BrokerSettings, parse_broker_url
from simulator.mqtt.workarounds import Inbox, run_until


def _message(payload: object) -> aiomqtt.Message:
    return aiomqtt.Message(topic="t", payload=payload, qos=0, retain=False,  # type: ignore[arg-type]
                           mid=1, properties=None)


async def _until(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


class TestReconnector:
    async def test_broker_restart_is_survived_with_backoff(
        self, broker: MosquittoProcess
    ) -> None:
        """A broker that goes away and comes back: retried with a growing wait, then
        connected again with the backoff reset; ``stop`` ends the run."""
        settings = parse_broker_url(broker.url)
        stop = asyncio.Event()
        waits: list[float] = []
        reconnector = Reconnector(what="test", stop=stop,
                                  backoff=Backoff(min_s=0.05, max_s=0.4),
                                  on_lost=lambda exc, delay: waits.append(delay))

        async def connection() -> None:
            async with settings.client() as client:
                reconnector.connected()

                async def drain() -> None:
                    async for _ in client.messages:
                        pass

                await run_until(stop, [drain()])

        running = asyncio.create_task(reconnector.run(connection))
        await _until(lambda: reconnector.connections == 1)
        await asyncio.to_thread(broker.stop)
        await _until(lambda: len(waits) >= 3)  # lost, then refused while down
        assert waits[0] <= 0.05 and max(waits) <= 0.4
        assert waits[2] > waits[0]  # it grows: 0.1..0.2 s after 0.025..0.05 s
        await asyncio.to_thread(broker.start)
        await _until(lambda: reconnector.connections == 2)
        assert reconnector.backoff.attempts == 0
        assert reconnector.reconnects == len(waits)
        stop.set()
        async with asyncio.timeout(5):
            await running

    async def test_stop_during_the_wait_returns_at_once(self) -> None:
        """Nobody listening: the loop waits its backoff, and a stop cuts the wait short."""
        settings = BrokerSettings(host="127.0.0.1", port=free_port())
        stop = asyncio.Event()
        reconnector = Reconnector(what="test", stop=stop,
                                  backoff=Backoff(min_s=30.0, max_s=30.0))

        async def connection() -> None:
            async with settings.client():
                pytest.fail("connected to a port nobody listens on")

        running = asyncio.create_task(reconnector.run(connection))
        await _until(lambda: reconnector.reconnects == 1)
        stop.set()
        async with asyncio.timeout(2):
            await running
        assert reconnector.connections == 0

    async def test_a_refusal_is_not_retried(self) -> None:
        """A ``BrokerError`` (bad password, ACL) ends the run: no retry can fix it."""
        reconnector = Reconnector(what="test", stop=asyncio.Event())

        async def connection() -> None:
            raise BrokerError("refused")

        with pytest.raises(BrokerError):
            await reconnector.run(connection)
        assert reconnector.reconnects == 0


class TestBackoff:
    def test_grows_with_jitter_to_the_cap_and_resets(self) -> None:
        """Waits lie in [ceiling/2, ceiling], the ceiling doubling up to max_s."""
        backoff = Backoff(min_s=0.1, max_s=1.0, rng=random.Random(7))
        waits = [backoff.next() for _ in range(8)]
        for n, wait in enumerate(waits):
            ceiling = min(1.0, 0.1 * 2**n)
            assert ceiling / 2 <= wait <= ceiling
        backoff.reset()
        assert backoff.next() <= 0.1


class TestPayloadBytes:
    def test_every_payload_type_becomes_bytes(self) -> None:
        """bytes pass through uncopied; bytearray, text, numbers and None are cleaned up."""
        raw = b"\x00{}"
        assert payload_bytes(_message(raw)) is raw
        assert payload_bytes(_message(bytearray(b"ab"))) == b"ab"
        assert payload_bytes(_message("é")) == "é".encode()
        assert payload_bytes(_message(12)) == b"12"
        assert payload_bytes(_message(None)) == b""


class TestRunUntil:
    async def test_stop_cancels_every_task(self) -> None:
        """Setting ``stop`` ends the run with every task cancelled."""
        stop = asyncio.Event()
        started: list[int] = []

        async def forever(n: int) -> None:
            started.append(n)
            await asyncio.Event().wait()

        running = asyncio.create_task(run_until(stop, [forever(1), forever(2)]))
        await _until(lambda: len(started) == 2)
        stop.set()
        async with asyncio.timeout(2):
            await running

    async def test_a_refusal_is_raised_before_the_disconnection_it_caused(self) -> None:
        """The first failure ends the run; a LapcastError wins over an MqttError."""

        async def disconnected() -> None:
            raise aiomqtt.MqttError("gone")

        async def refused() -> None:
            raise BrokerError("not authorized")

        with pytest.raises(BrokerError):
            await run_until(asyncio.Event(), [disconnected(), refused()])


class TestInbox:
    async def test_keeps_the_queue_aiomqtt_makes(self, broker: MosquittoProcess) -> None:
        """Messages aiomqtt queues can be drained from the Inbox without its iterator."""
        settings = parse_broker_url(broker.url)
        inbox = Inbox()
        async with settings.client(queue_type=inbox) as client:
            await client.subscribe("inbox/#", qos=1)
            for n in range(3):
                await client.publish(f"inbox/{n}", b"x", qos=1)
            await _until(lambda: inbox.queue.qsize() == 3, timeout=5)
            topics = [inbox.queue.get_nowait().topic.value for _ in range(3)]
        assert topics == ["inbox/0", "inbox/1", "inbox/2"]


class TestPublishDecodeSpeedup:
    def test_decodes_as_paho_does(self) -> None:
        """Every shape lapcast sends (QoS 0/1, retained, dup, no/one/two user properties)
        decodes to paho's own PublishPacket, types included; other properties go to paho."""
        from simulator.mqtt import workarounds

        assert workarounds.install_properties_speedup()
        assert workarounds.publish_decode_speedup_matches_paho()
        assert workarounds.install_publish_decode_speedup()
        assert workarounds.install_publish_decode_speedup()  # idempotent

    def test_what_paho_refuses_is_still_refused(self) -> None:
        """A null in a user property, a truncated packet or a property length past the end
        raise paho's MalformedPacket, as without the speedup."""
        from paho.mqtt.enums import MQTTProtocolVersion
        from paho.mqtt.exception import MalformedPacket

        from simulator.mqtt import workarounds

        def string(text: bytes) -> bytes:
            return len(text).to_bytes(2, "big") + text

        topic = string(b"t")
        bad_null = b"\x26" + string(b"k\x00") + string(b"v")
        for packet in (topic + b"\x00\x01" + bytes((len(bad_null),)) + bad_null,
                       topic + b"\x00\x01\x40\x26\x00",  # property length past the end
                       b"\x00\x09ab"):  # topic cut short
            with pytest.raises(MalformedPacket):
                workarounds._fast_decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)

    async def test_a_real_message_keeps_its_user_property(
        self, broker: MosquittoProcess
    ) -> None:
        """Through a real Mosquitto, with the speedup installed: payload, topic, QoS,
        retain flag and the published_at_ns user property arrive as sent."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from simulator.mqtt import workarounds

        assert workarounds.install_publish_decode_speedup()
        settings = parse_broker_url(broker.url)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = ("published_at_ns", "123456789")
        async with settings.client() as client:
            await client.subscribe("speedup/#", qos=1)
            await client.publish("speedup/a", b'{"seq":1}', qos=1, properties=props)
            await client.publish("speedup/b", b"plain", qos=0, retain=True)
            got = {}
            async with asyncio.timeout(5):
                async for message in client.messages:
                    got[message.topic.value] = message
                    if len(got) == 2:
                        break
        first, second = got["speedup/a"], got["speedup/b"]
        assert first.payload == b'{"seq":1}' and type(first.payload) is bytes
        assert first.qos == 1 and not first.retain
        assert first.properties.UserProperty == [("published_at_ns", "123456789")]  # type: ignore[union-attr]
        assert second.payload == b"plain" and second.qos == 0
        assert not hasattr(second.properties, "UserProperty")

