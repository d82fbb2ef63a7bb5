"""The live consumer runner over a real Mosquitto, as real `lapcast consume` processes.

A test publisher plays the engine's part of the contract (events with
``published_at_ns``, batches, the retained status, a journal file to catch up
from); the consumer here is a small one defined in this file (laps per car), run
as ``test_runner:LAPS`` with this folder on the subprocess's PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers import checkpoint
from consumers.api import Consumer
from consumers.checkpoint_schedule import CHECKPOINT_BUDGET
from consumers.folding import fold_all
from consumers.testing import (
    TestPublisher,
    consumer_process,
    stop_process,
    wait_for,
    write_journal,
)
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import CatchupReply, Event, LapCompleted, encode
from simulator.journal import JournalWriter
from simulator.replay.catchup import CatchupService
from simulator.replay.testing import generated_events

TESTS = Path(__file__).resolve().parent
NAME = "test_runner:LAPS"


def _count(laps: dict[str, int], event: Event) -> dict[str, int]:
    if isinstance(event, LapCompleted):
        laps[event.car] = laps.get(event.car, 0) + 1
    return laps


LAPS = Consumer(name="laps", description="laps completed per car", initial=dict, apply=_count)


def _record_changes(changes: dict[str, Any]) -> None:
    # A live side effect, as a user's hook might have: here, a file the test reads.
    with open(os.environ["LAPS_CHANGES_FILE"], "ab") as out:
        out.write(msgspec.json.encode(changes) + b"\n")


def _fragile(laps: dict[str, int], event: Event) -> dict[str, int]:
    if isinstance(event, LapCompleted) and event.lap == 3 and event.car == "2":
        laps[event.car] = -1  # half an update, then the bug
        raise ZeroDivisionError("a bug in the projection")
    return _count(laps, event)


FRAGILE = Consumer(name="laps", description="laps per car, with a bug", initial=dict,
                   apply=_fragile)

HOOKED = Consumer(name="laps", description="laps per car, with a hook", initial=dict,
                  apply=_count, on_changes=_record_changes)


def _busy(seconds: float) -> None:
    # CPU time, as a big state's rendering or pickling takes (a sleep would yield; the
    # budgets count this thread's CPU time, which a preemption does not add to).
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


SLOW_S = 0.04  # how long this stand-in for a 10,000-car state renders and pickles


class SlowLaps(dict[str, int]):
    """Laps per car that take ``SLOW_S`` to pickle (a checkpoint)."""

    def __reduce__(self) -> Any:
        _busy(SLOW_S)
        return (SlowLaps, (dict(self),))


def _slow_view(laps: SlowLaps) -> dict[str, int]:
    _busy(SLOW_S)
    return dict(laps)


SLOW = Consumer(name="laps", description="laps per car, a state slow to render and pickle",
                initial=SlowLaps, apply=_count, view=_slow_view)


def offline(events: list[Event]) -> Any:
    return msgspec.to_builtins(fold_all([LAPS], events)[0].view())


class Harness:
    """One session's topics, journal and consumer processes, cleaned up after the test."""

    def __init__(self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        self.url = broker.url
        self.session_id = session_id
        self.journal = tmp_path / "journal.jsonl"
        self.state_dir = tmp_path / "state"
        self.log = tmp_path / "consumer.log"
        self.state_topic = topics.state(session_id, "laps")
        self.health_topic = topics.consumer_status(session_id, "laps")
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, journal: bool = True,
              name: str = NAME) -> subprocess.Popen[bytes]:
        proc = consumer_process(
            name, broker_url=self.url, session_id=self.session_id, state_dir=self.state_dir,
            journal=self.journal if journal else None,
            extra=["--checkpoint-events", "50", "--publish-ms", "20", *extra],
            pythonpath=[TESTS], log_file=self.log,
        )
        self.procs.append(proc)
        return proc

    async def ready(self) -> Any:
        """Wait until the consumer has subscribed (it then publishes its health)."""
        return await wait_for(self.url, self.health_topic, lambda d: d.get("state") != "lost")

    async def state_at(self, seq: int, *, epoch: int = 1, timeout: float = 30) -> Any:
        return await wait_for(self.url, self.state_topic,
                              lambda d: (d["epoch"], d["seq"]) == (epoch, seq), timeout=timeout)

    async def health_where(self, predicate: Any, timeout: float = 15) -> Any:
        return await wait_for(self.url, self.health_topic, predicate, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def harness(broker: MosquittoProcess, session_id: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(broker, session_id, tmp_path)
    yield h
    for proc in h.procs:
        stop_process(proc)


async def publish_live(pub: TestPublisher, h: Harness, events: list[Event], *,
                       batch: int = 1, pause_every: int = 0, pause_s: float = 0.0) -> None:
    """Journal, then publish (write-ahead, as the engine does)."""
    for start in range(0, len(events), batch):
        part = events[start:start + batch]
        write_journal(h.journal, part)
        await pub.events(part, batch=batch)
        if pause_every and (start // batch) % pause_every == pause_every - 1:
            await asyncio.sleep(pause_s)


class TestLiveFold:
    async def test_live_batched_stream_equals_offline_fold(self, harness: Harness) -> None:
        """Events in batches, live: the retained state equals the offline fold, stamped."""
        h = harness
        events = generated_events(h.session_id, cars=6, laps=30)
        proc = h.start()
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events, batch=7)
            await pub.status(epoch=1, last_seq=len(events), state="finished")
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        assert doc["projection"] == "laps" and doc["session_id"] == h.session_id
        assert doc["session_time_ms"] == events[-1].session_time_ms
        assert doc["published_at_ns"] > 0
        # The health that follows the state document (an earlier "live" one, at the
        # journal's head of the moment, may still be the retained one for a while).
        health = await h.health_where(
            lambda d: d["state"] == "live" and d["last_seq"] == len(events))
        assert health["lag_events"] == 0
        assert health["dead_letters"] == 0 and health["refused"] == 0

        assert stop_process(proc) == 0
        saved = checkpoint.load(checkpoint.checkpoint_path(h.state_dir, h.session_id, "laps"),
                                session_id=h.session_id, consumer="laps")
        assert saved is not None and saved.seq == len(events)
        stopped = await h.health_where(lambda d: d["state"] == "stopped")
        assert stopped["last_seq"] == len(events)

    async def test_changes_carry_only_changed_rows(self, harness: Harness) -> None:
        """The changes topic carries the rows that differ from the previous publication."""
        h = harness
        events = generated_events(h.session_id, cars=3, laps=2)
        h.start("--publish-ms", "1")
        await h.ready()
        changes_topic = topics.state_changes(h.session_id, "laps")
        seen: list[dict[str, Any]] = []

        def collect(doc: dict[str, Any]) -> bool:
            seen.append(doc)
            return bool(doc["seq"] >= last_lap)

        last_lap = max(e.seq for e in events if isinstance(e, LapCompleted))
        watcher = asyncio.create_task(wait_for(h.url, changes_topic, collect))
        await asyncio.sleep(0.3)  # the watcher subscribes
        async with TestPublisher(h.url, h.session_id) as pub:
            for event in events:
                await publish_live(pub, h, [event])
                await asyncio.sleep(0.02)
        await watcher
        merged: dict[str, Any] = {}
        for doc in seen:
            assert doc["changes"], "a changes message without changes"
            for car, row in doc["changes"].items():
                assert merged.get(car) != row, f"unchanged row {car} in {doc}"
            merged.update(doc["changes"])
        assert merged == offline(events)


    async def test_on_changes_hook_sees_every_change(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The consumer's on_changes hook is called live with the changed rows."""
        h = harness
        changes_file = tmp_path / "changes.jsonl"
        monkeypatch.setenv("LAPS_CHANGES_FILE", str(changes_file))
        events = generated_events(h.session_id, cars=4, laps=6)
        h.start(name="test_runner:HOOKED")
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events, batch=2)
        await h.state_at(len(events))

        def merged() -> dict[str, Any]:
            rows: dict[str, Any] = {}
            if changes_file.exists():
                for line in changes_file.read_bytes().splitlines():
                    rows.update(msgspec.json.decode(line))
            return rows

        async with asyncio.timeout(10):  # the hook runs just after the publication
            while merged() != offline(events):
                await asyncio.sleep(0.05)


class TestBudgets:
    async def test_a_state_slow_to_render_and_pickle_does_not_starve_the_fold(
            self, harness: Harness) -> None:
        """A render of 40 ms (CPU) stretches the coalescing to 5 x 40 ms, a pickle of 40 ms
        spaces checkpoints by 50 x 40 ms, however small --publish-ms and
        --checkpoint-events are: the stream is folded as it comes, to the same end."""
        h = harness
        events = generated_events(h.session_id, cars=10, laps=40)  # 402 events
        h.start("--publish-ms", "1", "--checkpoint-events", "1", "--checkpoint-ms", "1",
                name="test_runner:SLOW")
        await h.ready()
        arrivals: list[tuple[float, int]] = []

        def collect(doc: dict[str, Any]) -> bool:
            arrivals.append((time.monotonic(), doc["seq"]))
            return bool(doc["seq"] >= len(events))

        watcher = asyncio.create_task(wait_for(h.url, h.state_topic, collect))
        await asyncio.sleep(0.3)  # the watcher subscribes
        started = time.monotonic()
        async with TestPublisher(h.url, h.session_id) as pub:
            # About 2 s of stream: 5 events every 25 ms.
            await publish_live(pub, h, events, batch=5, pause_every=1, pause_s=0.025)
            published = time.monotonic()
            await pub.status(epoch=1, last_seq=len(events), state="finished")
        doc = await watcher
        assert doc["state"] == offline(events)
        # Kept up: the last state came within a few renders of the last event.
        assert arrivals[-1][0] - published < 1.0
        live = [t for t, _ in arrivals if t >= started]
        gaps = [b - a for a, b in itertools.pairwise(live)]
        assert len(gaps) >= 3
        # Every 5 x 40 ms, not every 1 ms (the median: one arrival can be late).
        assert sorted(gaps)[len(gaps) // 2] >= 0.8 * 5 * SLOW_S, gaps
        assert len(live) <= (arrivals[-1][0] - started) / (5 * SLOW_S) + 2, gaps
        health = await h.health_where(lambda d: d["last_seq"] == len(events))
        seconds = published - started
        # Not one a millisecond (or one an event): at most one per 50 x 40 ms, plus the first.
        assert 1 <= health["checkpoints"] <= seconds / (CHECKPOINT_BUDGET * SLOW_S) + 2, (
            health, seconds)


class TestCatchup:
    async def test_late_start_catches_up_to_the_end_from_the_journal(
        self, harness: Harness
    ) -> None:
        """A consumer started after the session ended folds the whole journal."""
        h = harness
        events = generated_events(h.session_id, cars=8, laps=40)
        write_journal(h.journal, events)
        async with TestPublisher(h.url, h.session_id) as pub:
            await pub.status(epoch=1, last_seq=len(events), state="finished")
        h.start()
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        health = await h.health_where(lambda d: d["state"] == "live")
        assert health["catchups"] >= 1 and health["lag_events"] == 0

    async def test_gap_on_the_wire_is_fetched_before_newer_events(
        self, harness: Harness
    ) -> None:
        """Events lost on the wire are caught up; later ones wait and apply in order."""
        h = harness
        events = generated_events(h.session_id, cars=5, laps=20)
        h.start()
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events[:10])
            write_journal(h.journal, events[10:30])  # journaled, never published
            await publish_live(pub, h, events[30:])
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        health = await h.health_where(lambda d: d["state"] == "live")
        assert health["catchups"] >= 2  # the sync at connect, then the gap

    async def test_engine_starting_late_is_asked_again_at_once(self, harness: Harness) -> None:
        """A catch-up request sent before the engine ran is re-sent when it shows up.

        The consumer waits up to 30 s for an answer; the engine's service (the real
        ``CatchupService`` over a real journal) starts after the request was lost.
        """
        h = harness
        events = generated_events(h.session_id, cars=3, laps=6)
        h.start("--catchup-timeout", "30", journal=False)
        await h.ready()
        journal = JournalWriter(h.journal, session_id=h.session_id)
        for event in events:
            journal.append(event.epoch, event.seq, encode(event))
        journal.sync()
        service = CatchupService(journal, current_epoch=lambda: 1, session_id=h.session_id)
        async with TestPublisher(h.url, h.session_id) as pub, \
                parse_broker_url(h.url).client() as engine:
            await pub.events(events[8:])  # 1..8 were lost on the wire
            await engine.subscribe(topics.catchup_request(h.session_id), qos=1)

            async def serve() -> None:
                async for message in engine.messages:
                    await service.handle(engine, message)

            server = asyncio.create_task(serve())
            await pub.status(epoch=1, last_seq=len(events))  # the engine shows up
            try:
                doc = await h.state_at(len(events), timeout=10)
            finally:
                server.cancel()
        journal.close()
        assert doc["state"] == offline(events)

    async def test_backward_seek_epoch_drops_the_state(self, harness: Harness) -> None:
        """A higher epoch folds from seq 1 again: the state is that epoch's alone."""
        h = harness
        first = generated_events(h.session_id, cars=4, laps=10)
        second = [msgspec.structs.replace(e, epoch=2)
                  for e in generated_events(h.session_id, cars=3, laps=4)]
        h.start()
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, first)
            await h.state_at(len(first))
            write_journal(h.journal, second[:5])  # seq 1..5 of epoch 2 only in the journal
            await publish_live(pub, h, second[5:])
        doc = await h.state_at(len(second), epoch=2)
        assert doc["state"] == offline(second)


class TestBadInput:
    async def test_injected_messages_change_only_the_dead_letter_count(
        self, harness: Harness
    ) -> None:
        """Duplicates, reordering, malformed and forged messages: same state, counted."""
        h = harness
        events = generated_events(h.session_id, cars=4, laps=10)
        h.start("--max-payload-bytes", "4096")
        await h.ready()
        letters: list[dict[str, Any]] = []

        def collect(letter: dict[str, Any]) -> bool:
            letters.append(letter)
            return len(letters) == 7

        dead = asyncio.create_task(wait_for(h.url, topics.dead_letter(h.session_id), collect))
        await asyncio.sleep(0.3)
        template = msgspec.json.decode(encode(events[5]))
        forged = msgspec.structs.replace(events[5], session_id="someone-else")
        async with TestPublisher(h.url, h.session_id) as pub:
            write_journal(h.journal, events)
            # Reordered in pairs, every event sent twice.
            for i in range(0, len(events) - 1, 2):
                await pub.events([events[i + 1], events[i]])
                await pub.events([events[i], events[i + 1]])
                if i == 4:
                    await pub.raw(b"this is not an event")
                    await pub.raw(msgspec.json.encode({**template, "schema_version": 99}))
                    await pub.raw(msgspec.json.encode({**template, "lap": 0}))
                    await pub.raw(msgspec.json.encode({**template, "seq": "six"}))
                    await pub.raw(encode(forged))
                    await pub.raw(encode(events[6]) + b" " * 5000)
                    await pub.raw(encode(events[7]), retain=True)
            await pub.events(events[len(events) // 2 * 2:])
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        await dead
        reasons = [d["reason"] for d in letters]
        assert sum("does not decode or fails validation" in r for r in reasons) == 3
        assert sum("unknown schema version" in r for r in reasons) == 1
        assert sum("someone-else" in r for r in reasons) == 1
        assert sum("oversized" in r for r in reasons) == 1
        assert sum("retained" in r for r in reasons) == 1
        assert base64.b64decode(letters[0]["payload_base64"]) == b"this is not an event"
        assert all(d["consumer"] == "laps" and d["topic"] == topics.events(h.session_id)
                   for d in letters)
        # Every event was sent twice: all the second copies were ignored as duplicates.
        health = await h.health_where(lambda d: d["last_seq"] == len(events)
                                      and d["duplicates"] >= len(events))
        assert (health["dead_letters"], health["refused"]) == (7, 3)

    async def test_a_catchup_reply_steered_onto_the_status_topic_is_refused(
        self, harness: Harness
    ) -> None:
        """Only the engine's own status moves the head: a reply shaped like one is refused."""
        h = harness
        events = generated_events(h.session_id, cars=3, laps=6)
        h.start()
        await h.ready()
        steered = CatchupReply(epoch=99, last_seq=0, current_epoch=1, error="unknown epoch")
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events[:10])
            await pub.raw(encode(steered), topic=topics.status(h.session_id), stamp=False)
            await pub.raw(msgspec.json.encode({"state": "running", "session_id": "other",
                                               "epoch": 5, "last_seq": 10**6}),
                          topic=topics.status(h.session_id), stamp=False)
            await publish_live(pub, h, events[10:])
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        health = await h.health_where(lambda d: d["refused"] == 2)
        assert health["head_epoch"] == 1 and health["state"] == "live"

    async def test_forged_retained_state_is_refused_and_overwritten(
        self, harness: Harness
    ) -> None:
        """A retained state without a stamp is counted and replaced by the consumer's own."""
        h = harness
        events = generated_events(h.session_id, cars=3, laps=5)
        h.start()
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events)
            await h.state_at(len(events))
            await pub.raw(msgspec.json.encode({"state": {"1": 999}}), topic=h.state_topic,
                          retain=True, stamp=False)
        health = await h.health_where(lambda d: d["refused"] == 1)
        assert health["dead_letters"] == 1
        doc = await wait_for(h.url, h.state_topic, lambda d: "seq" in d)
        assert doc["seq"] == len(events) and doc["state"] == offline(events)


class TestFailures:
    async def test_a_fold_that_raises_stops_the_consumer_naming_the_event(
        self, harness: Harness
    ) -> None:
        """A projection bug stops the process (exit 2) naming the event; no checkpoint of it."""
        h = harness
        events = generated_events(h.session_id, cars=3, laps=5)
        bad = next(e for e in events if isinstance(e, LapCompleted)
                   and e.lap == 3 and e.car == "2")
        # No checkpoint before the failure: the stop must not write one of the broken state.
        proc = h.start("--checkpoint-events", "100000", "--checkpoint-ms", "100000",
                       name="test_runner:FRAGILE")
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            # In batches: the failing event sits inside a run applied in one step.
            batch = 5 if (bad.seq - 1) % 5 else 4
            await publish_live(pub, h, events, batch=batch)
        assert await asyncio.to_thread(proc.wait, 30) == 2
        assert f"failed to apply LapCompleted epoch 1 seq {bad.seq}" in h.log_text()
        path = checkpoint.checkpoint_path(h.state_dir, h.session_id, "laps")
        assert checkpoint.load(path, session_id=h.session_id, consumer="laps") is None

    async def test_a_journal_of_another_session_is_refused(self, harness: Harness) -> None:
        """`--journal` naming another session's journal exits 2 and says so."""
        h = harness
        write_journal(h.journal, generated_events("someone-else", cars=2, laps=2))
        proc = h.start()
        assert await asyncio.to_thread(proc.wait, 30) == 2
        assert "a journal of session 'someone-else'" in h.log_text()


class TestCrashes:
    async def test_sigkill_twice_during_the_stream_ends_in_the_offline_state(
        self, harness: Harness
    ) -> None:
        """Killed with SIGKILL and restarted twice mid-stream, the consumer ends exact."""
        h = harness
        events = generated_events(h.session_id, cars=10, laps=60)
        h.start()
        await h.ready()
        third = len(events) // 3
        async with TestPublisher(h.url, h.session_id) as pub:
            for part in (events[:third], events[third:2 * third]):
                await publish_live(pub, h, part, batch=3, pause_every=10, pause_s=0.01)
                h.procs[-1].send_signal(signal.SIGKILL)
                h.procs[-1].wait()
                h.start()
            await publish_live(pub, h, events[2 * third:], batch=3)
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        assert all(p.returncode == -signal.SIGKILL for p in h.procs[:2])

    async def test_last_will_says_lost_after_sigkill(self, harness: Harness) -> None:
        """A consumer that dies without a goodbye leaves its health saying "lost"."""
        h = harness
        proc = h.start()
        await h.ready()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        health = await h.health_where(lambda d: d["state"] == "lost")
        assert health["consumer"] == "laps" and health["session_id"] == h.session_id

    async def test_durable_session_queues_events_while_stopped(self, harness: Harness) -> None:
        """Stopped cleanly, the consumer gets the events published meanwhile from its session.

        No journal and nobody answering catch-up: only the broker's queue for the
        durable session (clean_start=False, session expiry) can deliver them. The
        engine's retained status says it runs (a consumer believes nothing without it).
        """
        h = harness
        events = generated_events(h.session_id, cars=3, laps=10)
        proc = h.start("--catchup-timeout", "0.5", journal=False)
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await pub.status(epoch=1, last_seq=0)
            await pub.events(events[:10])
            await h.state_at(10)
            assert stop_process(proc) == 0
            await pub.events(events[10:])
        h.start("--catchup-timeout", "0.5", journal=False)
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)

    async def test_broker_restart_reconnects_and_resumes(
        self, harness: Harness, broker: MosquittoProcess
    ) -> None:
        """The broker goes away and comes back: the consumer reconnects and ends exact."""
        h = harness
        events = generated_events(h.session_id, cars=4, laps=15)
        h.start()
        await h.ready()
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events[:20])
            await h.state_at(20)
        broker.restart()
        write_journal(h.journal, events[20:30])  # published while the broker was down
        async with TestPublisher(h.url, h.session_id) as pub:
            await publish_live(pub, h, events[30:])
        doc = await h.state_at(len(events))
        assert doc["state"] == offline(events)
        health = await h.health_where(lambda d: d["reconnects"] >= 1)
        assert health["lag_events"] == 0
