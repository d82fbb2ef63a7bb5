"""The catch-up service: journal ranges over MQTT v5 request/response, while running and after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import CatchupReply, CatchupRequest, encode
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.pacing import ManualClock
from simulator.replay.testing import generated_source

_reply = msgspec.json.Decoder(CatchupReply)


class Requester:
    """A consumer's side of the protocol: request, then collect the chunks of the answer."""

    def __init__(self, client: aiomqtt.Client, session: str) -> None:
        self.client = client
        self.session = session
        self.response_topic = f"{topics.catchup_reply_prefix(session)}/test/{uuid.uuid4().hex}"
        self.queue: asyncio.Queue[tuple[bytes | None, bytes]] = asyncio.Queue()

    async def listen(self) -> None:
        async for message in self.client.messages:
            correlation = getattr(message.properties, "CorrelationData", None)
            assert isinstance(message.payload, bytes)
            self.queue.put_nowait((correlation, message.payload))

    async def ask(self, payload: bytes, *, response_topic: bool = True,
                  timeout: float = 10.0) -> list[tuple[bytes | None, CatchupReply]]:
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        if response_topic:
            props.ResponseTopic = self.response_topic
        props.CorrelationData = correlation
        await self.client.publish(topics.catchup_request(self.session), payload, qos=1,
                                  properties=props)
        replies = []
        async with asyncio.timeout(timeout):
            while True:
                got, raw = await self.queue.get()
                reply = _reply.decode(raw)
                replies.append((got, reply))
                if reply.final:
                    return replies


@asynccontextmanager
async def requester(broker: MosquittoProcess, session: str) -> AsyncIterator[Requester]:
    settings = parse_broker_url(broker.url)
    async with aiomqtt.Client(**settings.client_kwargs()) as client:
        req = Requester(client, session)
        await client.subscribe(req.response_topic, qos=1)
        listener = asyncio.create_task(req.listen())
        try:
            yield req
        finally:
            listener.cancel()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


class TestCatchup:
    async def test_after_the_end_ranges_come_in_chunks_identical_to_the_journal(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """After the session ends the engine still answers: 1,000 events a chunk, final on
        the last, correlation data echoed, each event byte-identical to its journal line."""
        source = generated_source(session_id, cars=25, laps=100)  # 2,502 events
        journal = tmp_path / "j.jsonl"
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=journal, speed=None))
        task = asyncio.create_task(engine.run())
        try:
            await asyncio.wait_for(engine.wait_finished(), 30)
            async with requester(broker, session_id) as req:
                whole = await req.ask(encode(CatchupRequest(epoch=1, from_seq=1)))
                part = await req.ask(encode(CatchupRequest(epoch=1, from_seq=990,
                                                           to_seq=2010)))
        finally:
            engine.stop()
            await asyncio.wait_for(task, 20)
        lines = _lines(journal)
        assert [len(r.events) for _, r in whole] == [1000, 1000, 502]
        assert [r.final for _, r in whole] == [False, False, True]
        assert len({c for c, _ in whole}) == 1 and whole[0][0] is not None
        assert all(r.last_seq == 2502 and r.current_epoch == 1 and r.error is None
                   for _, r in whole)
        assert [encode(e) for _, r in whole for e in r.events] == lines
        assert [e.seq for _, r in part for e in r.events] == list(range(990, 2011))
        assert [len(r.events) for _, r in part] == [1000, 21]

    async def test_while_running_it_serves_what_is_journaled(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """Mid-session the answer holds the events journaled so far and says how far."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=5, laps=20, lap_ms=60_000)
        times = [e.session_time_ms for e in source.events()]
        journal = tmp_path / "j.jsonl"
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=journal, speed=1.0),
            clock=clock)
        task = asyncio.create_task(engine.run())
        try:
            await engine.wait_connected()
            clock.advance(300.0)
            upto = sum(1 for t in times if t <= 300_000)
            async with requester(broker, session_id) as req:
                for _ in range(100):
                    if engine.status()["last_seq"] == upto:
                        break
                    await asyncio.sleep(0.02)
                replies = await req.ask(encode(CatchupRequest(epoch=1, from_seq=2,
                                                              to_seq=10_000)))
        finally:
            engine.stop()
            await asyncio.wait_for(task, 20)
        (_, reply), = replies
        assert reply.last_seq == upto and reply.final
        assert [e.seq for e in reply.events] == list(range(2, upto + 1))

    async def test_refusals_and_empty_ranges(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """An unknown epoch and an undecodable request get an error; a range beyond the
        journal gets an empty final answer; a request without a response topic is ignored."""
        source = generated_source(session_id, cars=2, laps=5)
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=tmp_path / "j.jsonl",
            speed=None))
        task = asyncio.create_task(engine.run())
        try:
            await asyncio.wait_for(engine.wait_finished(), 20)
            async with requester(broker, session_id) as req:
                unknown = await req.ask(encode(CatchupRequest(epoch=9, from_seq=1)))
                garbage = await req.ask(b'{"epoch": "one"}')
                beyond = await req.ask(encode(CatchupRequest(epoch=1, from_seq=500)))
                try:
                    await req.ask(encode(CatchupRequest(epoch=1, from_seq=1)),
                                  response_topic=False, timeout=1.0)
                except TimeoutError:
                    ignored = True
                else:
                    ignored = False
        finally:
            engine.stop()
            await asyncio.wait_for(task, 20)
        assert ignored
        (_, r), = unknown
        assert r.error == "unknown epoch 9 (the journal holds epoch 1)" and r.final
        (_, r), = garbage
        assert r.error is not None and "bad catch-up request" in r.error
        (_, r), = beyond
        assert r.error is None and r.events == [] and r.last_seq == engine.total_events

    async def test_earlier_epochs_stay_servable_after_a_backward_seek(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """After a backward seek epoch 1 is still served, and replies name epoch 2 as current."""
        clock = ManualClock(0.0)
        source = generated_source(session_id, cars=3, laps=10, lap_ms=60_000)
        times = [e.session_time_ms for e in source.events()]
        journal = tmp_path / "j.jsonl"
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(broker.url), journal_path=journal, speed=1.0),
            clock=clock)
        task = asyncio.create_task(engine.run())
        try:
            await engine.wait_connected()
            clock.advance(300.0)
            first = sum(1 for t in times if t <= 300_000)
            while engine.status()["last_seq"] < first:
                await asyncio.sleep(0.02)
            engine.seek(100_000)
            async with requester(broker, session_id) as req:
                old = await req.ask(encode(CatchupRequest(epoch=1, from_seq=1)))
                new = await req.ask(encode(CatchupRequest(epoch=2, from_seq=1)))
        finally:
            engine.stop()
            await asyncio.wait_for(task, 20)
        (_, r1), = old
        (_, r2), = new
        assert [e.seq for e in r1.events] == list(range(1, first + 1))
        assert r1.current_epoch == 2 and r2.current_epoch == 2
        assert all(e.epoch == 2 for e in r2.events)
        assert r2.events and r2.events[-1].session_time_ms <= 100_000
