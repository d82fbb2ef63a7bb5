"""Consumers believe only the engine: the hold in front of the sequencer, and conflicts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from consumers import checkpoint
from consumers.api import Consumer
from consumers.belief import Belief
from consumers.checkpoint_schedule import CheckpointSchedule
from consumers.folding import Folder, fold_all
from consumers.health import Counters
from consumers.sequencer import Offer, Sequencer
from consumers.stamps import Stamps
from simulator.contract import CatchupRequest, Event, LapCompleted


def _apply(seen: list[tuple[int, int, int]], event: Event) -> list[tuple[int, int, int]]:
    assert isinstance(event, LapCompleted)
    seen.append((event.epoch, event.seq, event.lap_time_ms))
    return seen


LAPS = Consumer(name="laps", description="(epoch, seq, lap time) applied, in order",
                initial=list, apply=_apply)


def _lap(seq: int, *, epoch: int = 1, time_ms: int = 90_000) -> LapCompleted:
    return LapCompleted(session_id="s", epoch=epoch, seq=seq, session_time_ms=seq * 1000,
                        car="7", driver="D", lap=seq, lap_time_ms=time_ms)


def _forged(event: LapCompleted) -> LapCompleted:
    return msgspec.structs.replace(event, lap_time_ms=1)


def _log(n: int) -> list[Event]:
    return [_lap(i) for i in range(1, n + 1)]


def _belief(*, window: int = 100, max_held: int = 10) -> tuple[Sequencer, Belief]:
    sequencer = Sequencer(Folder(LAPS), memory=50)
    return sequencer, Belief(sequencer, window=window, max_held=max_held)


def _announce(sequencer: Sequencer, belief: Belief, epoch: int, head: int,
              *, running: bool = True) -> tuple[list[Event], list[str]]:
    sequencer.learn_head(epoch, head, synced=True)
    released, unconfirmed = belief.announce(epoch, head, running=running)
    return released, [u.reason for u in unconfirmed]


class TestHold:
    def test_nothing_is_believed_before_the_engine_speaks(self) -> None:
        """Before any announcement every live event is held; the first one releases them."""
        sequencer, belief = _belief()
        assert not belief.admits(_lap(1))
        assert belief.hold(_lap(2)) is None and belief.hold(_lap(1)) is None
        released, reasons = _announce(sequencer, belief, 1, 0)
        assert [e.seq for e, _ in released] == [1, 2] and reasons == []
        assert belief.held == 0

    def test_within_the_window_is_applied_at_once(self) -> None:
        """While the engine runs, a seq up to its head plus the window passes unheld."""
        sequencer, belief = _belief(window=100)
        _announce(sequencer, belief, 1, 10)
        assert belief.admits(_lap(110))
        assert not belief.admits(_lap(111))
        assert belief.admits(_lap(5, epoch=0))  # an older epoch: the sequencer voids it

    def test_a_huge_seq_is_held_then_dead_lettered(self) -> None:
        """seq 1,000,000 is held; the next announcement does not confirm it: its reason."""
        sequencer, belief = _belief()
        _announce(sequencer, belief, 1, 10)
        assert belief.hold(_lap(1_000_000)) is None
        released, reasons = _announce(sequencer, belief, 1, 30)
        assert released == []
        assert reasons == ["epoch 1 seq 1000000 beyond the engine's announced head 30 "
                           "+ window 100"]
        # Nothing made the sequencer expect it: no catch-up beyond the real head.
        assert sequencer.missing() == CatchupRequest(epoch=1, from_seq=1, to_seq=30)

    def test_an_unannounced_epoch_is_never_adopted(self) -> None:
        """epoch 99 waits for an announcement of epoch 99; without one it is dead-lettered."""
        sequencer, belief = _belief()
        _announce(sequencer, belief, 1, 5)
        assert not belief.admits(_lap(7, epoch=99))
        belief.hold(_lap(7, epoch=99))
        _, reasons = _announce(sequencer, belief, 1, 6)
        assert reasons == ["epoch 99 beyond the engine's announced epoch 1"]
        assert sequencer.target_epoch == 1

    def test_an_announced_epoch_releases_its_events(self) -> None:
        """A backward seek's first event may come before the status: it waits, then goes."""
        sequencer, belief = _belief()
        _announce(sequencer, belief, 1, 5)
        belief.hold(_lap(1, epoch=2))
        released, reasons = _announce(sequencer, belief, 2, 1)
        assert released == [(_lap(1, epoch=2), None)] and reasons == []

    def test_a_paused_engine_has_nothing_in_flight(self) -> None:
        """Paused or finished, the bound is the head itself: a buffered event beyond goes."""
        sequencer, belief = _belief()
        _announce(sequencer, belief, 1, 3)
        for event in _log(3):
            sequencer.offer(event)
        assert sequencer.offer(_lap(8)) is Offer.BUFFERED  # within the window, for now
        _, reasons = _announce(sequencer, belief, 1, 3, running=False)
        assert reasons == ["epoch 1 seq 8 beyond the engine's announced head 3 + window 0"]
        assert sequencer.pending == 0 and sequencer.missing() is None and sequencer.caught_up

    def test_an_applied_event_the_engine_never_had_is_refolded(self) -> None:
        """A forged next event applied at once, then the engine stops short of it."""
        sequencer, belief = _belief()
        _announce(sequencer, belief, 1, 3)
        for event in _log(3):
            sequencer.offer(event)
        sequencer.offer(_forged(_lap(4)))
        _, reasons = _announce(sequencer, belief, 1, 3, running=False)
        assert reasons == ["epoch 1 seq 4 beyond the engine's announced head 3 + window 0"]
        assert sequencer.rewind_to == 4

    def test_the_hold_is_bounded(self) -> None:
        """Past ``max_held`` an event is refused at once, with the reason."""
        sequencer, belief = _belief(max_held=2)
        _announce(sequencer, belief, 1, 0)
        assert belief.hold(_lap(500)) is None and belief.hold(_lap(501)) is None
        refused = belief.hold(_lap(502))
        assert refused is not None and refused.reason.endswith("2 events are held already")

    def test_an_event_does_not_move_the_bound(self) -> None:
        """Only the engine's word moves the bound: a forged event at the edge gains nothing."""
        sequencer, belief = _belief(window=100)
        _announce(sequencer, belief, 1, 10)
        sequencer.offer(_lap(110))  # admitted (within the window), buffered
        _announce(sequencer, belief, 1, 10)
        assert not belief.admits(_lap(111))


