"""Network faults between a consumer and the broker, and between the engine and the broker.

Real processes (``lapcast replay`` of the shared 2024 race, ``lapcast consume
running-order``) and a real Mosquitto; one of the two links goes through a
``FaultProxy`` that the test breaks in turn: a clean cut of 10 s, a half-open
connection (bytes dropped both ways, no close, no RST), and a slow link. After each
fault the consumer's retained state converges to ``lapcast fold`` of the engine's
journal up to the same seq, and at the end to ``lapcast fold --json`` of the whole
journal: nothing lost, nothing double-counted. The time to detect each fault and to
recover from it is printed (``pytest -s``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
import msgspec
import pytest
import structlog

from consumers.testing import consumer_process, stop_process, wait_for
from lapcast.cli.fold_cmd import fold_source
from lapcast.mosquitto import MosquittoProcess
from lapcast.testing.proxy import FaultProxy
from simulator import topics
from simulator.connection import parse_broker_url

CONSUMER = "running-order"
# The 8-hour race in about 30 s: the three faults happen while it runs.
SPEED = 1000
CUT_S = 10.0
# Keep-alive must notice a half-open link within this (paho: 1-2x keepalive_s, + 1 s).
DETECT_WITHIN_S = 10.0

log = structlog.get_logger()


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


@dataclass
class Watch:
    """The latest documents of the session, read straight from the broker."""

    url: str
    session_id: str
    docs: dict[str, Any] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)  # topic -> last arrival (monotonic)

    @property
    def state_topic(self) -> str:
        return topics.state(self.session_id, CONSUMER)

    @property
    def health_topic(self) -> str:
        return topics.consumer_status(self.session_id, CONSUMER)

    @property
    def status_topic(self) -> str:
        return topics.status(self.session_id)

    async def run(self) -> None:
        client = parse_broker_url(self.url).client()
        async with client:
            for topic in (self.state_topic, self.health_topic, self.status_topic):
                await client.subscribe(topic, qos=1)
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray) and payload:
                    self.docs[message.topic.value] = msgspec.json.decode(payload)
                    self.at[message.topic.value] = time.monotonic()

    def state_seq(self) -> int:
        doc = self.docs.get(self.state_topic)
        return int(doc["seq"]) if doc else 0

    async def until(self, predicate: Any, *, timeout: float, what: str) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
        del what


@dataclass
class Link:
    """The engine and a consumer, one of them through the proxy."""

    side: Literal["consumer", "engine"]
    broker: MosquittoProcess
    proxy: FaultProxy
    session_id: str
    race_csv: Path
    tmp_path: Path
    watch: Watch
    report: list[str] = field(default_factory=list)
    behind: int = 0  # events the consumer lacked when the link came back

    @property
    def journal(self) -> Path:
        return self.tmp_path / "journal.jsonl"

    def journaled(self) -> list[bytes]:
        """The journal's complete lines now."""
        data = self.journal.read_bytes()
        return data[: data.rfind(b"\n") + 1].splitlines()

    def note(self, fault: str, detect_s: float | None, recover_s: float, seq: int,
             behind: int) -> None:
        line = (f"{self.side} link, {fault}: detected in "
                f"{'-' if detect_s is None else f'{detect_s:.2f} s'}, consumer {behind} "
                f"events behind the journal when the link was back, recovered "
                f"{recover_s:.2f} s later, converged at seq {seq}")
        self.report.append(line)
        print(line)
        log.warning("network fault", side=self.side, fault=fault, detect_s=detect_s,
                    recover_s=recover_s, seq=seq, behind=behind)

    async def converge(self, since: float, fault: float) -> tuple[float, int]:
        """Wait until the client is connected again (a new connection, made after
        ``fault``, that carries its messages) and the consumer holds everything
        journaled by then; check it against the fold of the
        journal up to its seq. Returns (seconds since ``since``, seq)."""
        reconnected = await self.proxy.reconnected(fault, timeout=30)
        # Connected at the MQTT level too: its status (engine) or health (consumer),
        # published every second at most, arrives from the new connection.
        topic = self.watch.status_topic if self.side == "engine" else self.watch.health_topic
        await self.watch.until(
            lambda: self.watch.at.get(topic, 0) > reconnected
            and self.watch.docs[topic].get("state") != "lost", timeout=30,
            what=f"{self.side} connected again")
        target = len(self.journaled())
        self.behind = target - self.watch.state_seq()
        await self.watch.until(lambda: self.watch.state_seq() >= target, timeout=45,
                               what=f"state at seq {target}")
        took = time.monotonic() - since
        doc = self.watch.docs[self.watch.state_topic]
        seq = int(doc["seq"])
        prefix = self.tmp_path / f"prefix-{seq}.jsonl"
        prefix.write_bytes(b"\n".join(self.journaled()[:seq]) + b"\n")
        expected = _plain(fold_source(str(prefix)).views())["running_order"]
        assert doc["epoch"] == 1
        assert doc["state"] == expected, f"state at seq {seq} differs from lapcast fold"
        return took, seq


