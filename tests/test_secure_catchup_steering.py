"""Catch-up replies go only where replies belong, whoever asks.

A consumer's user may publish catch-up requests, and a request names its own MQTT v5
response topic; the engine's user may write on the events, meta and status topics.
Unless the engine checks the response topic, a consumer could make it publish there
(a confused deputy): a reply on the status topic carries ``epoch`` and ``last_seq``,
which the consumers read as the engine's position.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.secure import PROJECTIONS, SecureSession

from simulator import topics
from simulator.contract import CatchupRequest, encode

pytestmark = pytest.mark.broker


class TestSecureCatchupSteering:
    async def test_secure_catchup_replies_cannot_be_steered_onto_the_engine_topics(
        self, secure_session: SecureSession, race_csv: Path
    ) -> None:
        """A consumer's catch-up request naming events or status as its response topic
        makes the engine publish nothing there; no projection changes."""
        s = secure_session
        last, before = await s.run_to_the_end(race_csv)
        heard: list[tuple[str, bytes]] = []
        watched = [topics.events(s.session_id), topics.status(s.session_id),
                   topics.meta(s.session_id)]

        async def listen() -> None:
            async with s.settings("running-order").client() as client:
                await client.subscribe([(t, 1) for t in watched])
                subscribed.set()
                async for message in client.messages:
                    if not message.retain:
                        assert isinstance(message.payload, bytes)
                        heard.append((message.topic.value, message.payload))

        subscribed = asyncio.Event()
        listener = asyncio.create_task(listen())
        await asyncio.wait_for(subscribed.wait(), 10)
        async with s.settings("class-poles").client() as consumer:
            for target in watched:
                for request in (CatchupRequest(epoch=1, from_seq=1, to_seq=5),
                                CatchupRequest(epoch=99, from_seq=1)):
                    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    props.ResponseTopic = target
                    props.CorrelationData = b"forged"
                    await consumer.publish(topics.catchup_request(s.session_id),
                                           encode(request), qos=1, properties=props)
        # The engine's status loop republishes its status (state "finished"): only
        # catch-up replies, which carry "final", would be the forged ones.
        await asyncio.sleep(2)
        listener.cancel()
        steered = [(t, p) for t, p in heard if b'"final"' in p]
        after = await s.states(lambda st: len(st) == len(PROJECTIONS))
        health = await s.health(lambda h: all(n in h for n in PROJECTIONS))
        for name in PROJECTIONS:
            assert after[name]["seq"] == last and after[name] == before[name], name
            # A reply taken for the engine's status would have set a phantom epoch 99.
            assert (health[name]["head_epoch"], health[name]["head_seq"]) == (1, last), name
        assert not steered, f"catch-up replies published on {sorted({t for t, _ in steered})}"