class TestConflicts:
    def test_an_equal_duplicate_is_only_a_duplicate(self) -> None:
        """Struct equality, not bytes: the same event decoded again is no conflict."""
        sequencer = Sequencer(Folder(LAPS))
        sequencer.offer(_lap(1))
        assert sequencer.offer(msgspec.json.decode(msgspec.json.encode(_lap(1)),
                                                   type=LapCompleted)) is Offer.DUPLICATE
        assert sequencer.disputed == 0

    def test_a_forged_duplicate_of_an_applied_event(self) -> None:
        """The engine's copy equals the one applied: the other copy is the forgery."""
        events = _log(5)
        sequencer = Sequencer(Folder(LAPS))
        for event in events:
            sequencer.offer(event)
        sequencer.learn_head(1, 5, synced=True)
        assert sequencer.offer(_forged(_lap(3))) is Offer.CONFLICT
        assert not sequencer.caught_up
        assert sequencer.missing() == CatchupRequest(epoch=1, from_seq=3, to_seq=3)
        assert sequencer.offer(events[2], engine=True) is Offer.DUPLICATE
        assert sequencer.conflicting == [_forged(_lap(3))]
        assert sequencer.rewind_to is None and sequencer.caught_up
        assert sequencer.counts.conflicts == 1

    def test_a_forged_event_applied_before_the_real_one(self) -> None:
        """The forgery was applied: the engine's copy makes the consumer refold."""
        events = _log(6)
        sequencer = Sequencer(Folder(LAPS))
        for event in events[:2]:
            sequencer.offer(event)
        sequencer.offer(_forged(_lap(4)))  # buffered, then applied once seq 3 comes
        sequencer.offer(events[2])
        assert sequencer.folder.seq == 4
        assert sequencer.offer(events[3]) is Offer.CONFLICT  # the real seq 4, live
        sequencer.offer(events[4])
        sequencer.offer(events[3], engine=True)  # catch-up: the engine's copy
        assert sequencer.rewind_to == 4
        assert sequencer.conflicting == [_forged(_lap(4))]
        sequencer.conflicting.clear()
        sequencer.rewind(Folder(LAPS))  # no checkpoint before seq 4: from the start
        assert sequencer.missing() == CatchupRequest(epoch=1, from_seq=1, to_seq=5)
        for event in events:
            sequencer.offer(event, engine=True)
        assert sequencer.folder.state == fold_all([LAPS], events)[0].state
        assert sequencer.conflicting == [] and sequencer.disputed == 0

    def test_a_buffered_forgery_is_replaced(self) -> None:
        """Still buffered, the wrong copy is swapped for the engine's: no refold."""
        events = _log(4)
        sequencer = Sequencer(Folder(LAPS))
        sequencer.offer(events[0])
        sequencer.offer(_forged(_lap(3)))
        assert sequencer.offer(events[2]) is Offer.CONFLICT
        sequencer.offer(events[2], engine=True)
        assert sequencer.conflicting == [_forged(_lap(3))] and sequencer.rewind_to is None
        sequencer.offer(events[1])
        sequencer.offer(events[3])
        assert sequencer.folder.state == fold_all([LAPS], events)[0].state

    def test_a_refold_names_every_forgery_of_a_run(self) -> None:
        """Copies applied after the checkpoint are compared as the engine's come back."""
        events = _log(6)
        sequencer = Sequencer(Folder(LAPS))
        sequencer.offer(events[0])
        forged = [_forged(e) for e in events[1:4]]  # type: ignore[arg-type]
        for event in forged:
            sequencer.offer(event)
        sequencer.offer(events[1], engine=True)
        assert sequencer.rewind_to == 2
        checkpoint = Folder(LAPS)
        checkpoint.apply(events[0])
        sequencer.rewind(checkpoint)
        assert sequencer.missing() == CatchupRequest(epoch=1, from_seq=2, to_seq=4)
        for event in events[1:]:
            sequencer.offer(event, engine=True)
        assert sequencer.conflicting == forged
        assert sequencer.folder.state == fold_all([LAPS], events)[0].state

    def test_beyond_the_memory_a_duplicate_is_not_compared(self) -> None:
        """Older than the last ``memory`` events applied, a copy only counts as duplicate."""
        sequencer = Sequencer(Folder(LAPS), memory=3)
        for event in _log(10):
            sequencer.offer(event)
        assert sequencer.offer(_forged(_lap(2))) is Offer.DUPLICATE
        assert sequencer.offer(_forged(_lap(9))) is Offer.CONFLICT