@contextlib.asynccontextmanager
async def _link(side: Literal["consumer", "engine"], broker: MosquittoProcess,
                session_id: str, race_csv: Path, tmp_path: Path) -> AsyncIterator[Link]:
    async with FaultProxy("127.0.0.1", broker.port) as proxy:
        watch = Watch(broker.url, session_id)
        watcher = asyncio.create_task(watch.run())
        link = Link(side, broker, proxy, session_id, race_csv, tmp_path, watch)
        consumer = consumer_process(
            CONSUMER, broker_url=proxy.url if side == "consumer" else broker.url,
            session_id=session_id, state_dir=tmp_path / "state",
            log_file=tmp_path / "consumer.log")
        engine: subprocess.Popen[bytes] | None = None
        try:
            await wait_for(broker.url, watch.health_topic, lambda d: d.get("state") != "lost")
            engine = subprocess.Popen(
                [sys.executable, "-m", "lapcast", "-v", "replay", str(race_csv), "--broker",
                 proxy.url if side == "engine" else broker.url, "--session-id", session_id,
                 "--speed", str(SPEED), "--journal", str(link.journal)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "engine.log").open("wb"))
            yield link
        finally:
            # In a thread: the proxy lives in this event loop and must keep forwarding
            # while they stop (their last publications go through it).
            if engine is not None:
                code = await asyncio.to_thread(stop_process, engine)
                assert code == 0, (tmp_path / "engine.log").read_text()[-2000:]
            code = await asyncio.to_thread(stop_process, consumer)
            assert code == 0, (tmp_path / "consumer.log").read_text()[-2000:]
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher


async def _faults(link: Link) -> None:
    proxy, watch = link.proxy, link.watch
    await watch.until(lambda: watch.state_seq() >= 300, timeout=30, what="a running replay")

    # 1. A clean cut of 10 s: both sides closed, new connections refused meanwhile.
    start = time.monotonic()
    proxy.cut()
    await asyncio.sleep(CUT_S)
    proxy.restore()
    back = time.monotonic()
    tried = proxy.accepted_since(start)
    assert tried, "the client never tried to reconnect during the cut"
    took, seq = await link.converge(back, start)
    link.note("clean cut 10 s", tried[0] - start, took, seq, link.behind)

    # 2. Half-open: the connection goes silent both ways, no FIN, no RST.
    start = time.monotonic()
    proxy.blackhole()
    noticed = await proxy.next_connection(start, timeout=DETECT_WITHIN_S + 5)
    detect = noticed - start
    took, seq = await link.converge(noticed, start)
    link.note("half-open", detect, took, seq, link.behind)
    assert detect <= DETECT_WITHIN_S, f"a half-open link noticed only after {detect:.1f} s"

    # 3. A slow link: 250 ms each way and 16 KB/s, below the replay's rate, for 5 s.
    before = proxy.accepted[:]
    proxy.slow(latency_s=0.25, rate_bytes_s=16_000)
    await asyncio.sleep(5)
    proxy.restore()
    back = time.monotonic()
    took, seq = await link.converge(back, before[-1] - 1e-6)
    link.note("slow link 5 s", None, took, seq, link.behind)
    # Slow is not dead: keep-alive must not have dropped the connection.
    assert proxy.accepted == before, "the slow link was taken for a dead one"


async def _final(link: Link) -> None:
    watch = link.watch
    await watch.until(lambda: (watch.docs.get(watch.status_topic) or {}).get("state")
                      == "finished", timeout=90, what="the replay's end")
    total = watch.docs[watch.status_topic]["last_seq"]
    await watch.until(lambda: watch.state_seq() >= total, timeout=45, what="the last state")
    health = await wait_for(link.broker.url, watch.health_topic,
                            lambda d: d.get("state") == "live" and d["last_seq"] == total)
    assert health["dead_letters"] == 0 and health["refused"] == 0, health
    out = subprocess.run([sys.executable, "-m", "lapcast", "fold", str(link.journal), "--json"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    folded = json.loads(out)
    assert folded["events"] == total
    assert watch.docs[watch.state_topic]["state"]["rows"] == folded["running_order"]
    laps = sum(row["laps"] for row in folded["running_order"])
    print(f"{link.side} link: {total} events, {laps} laps, state = lapcast fold --json")


class TestNetworkFaults:
    @pytest.mark.parametrize("side", ["consumer", "engine"])
    async def test_cut_half_open_and_slow_link_converge_to_lapcast_fold(
        self, side: Literal["consumer", "engine"], broker: MosquittoProcess,
        session_id: str, race_csv: Path, tmp_path: Path
    ) -> None:
        """Each fault on the link is noticed (half-open within 10 s), and the state
        converges to `lapcast fold` after each and at the end."""
        async with _link(side, broker, session_id, race_csv, tmp_path) as link:
            await _faults(link)
            await _final(link)
