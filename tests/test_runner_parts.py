"""The consumer runtime's small parts, each on its own: the publication schedule, the
latency stamps, the health document, the dead-letter outbox, the checkpoint schedule."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import msgspec

from consumers import checkpoint
from consumers.api import Consumer
from consumers.checkpoint_schedule import CheckpointSchedule
from consumers.dead_letter import DeadLetterOutbox
from consumers.folding import Folder
from consumers.guard import Refusal
from consumers.health import Counters, Health
from consumers.publisher import AtMostEvery
from consumers.sequencer import Offer, Sequencer
from consumers.stamps import Stamps
from simulator.contract import Event, LapCompleted


def _apply(seen: list[int], event: Event) -> list[int]:
    return [*seen, event.seq]


SEQS = Consumer(name="seqs", description="every seq applied", initial=list, apply=_apply)


def _lap(seq: int) -> Event:
    return LapCompleted(session_id="s", epoch=1, seq=seq, session_time_ms=seq * 1000,
                        car="7", driver="D", lap=seq, lap_time_ms=90_000)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestAtMostEvery:
    def test_first_at_once_then_at_most_every_interval(self) -> None:
        """Nothing published yet: at once. Then the rest of the interval is waited."""
        clock = Clock()
        schedule = AtMostEvery(0.1, clock=clock)
        assert schedule.wait_s() == 0
        schedule.done()
        clock.now += 0.03
        assert abs(schedule.wait_s() - 0.07) < 1e-9
        clock.now += 0.5
        assert schedule.wait_s() == 0

    def test_a_costly_publication_stretches_the_interval(self) -> None:
        """A rendering of 50 ms with a budget of 5 means at most one every 250 ms."""
        clock = Clock()
        schedule = AtMostEvery(0.1, budget=5, clock=clock)
        schedule.done()
        assert abs(schedule.wait_s(cost_s=0.05) - 0.25) < 1e-9
        assert abs(schedule.wait_s(cost_s=0.001) - 0.1) < 1e-9


class TestStamps:
    def test_latest_publish_time_of_what_is_applied(self) -> None:
        """A buffered event keeps its stamp until the gap before it is filled."""
        sequencer = Sequencer(Folder(SEQS))
        stamps = Stamps()
        assert sequencer.offer(_lap(1)) is Offer.APPLIED
        stamps.applied(1_000, sequencer.last_applied, sequencer.pending)
        assert sequencer.offer(_lap(3)) is Offer.BUFFERED
        stamps.buffered(_lap(3), 5_000)
        assert stamps.published_at_ns == 1_000  # seq 3 is not reflected yet
        assert sequencer.offer(_lap(2)) is Offer.APPLIED  # from catch-up: no stamp
        stamps.applied(None, sequencer.last_applied, sequencer.pending)
        assert stamps.published_at_ns == 5_000
        assert stamps.session_time_ms == 3000


class TestHealth:
    def test_the_document_keeps_its_fields(self) -> None:
        """The health fields are a contract with boards and the stress test."""
        sequencer = Sequencer(Folder(SEQS))
        counters = Counters(events_applied=2, dead_letters=1)
        health = Health(consumer="seqs", session_id="s", client_id="c", sequencer=sequencer,
                        counters=counters)
        sequencer.learn_head(1, 5, synced=True)
        health.track_lag()
        doc = health.document()
        assert list(doc) == [
            "consumer", "session_id", "client_id", "state", "events_applied", "epoch",
            "last_seq", "head_epoch", "head_seq", "lag_events", "lag_ms", "pending",
            "dead_letters", "refused", "duplicates", "catchups", "reconnects", "checkpoints",
            "log_id",
            "conflicts",
        ]
        assert doc["state"] == "catching-up" and doc["lag_events"] == 5
        health.stopping = True
        assert msgspec.json.decode(health.payload())["state"] == "stopped"
        assert msgspec.json.decode(health.lost_payload()) == {
            "state": "lost", "consumer": "seqs", "session_id": "s", "client_id": "c"}


class TestDeadLetterOutbox:
    async def test_counts_at_once_and_queues_the_letter(self) -> None:
        """A forged message counts as refused and dead; the letter keeps the bytes."""
        counters = Counters()
        dirty = asyncio.Event()
        outbox = DeadLetterOutbox(consumer="seqs", topic="dl", counters=counters, dirty=dirty)
        outbox.reject("ev", b"bad", Refusal(reason="retained event", forged=True))
        outbox.reject("ev", b"worse", Refusal(reason="does not decode", forged=False))
        assert (counters.refused, counters.dead_letters) == (1, 2)
        assert dirty.is_set()
        first = msgspec.json.decode(outbox._queue.get_nowait())
        assert first["reason"] == "refused: retained event"
        assert base64.b64decode(first["payload_base64"]) == b"bad"


class TestCheckpointSchedule:
    def _schedule(self, path: Path, sequencer: Sequencer, counters: Counters,
                  every_ms: int = 60_000) -> CheckpointSchedule:
        return CheckpointSchedule(path=path, session_id="s", consumer="seqs",
                                  sequencer=sequencer, stamps=Stamps(published_at_ns=9),
                                  counters=counters, every_events=3, every_ms=every_ms)

    async def test_every_k_events_in_a_worker_thread(self, tmp_path: Path) -> None:
        """K events applied: a checkpoint of state, position and stamps is written."""
        path = tmp_path / "seqs.checkpoint"
        sequencer, counters = Sequencer(Folder(SEQS)), Counters()
        schedule = self._schedule(path, sequencer, counters)
        running = asyncio.create_task(schedule.run())
        for seq in (1, 2, 3):
            sequencer.offer(_lap(seq))
            schedule.applied(1)
        async with asyncio.timeout(5):
            while counters.checkpoints == 0:
                await asyncio.sleep(0.01)
        running.cancel()
        saved = checkpoint.load(path, session_id="s", consumer="seqs")
        assert saved is not None
        assert (saved.seq, saved.state, saved.published_at_ns) == (3, [1, 2, 3], 9)

    async def test_the_next_one_waits_for_the_budget_of_the_last(self, tmp_path: Path) -> None:
        """The write's CPU time counts with the pickling: the next checkpoint waits
        CHECKPOINT_BUDGET times both after the last, however many events are due."""
        from consumers.checkpoint_schedule import CHECKPOINT_BUDGET

        path = tmp_path / "seqs.checkpoint"
        sequencer, counters = Sequencer(Folder(SEQS)), Counters()
        schedule = self._schedule(path, sequencer, counters)
        running = asyncio.create_task(schedule.run())
        for seq in (1, 2, 3):
            sequencer.offer(_lap(seq))
            schedule.applied(1)
        async with asyncio.timeout(5):
            while counters.checkpoints == 0:
                await asyncio.sleep(0.01)
        assert schedule._write_s > 0  # the worker thread's CPU time, measured
        schedule._snapshot_s, schedule._write_s = 0.002, 0.002  # as if it cost 4 ms
        schedule._snapshot_at = time.monotonic()
        for seq in (4, 5, 6):
            sequencer.offer(_lap(seq))
            schedule.applied(1)
        await asyncio.sleep(CHECKPOINT_BUDGET * 0.004 / 2)
        assert counters.checkpoints == 1  # due, but within the budget of the last
        async with asyncio.timeout(5):
            while counters.checkpoints == 1:
                await asyncio.sleep(0.01)
        running.cancel()
        saved = checkpoint.load(path, session_id="s", consumer="seqs")
        assert saved is not None and saved.seq == 6

    async def test_a_failed_fold_is_never_checkpointed(self, tmp_path: Path) -> None:
        """After ``fold_failed`` even the stop's checkpoint is skipped."""
        path = tmp_path / "seqs.checkpoint"
        sequencer, counters = Sequencer(Folder(SEQS)), Counters()
        schedule = self._schedule(path, sequencer, counters)
        sequencer.offer(_lap(1))
        schedule.applied(1)
        schedule.fold_failed()
        await schedule.final()
        assert not path.exists() and counters.checkpoints == 0

    async def test_the_stop_writes_what_is_unsaved(self, tmp_path: Path) -> None:
        """``final`` writes the last events, however few."""
        path = tmp_path / "seqs.checkpoint"
        sequencer, counters = Sequencer(Folder(SEQS)), Counters()
        schedule = self._schedule(path, sequencer, counters)
        sequencer.offer(_lap(1))
        schedule.applied(1)
        await schedule.final()
        saved = checkpoint.load(path, session_id="s", consumer="seqs")
        assert saved is not None and saved.seq == 1 and counters.checkpoints == 1
