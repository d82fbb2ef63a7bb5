"""Log identity end to end: real ``lapcast replay`` and ``lapcast consume`` processes.

Every case ends with the consumer's retained state equal to ``lapcast fold`` of the
log the engine is replaying, and stamped with that log's id: a different source under
the same session id (with a fresh journal, and with the same journal), a backward
seek, the other ``--granularity``, a checkpoint from before log ids, a journal deleted
between runs, and a consumer that was down while the log changed.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers import checkpoint
from consumers.folding import fold_all
from consumers.identity import LOG_CHANGED, UNKNOWN_CHECKPOINT, epoch_gone
from consumers.registry import load_consumer
from consumers.testing import TestPublisher, consumer_process, stop_process, wait_for
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.logid import log_id
from simulator.sources import load_source

CONSUMER = "running-order"
SYNTH = "synth:cars=12,seed=5,laps=30"


class Logs:
    """Engines replaying logs under one session id, and one consumer, for one test."""

    def __init__(self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        self.url = broker.url
        self.session_id = session_id
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._runs = 0

    def replay(self, source: str, *options: str, journal: Path) -> subprocess.Popen[bytes]:
        """``lapcast replay SOURCE --speed max``, serving catch-up until stopped."""
        self._runs += 1
        proc = subprocess.Popen(
            [sys.executable, "-m", "lapcast", "replay", source, "--broker", self.url,
             "--session-id", self.session_id, "--speed", "max", "--journal", str(journal),
             *options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(self.tmp_path / f"replay-{self._runs}.log").open("wb"))
        self.procs.append(proc)
        return proc

    def consume(self) -> subprocess.Popen[bytes]:
        proc = consumer_process(CONSUMER, broker_url=self.url, session_id=self.session_id,
                                state_dir=self.state_dir,
                                log_file=self.tmp_path / f"consumer-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        assert stop_process(proc) == 0

    async def finished(self, *options: str, source: str) -> dict[str, Any]:
        """The engine's status once it has published the whole log of ``source``."""
        lid = self.log_id(source, *options)
        status: dict[str, Any] = await wait_for(
            self.url, topics.status(self.session_id),
            lambda d: d.get("state") == "finished" and d.get("log_id") == lid, timeout=60)
        return status

    def log_id(self, source: str, *options: str) -> str:
        granularity = "sector" if "sector" in options else "lap"
        return log_id(load_source(source, session_id=self.session_id,
                                  granularity=granularity).events())

    def fold(self, source: str, *options: str) -> dict[str, Any]:
        """``lapcast fold SOURCE --json``, as a user would run it."""
        out = subprocess.run(
            [sys.executable, "-m", "lapcast", "fold", source, "--json", "--session-id",
             self.session_id, *options], check=True, capture_output=True, text=True).stdout
        folded: dict[str, Any] = json.loads(out)
        return folded

    async def state_is_fold_of(self, source: str, *options: str, epoch: int = 1,
                               journal: Path | None = None) -> dict[str, Any]:
        """Wait for the consumer's retained state at the end of ``source``'s log (its id,
        ``epoch``, its last seq) and check it against ``lapcast fold``."""
        folded = self.fold(source, *options)
        lid = self.log_id(source, *options)
        doc: dict[str, Any] = await wait_for(
            self.url, topics.state(self.session_id, CONSUMER),
            lambda d: (d["log_id"], d["epoch"], d["seq"]) == (lid, epoch, folded["events"]),
            timeout=90)
        assert doc["state"]["rows"] == folded["running_order"]
        if journal is not None:  # the journal's latest epoch is the same log
            assert self.fold(str(journal))["running_order"] == folded["running_order"]
        return doc

    async def health(self) -> dict[str, Any]:
        doc: dict[str, Any] = await wait_for(
            self.url, topics.consumer_status(self.session_id, CONSUMER),
            lambda d: d.get("state") == "live")
        return doc

    async def seek(self, to: int | str) -> None:
        async with TestPublisher(self.url, self.session_id) as pub:
            await pub.raw(json.dumps({"command": "seek", "to": to}).encode(),
                          topic=topics.control(self.session_id), stamp=False)


@pytest.fixture
def logs(broker: MosquittoProcess, session_id: str, tmp_path: Path) -> Iterator[Logs]:
    logs = Logs(broker, session_id, tmp_path)
    yield logs
    for proc in logs.procs:
        stop_process(proc)