class TestRefoldCheckpoint:
    def test_a_refold_replaces_the_checkpoint_at_once(self, tmp_path: Path) -> None:
        """The checkpoint on disk may hold the forgery: replaced by the rewound folder, or
        removed when the refold starts from scratch (a kill -9 then cannot keep it)."""
        path = tmp_path / "laps.checkpoint"
        sequencer = Sequencer(Folder(LAPS))
        schedule = CheckpointSchedule(path=path, session_id="s", consumer="laps",
                                      sequencer=sequencer, stamps=Stamps(),
                                      counters=Counters(), every_events=1, every_ms=1000)
        for event in _log(2):
            sequencer.offer(event)
        sequencer.offer(_forged(_lap(3)))
        checkpoint.save(path, checkpoint.Checkpoint(session_id="s", consumer="laps", epoch=1,
                                                    seq=3, state=sequencer.folder.state))
        resumed = Folder(LAPS)
        for event in _log(2):
            resumed.apply(event)
        sequencer.rewind(resumed)
        schedule.rewound()
        saved = checkpoint.load(path, session_id="s", consumer="laps")
        assert saved is not None and (saved.epoch, saved.seq) == (1, 2)
        assert saved.state == fold_all([LAPS], _log(2))[0].state
        sequencer.rewind(Folder(LAPS))
        schedule.rewound()
        assert not path.exists()

    def test_no_checkpoint_while_a_conflict_is_open(self, tmp_path: Path) -> None:
        """Until the engine's copy settles it, the fold may hold a forgery: not saved."""
        path = tmp_path / "laps.checkpoint"
        sequencer = Sequencer(Folder(LAPS))
        schedule = CheckpointSchedule(path=path, session_id="s", consumer="laps",
                                      sequencer=sequencer, stamps=Stamps(),
                                      counters=Counters(), every_events=1, every_ms=1000)
        for event in _log(3):
            sequencer.offer(event)
        schedule.applied(3)
        sequencer.offer(_forged(_lap(2)))
        assert sequencer.disputed == 1
        assert schedule._snapshot(force=True) is None
        sequencer.offer(_lap(2), engine=True)
        assert schedule._snapshot(force=True) is not None
