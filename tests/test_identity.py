"""Log identity: the id of a log (``simulator.logid``) and a consumer's reset path
(``consumers.identity``) driven directly, without a broker; the end-to-end cases with
real engines and consumers are in ``tests/test_identity_e2e.py``."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterable
from pathlib import Path

import msgspec
from structlog.testing import capture_logs

from consumers import checkpoint
from consumers.api import Consumer
from consumers.catchup_client import JournalCatchup
from consumers.folding import Folder
from consumers.health import Counters, Health
from consumers.identity import LOG_CHANGED, UNKNOWN_CHECKPOINT, LogIdentity
from consumers.registry import load_consumer
from consumers.runner import ConsumerRunner, RunnerSettings
from consumers.sequencer import Sequencer
from consumers.stamps import Stamps
from consumers.testing import write_journal
from simulator.connection import parse_broker_url
from simulator.contract import (
    CatchupRequest,
    ConsumerHealth,
    Event,
    LapCompleted,
    SessionStarted,
    decode_consumer_health,
)
from simulator.logid import LOG_ID_LENGTH, log_id
from simulator.sources import load_source


def _apply(seen: list[int], event: Event) -> list[int]:
    return [*seen, event.seq]


SEQS = Consumer(name="seqs", description="every seq applied", initial=list, apply=_apply)


def _lap(seq: int, epoch: int = 1) -> Event:
    return LapCompleted(session_id="s", epoch=epoch, seq=seq, session_time_ms=seq * 1000,
                        car="7", driver="D", lap=seq, lap_time_ms=90_000)


def _identity(sequencer: Sequencer) -> LogIdentity:
    return LogIdentity(consumer="seqs", sequencer=sequencer, stamps=Stamps(),
                       dirty=asyncio.Event())


SYNTH = "synth:cars=12,seed=3,laps=4,classes=HYPERCAR:LMGT3"


class TestLogId:
    def test_the_same_source_and_options_give_the_same_id(self) -> None:
        """Two loads of the same source with the same options: one id, 32 hex digits."""
        first = log_id(load_source(SYNTH, session_id="S").events())
        assert first == log_id(load_source(SYNTH, session_id="S").events())
        assert len(first) == LOG_ID_LENGTH and int(first, 16) >= 0

    def test_any_other_log_gets_another_id(self) -> None:
        """Another seed, granularity or session id is another log."""
        ids = {
            log_id(load_source(SYNTH, session_id="S").events()),
            log_id(load_source(SYNTH.replace("seed=3", "seed=4"), session_id="S").events()),
            log_id(load_source(SYNTH, session_id="S", granularity="sector").events()),
            log_id(load_source(SYNTH, session_id="T").events()),
        }
        assert len(ids) == 4

    def test_epochs_and_the_id_itself_do_not_count(self) -> None:
        """The events of a later epoch, or carrying their log id, are the same log."""
        events = list(load_source(SYNTH, session_id="S").events())
        lid = log_id(events)
        later = [msgspec.structs.replace(e, epoch=3) for e in events]
        assert isinstance(later[0], SessionStarted)
        later[0] = msgspec.structs.replace(later[0], log_id=lid)
        assert log_id(later) == lid


class TestReset:
    def test_another_log_drops_the_state_once(self) -> None:
        """A state of log A, told the engine replays log B, folds B from the start; the
        reset is logged once and kept for the health."""
        folder: Folder[list[int]] = Folder(SEQS)
        folder.log_id = "a" * 32
        sequencer = Sequencer(folder)
        for seq in (1, 2, 3, 5):
            sequencer.offer(_lap(seq))
        identity = _identity(sequencer)
        with capture_logs() as logs:
            assert identity.engine_says("b" * 32, 1)
            assert not identity.engine_says("b" * 32, 1)
        assert [entry["reason"] for entry in logs] == [LOG_CHANGED]
        assert (folder.epoch, folder.seq, folder.state, folder.log_id) == (0, 0, [], "b" * 32)
        assert sequencer.pending == 0 and sequencer.needs_sync
        assert identity.reset == LOG_CHANGED
        sequencer.offer(_lap(1))
        assert folder.state == [1]

    def test_an_engine_at_an_older_epoch_drops_the_state(self) -> None:
        """The engine is at epoch 1 while the state is of epoch 2: epoch 2 is gone."""
        folder: Folder[list[int]] = Folder(SEQS)
        sequencer = Sequencer(folder)
        for seq in (1, 2):
            sequencer.offer(_lap(seq, epoch=2))
        identity = _identity(sequencer)
        assert not identity.engine_says("", 2)
        assert identity.engine_says("", 1)
        assert identity.reset == "epoch 2 is no longer in the journal"
        assert (folder.epoch, folder.seq) == (0, 0)

    def test_a_refused_epoch_the_engine_no_longer_has_drops_the_state(self) -> None:
        """A catch-up of epoch 3 refused by an engine at epoch 1 resets; at epoch 3 not."""
        sequencer = Sequencer(Folder(SEQS))
        sequencer.offer(_lap(1, epoch=3))
        identity = _identity(sequencer)
        assert not identity.epoch_refused(3, 3, "bad request")
        assert identity.epoch_refused(3, 1, "unknown epoch 3")
        assert sequencer.folder.seq == 0

    def test_an_unknown_state_adopts_the_log_and_an_old_engine_keeps_it(self) -> None:
        """A fresh consumer adopts the engine's log; an engine naming none changes nothing."""
        sequencer = Sequencer(Folder(SEQS))
        identity = _identity(sequencer)
        assert not identity.engine_says("", 1)
        assert not identity.engine_says("c" * 32, 1)
        assert sequencer.folder.log_id == "c" * 32 and identity.reset is None
        sequencer.offer(_lap(1))
        assert not identity.engine_says("", 1)
        assert sequencer.folder.state == [1]

    def test_the_health_says_why(self) -> None:
        """The health carries the log id and, after a reset, why."""
        sequencer = Sequencer(Folder(SEQS))
        identity = _identity(sequencer)
        health = Health(consumer="seqs", session_id="s", client_id="c", sequencer=sequencer,
                        counters=Counters())
        health.identity = identity
        assert "reset" not in health.document()
        identity.engine_says("a" * 32, 1)
        sequencer.offer(_lap(1))
        identity.engine_says("b" * 32, 1)
        report = decode_consumer_health(health.payload())
        assert isinstance(report, ConsumerHealth)
        assert (report.reset, report.log_id) == (LOG_CHANGED, "b" * 32)


