"""End to end on the shared 2024 race: the replay engine and `lapcast consume` processes.

The engine is ``lapcast replay`` as a process, or the same ``ReplayEngine`` in the
test's event loop where the test must act at chosen points of the replay; every
consumer is a real ``lapcast consume`` subprocess catching up through the engine's
MQTT v5 catch-up service. The reference is ``lapcast fold`` of the engine's journal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.registry import BUILTIN, load_consumer
from consumers.testing import consumer_process, stop_process, wait_for
from lapcast.cli.fold_cmd import fold_source
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.sources import load_source


def _plain(value: Any) -> Any:
    """As it looks after a trip through JSON (the consumers publish JSON)."""
    return msgspec.json.decode(msgspec.json.encode(value))


class Replay:
    """The race replayed by the real engine, plus consumer processes, for one test."""

    def __init__(self, broker: MosquittoProcess, session_id: str, race_csv: Path,
                 tmp_path: Path) -> None:
        self.url = broker.url
        self.session_id = session_id
        self.race_csv = race_csv
        self.journal = tmp_path / "journal.jsonl"
        self.state_dir = tmp_path / "state"
        self.tmp_path = tmp_path
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {}

    def consume(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        proc = consumer_process(name, broker_url=self.url, session_id=self.session_id,
                                state_dir=self.state_dir, extra=extra,
                                log_file=self.tmp_path / f"{name}.log")
        self.procs.setdefault(name, []).append(proc)
        return proc

    async def ready(self, name: str) -> None:
        await wait_for(self.url, topics.consumer_status(self.session_id, name),
                       lambda d: d.get("state") != "lost")

    @asynccontextmanager
    async def engine(self, *, speed: float | None, batch: int = 1) -> Any:
        source = load_source(str(self.race_csv), session_id=self.session_id)
        engine = ReplayEngine(source, ReplaySettings(
            broker=parse_broker_url(self.url), journal_path=self.journal, speed=speed,
            batch=batch))
        task = asyncio.create_task(engine.run())
        try:
            yield engine
        finally:
            # The catch-up service stays up until the consumers are done with it.
            engine.stop()
            await task

    def expected(self) -> dict[str, Any]:
        """`lapcast fold` of the engine's journal: snake_case name -> view."""
        views: dict[str, Any] = _plain(fold_source(str(self.journal)).views())
        return views

    async def final_state(self, name: str, seq: int) -> Any:
        doc = await wait_for(self.url, topics.state(self.session_id, name),
                             lambda d: d["seq"] >= seq, timeout=90)
        assert (doc["epoch"], doc["seq"]) == (1, seq)
        return doc["state"]


@pytest.fixture
def replay(broker: MosquittoProcess, session_id: str, race_csv: Path,
           tmp_path: Path) -> Iterator[Replay]:
    r = Replay(broker, session_id, race_csv, tmp_path)
    yield r
    for procs in r.procs.values():
        for proc in procs:
            stop_process(proc)


async def _published(engine: ReplayEngine, count: int) -> None:
    async with asyncio.timeout(60):
        while engine.stats.events_published < count:
            await asyncio.sleep(0.005)


class TestEndToEnd:
    async def test_three_consumers_at_speed_max_equal_lapcast_fold(
        self, replay: Replay
    ) -> None:
        """`lapcast replay --speed max` of the race: each consumer's state is `lapcast fold`'s."""
        for name in BUILTIN:
            replay.consume(name)
        for name in BUILTIN:
            await replay.ready(name)
        engine = subprocess.Popen(
            [sys.executable, "-m", "lapcast", "replay", str(replay.race_csv), "--broker",
             replay.url, "--session-id", replay.session_id, "--speed", "max", "--batch", "5",
             "--journal", str(replay.journal)],
            stdout=subprocess.DEVNULL, stderr=(replay.tmp_path / "replay.log").open("wb"))
        try:
            status = await wait_for(replay.url, topics.status(replay.session_id),
                                    lambda d: d.get("state") == "finished", timeout=120)
            total = status["last_seq"]
            states = {name: await replay.final_state(name, total) for name in BUILTIN}
        finally:
            # Stopped only now: its catch-up service stays up while the consumers need it.
            assert stop_process(engine) == 0
        expected = replay.expected()
        for name in BUILTIN:
            key = load_consumer(name).json_key
            assert states[name] == expected.get(key), f"{name} differs from lapcast fold"
        # And against the command itself, as a user would run it.
        out = subprocess.run([sys.executable, "-m", "lapcast", "fold", str(replay.journal),
                              "--json"], check=True, capture_output=True, text=True).stdout
        folded = json.loads(out)
        assert folded["events"] == total
        assert states["running-order"]["rows"] == folded["running_order"]
        assert states["class-poles"] == folded["class_poles"]
        for name in BUILTIN:
            health = await wait_for(replay.url, topics.consumer_status(replay.session_id, name),
                                    lambda d: d["state"] == "live")
            assert health["last_seq"] == total
            assert health["dead_letters"] == 0 and health["refused"] == 0

    async def test_late_start_and_sigkill_restarts_end_in_the_offline_state(
        self, replay: Replay
    ) -> None:
        """One consumer joins half-way; another is SIGKILLed and restarted twice: both exact."""
        replay.consume("class-poles", "--checkpoint-events", "300")
        await replay.ready("class-poles")
        # 8 hours at 4000x: about 7 s of replay, events every few milliseconds.
        async with replay.engine(speed=4000.0) as engine:
            total = engine.total_events
            for fraction, action in ((0.25, "kill"), (0.5, "join"), (0.75, "kill")):
                await _published(engine, int(total * fraction))
                if action == "join":
                    replay.consume("running-order")  # starts half-way through the race
                    continue
                victim = replay.procs["class-poles"][-1]
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                replay.consume("class-poles", "--checkpoint-events", "300")
            await engine.wait_finished()
            assert engine.stats.events_published == total
            states = {name: await replay.final_state(name, total)
                      for name in ("class-poles", "running-order")}
        expected = replay.expected()
        assert states["class-poles"] == expected["class_poles"]
        assert states["running-order"] == expected["running_order"]
        assert [p.returncode for p in replay.procs["class-poles"][:2]] == [-signal.SIGKILL] * 2