class TestAnotherLog:
    async def test_a_different_source_with_a_fresh_journal(
            self, logs: Logs, race_csv: Path, tmp_path: Path) -> None:
        """The shared race, then a 12-car synthetic field under the same session id with a
        fresh journal, the consumer up throughout: it ends in the field's fold."""
        race = str(race_csv)
        consumer = logs.consume()
        engine = logs.replay(race, journal=tmp_path / "race.jsonl")
        await logs.finished(source=race)
        await logs.state_is_fold_of(race)
        logs.stop(engine)
        engine = logs.replay(SYNTH, journal=tmp_path / "synth.jsonl")
        await logs.finished(source=SYNTH)
        await logs.state_is_fold_of(SYNTH, journal=tmp_path / "synth.jsonl")
        health = await logs.health()
        assert health["reset"] == LOG_CHANGED and health["log_id"] == logs.log_id(SYNTH)
        logs.stop(engine)
        logs.stop(consumer)

    async def test_a_different_source_with_the_same_journal(
            self, logs: Logs, race_csv: Path, tmp_path: Path) -> None:
        """The field replayed on the race's journal is its epoch 2: the consumer, stopped
        in between, ends in the field's fold."""
        race, journal = str(race_csv), tmp_path / "journal.jsonl"
        consumer = logs.consume()
        engine = logs.replay(race, journal=journal)
        await logs.finished(source=race)
        await logs.state_is_fold_of(race)
        logs.stop(consumer)
        logs.stop(engine)
        engine = logs.replay(SYNTH, journal=journal)
        status = await logs.finished(source=SYNTH)
        assert status["epoch"] == 2
        logs.consume()
        await logs.state_is_fold_of(SYNTH, epoch=2, journal=journal)

    async def test_the_other_granularity(self, logs: Logs, race_csv: Path,
                                         tmp_path: Path) -> None:
        """The race by lap, then by sector under the same session id (a fresh journal):
        another log, so the consumer folds it from the start."""
        race = str(race_csv)
        assert logs.log_id(race) != logs.log_id(race, "--granularity", "sector")
        logs.consume()
        engine = logs.replay(race, journal=tmp_path / "lap.jsonl")
        await logs.finished(source=race)
        await logs.state_is_fold_of(race)
        logs.stop(engine)
        logs.replay(race, "--granularity", "sector", journal=tmp_path / "sector.jsonl")
        await logs.finished("--granularity", "sector", source=race)
        await logs.state_is_fold_of(race, "--granularity", "sector")
        assert (await logs.health())["reset"] == LOG_CHANGED

    async def test_a_consumer_down_while_the_log_changed(
            self, logs: Logs, race_csv: Path, tmp_path: Path) -> None:
        """The issue's steps: the race with a checkpointing consumer; the consumer stops;
        the field under the same session id with a fresh journal; the consumer restarts
        with the same state folder (its broker session queued the field's events)."""
        race = str(race_csv)
        consumer = logs.consume()
        engine = logs.replay(race, journal=tmp_path / "race.jsonl")
        await logs.finished(source=race)
        await logs.state_is_fold_of(race)
        logs.stop(consumer)
        logs.stop(engine)
        logs.replay(SYNTH, journal=tmp_path / "synth.jsonl")
        await logs.finished(source=SYNTH)
        logs.consume()
        await logs.state_is_fold_of(SYNTH)
        assert (await logs.health())["reset"] == LOG_CHANGED


class TestTheSameLog:
    async def test_a_backward_seek(self, logs: Logs, tmp_path: Path) -> None:
        """A backward seek is the next epoch of the same log: folded again, no reset."""
        journal = tmp_path / "journal.jsonl"
        logs.consume()
        logs.replay(SYNTH, journal=journal)
        await logs.finished(source=SYNTH)
        await logs.state_is_fold_of(SYNTH)
        await logs.seek(0)
        await logs.state_is_fold_of(SYNTH, epoch=2, journal=journal)
        health = await logs.health()
        assert "reset" not in health and health["log_id"] == logs.log_id(SYNTH)

    async def test_a_journal_deleted_between_runs(self, logs: Logs, tmp_path: Path) -> None:
        """The consumer's state is of epoch 2; the journal is deleted and the engine starts
        again at epoch 1: epoch 2 is gone, so the consumer folds epoch 1 from the start
        instead of asking for epoch 2 forever."""
        journal = tmp_path / "journal.jsonl"
        consumer = logs.consume()
        engine = logs.replay(SYNTH, journal=journal)
        await logs.finished(source=SYNTH)
        await logs.seek(0)
        await logs.state_is_fold_of(SYNTH, epoch=2)
        logs.stop(consumer)
        logs.stop(engine)
        journal.unlink()
        logs.replay(SYNTH, journal=journal)
        logs.consume()
        await logs.state_is_fold_of(SYNTH, epoch=1, journal=journal)
        assert (await logs.health())["reset"] == epoch_gone(2)


class TestCompatibility:
    async def test_a_checkpoint_from_before_log_ids(
            self, logs: Logs, race_csv: Path, session_id: str) -> None:
        """A checkpoint in the old format (no log id) holding the field's state: an
        unknown log, so the consumer folds the race the engine replays from the start."""
        consumer = load_consumer(CONSUMER)
        [folder] = fold_all([consumer], load_source(SYNTH, session_id=session_id).events())
        path = checkpoint.checkpoint_path(logs.state_dir, session_id, CONSUMER)
        path.parent.mkdir(parents=True)
        path.write_bytes(pickle.dumps({
            "format": 1, "session_id": session_id, "consumer": CONSUMER,
            "epoch": folder.epoch, "seq": folder.seq, "published_at_ns": 1,
            "session_time_ms": 0, "state": folder.state}))
        race = str(race_csv)
        logs.consume()
        logs.replay(race, journal=logs.tmp_path / "race.jsonl")
        await logs.finished(source=race)
        await logs.state_is_fold_of(race)
        assert (await logs.health())["reset"] == UNKNOWN_CHECKPOINT

    async def test_a_journal_written_before_log_ids_replays_and_folds(
            self, logs: Logs, tmp_path: Path, session_id: str) -> None:
        """A journal whose SessionStarted has no log id replays as the same log as its
        source, and folds the same."""
        old = tmp_path / "old.jsonl"
        lines = []
        for event in load_source(SYNTH, session_id=session_id).events():
            doc = msgspec.to_builtins(event)
            doc.pop("log_id", None)
            lines.append(json.dumps(doc))
        old.write_text("\n".join(lines) + "\n")
        assert logs.log_id(str(old)) == logs.log_id(SYNTH)
        assert logs.fold(str(old))["running_order"] == logs.fold(SYNTH)["running_order"]
        logs.consume()
        logs.replay(str(old), journal=tmp_path / "new.jsonl")
        await logs.finished(source=SYNTH)
        await logs.state_is_fold_of(SYNTH)