class TestOldCheckpoint:
    def test_a_checkpoint_without_a_log_id_is_not_resumed(self, tmp_path: Path) -> None:
        """A checkpoint in the format written before log ids (no ``log_id`` key) loads as
        an unknown log: the runner folds from the start and its health says why."""
        path = checkpoint.checkpoint_path(tmp_path, "s1", "class-poles")
        path.parent.mkdir(parents=True)
        path.write_bytes(pickle.dumps({
            "format": 1, "session_id": "s1", "consumer": "class-poles", "epoch": 1,
            "seq": 40, "published_at_ns": 5, "session_time_ms": 7, "state": None}))
        loaded = checkpoint.load(path, session_id="s1", consumer="class-poles")
        assert loaded is not None and loaded.log_id is None and loaded.seq == 40
        runner = ConsumerRunner(load_consumer("class-poles"), parse_broker_url("mqtt://x:1"),
                                RunnerSettings(session_id="s1", state_dir=tmp_path))
        assert runner.resumed_from is None and runner.folder.seq == 0
        assert runner.health()["reset"] == UNKNOWN_CHECKPOINT

    def test_a_checkpoint_keeps_its_log_id(self, tmp_path: Path) -> None:
        """Saved and loaded, the log id travels with the state."""
        path = tmp_path / "c.checkpoint"
        checkpoint.save(path, checkpoint.Checkpoint(session_id="s", consumer="seqs", epoch=1,
                                                    seq=2, state=[1, 2], log_id="d" * 32))
        loaded = checkpoint.load(path, session_id="s", consumer="seqs")
        assert loaded is not None and loaded.folder(SEQS).log_id == "d" * 32


class TestJournalCatchup:
    async def test_a_replaced_journal_is_read_anew_and_names_its_log(
            self, tmp_path: Path) -> None:
        """Catch-up from a journal file names the log of its latest epoch; the file
        replaced by another log's journal is indexed again, not read at old offsets."""
        path = tmp_path / "j.jsonl"
        first = _stamped(load_source(SYNTH, session_id="S").events())
        other = _stamped(load_source(SYNTH.replace("seed=3", "seed=9"),
                                     session_id="S").events())
        write_journal(path, first)
        source = JournalCatchup(path, session_id="S")
        request = CatchupRequest(epoch=1, from_seq=1)
        [reply] = [r async for r in source.fetch(request)]
        assert reply.log_id == first[0].log_id and reply.events == first
        path.unlink()
        write_journal(path, other[:5])
        [reply] = [r async for r in source.fetch(request)]
        assert reply.log_id == other[0].log_id != first[0].log_id
        assert reply.events == other[:5] and reply.last_seq == 5


def _stamped(events: Iterable[Event]) -> list[Event]:
    """The events as the engine publishes them: the SessionStarted with the log id."""
    events = list(events)
    assert isinstance(events[0], SessionStarted)
    events[0] = msgspec.structs.replace(events[0], log_id=log_id(events))
    return events
