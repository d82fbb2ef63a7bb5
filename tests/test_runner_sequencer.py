"""The runner's ordering core: strict seq order, duplicates, gaps, epochs, missing ranges."""

from __future__ import annotations

import random

from consumers.api import Consumer
from consumers.folding import Folder, fold_all
from consumers.sequencer import Offer, Sequencer
from simulator.contract import CatchupRequest, Event, LapCompleted
from simulator.replay.testing import generated_events


def _apply(seen: list[tuple[int, int]], event: Event) -> list[tuple[int, int]]:
    seen.append((event.epoch, event.seq))
    return seen


ORDER = Consumer(name="order", description="every (epoch, seq) applied, in order",
                 initial=list, apply=_apply)


def _laps(n: int, *, epoch: int = 1) -> list[Event]:
    return [LapCompleted(session_id="s", epoch=epoch, seq=i, session_time_ms=i * 1000,
                         car="7", driver="D", lap=i, lap_time_ms=90_000)
            for i in range(1, n + 1)]


class TestOrder:
    def test_in_order_applies_each_event_once(self) -> None:
        """Events in seq order are applied at once, one by one."""
        seq = Sequencer(Folder(ORDER))
        assert [seq.offer(e) for e in _laps(3)] == [Offer.APPLIED] * 3
        assert seq.folder.state == [(1, 1), (1, 2), (1, 3)]
        assert seq.counts.applied == 3

    def test_duplicates_are_ignored_and_counted(self) -> None:
        """An event already applied, or already buffered, changes nothing."""
        events = _laps(4)
        seq = Sequencer(Folder(ORDER))
        seq.offer(events[0])
        seq.offer(events[2])
        assert seq.offer(events[0]) is Offer.DUPLICATE
        assert seq.offer(events[2]) is Offer.DUPLICATE
        assert seq.counts.duplicates == 2
        assert seq.folder.state == [(1, 1)]

    def test_early_events_wait_for_the_gap(self) -> None:
        """Later events are buffered and applied, in order, once the gap is filled."""
        events = _laps(5)
        seq = Sequencer(Folder(ORDER))
        seq.offer(events[0])
        assert seq.offer(events[3]) is Offer.BUFFERED
        assert seq.offer(events[4]) is Offer.BUFFERED
        assert seq.missing() == CatchupRequest(epoch=1, from_seq=2, to_seq=3)
        seq.offer(events[2])
        assert seq.folder.seq == 1
        assert seq.offer(events[1]) is Offer.APPLIED
        assert seq.folder.state == [(1, i) for i in range(1, 6)]
        assert [e.seq for e in seq.last_applied] == [2, 3, 4, 5]

    def test_any_delivery_order_folds_like_the_log(self) -> None:
        """Shuffled, duplicated delivery of a real-looking log gives the offline fold."""
        events = generated_events("s", cars=5, laps=20)
        delivered = events + random.Random(3).sample(events, 40)
        random.Random(7).shuffle(delivered)
        seq = Sequencer(Folder(ORDER))
        for event in delivered:
            seq.offer(event)
        assert seq.folder.state == fold_all([ORDER], events)[0].state
        # Nothing missing but the open-ended sync that tells where the log ends.
        assert seq.missing() == CatchupRequest(epoch=1, from_seq=len(events) + 1)


class TestMissing:
    def test_fresh_sequencer_asks_for_everything(self) -> None:
        """Before anything is known, the whole log from seq 1 is asked for, open-ended."""
        assert Sequencer(Folder(ORDER)).missing() == CatchupRequest(epoch=1, from_seq=1)

    def test_head_from_status_gives_a_bounded_range(self) -> None:
        """A late start learns the head from the engine's status and fetches up to it."""
        seq = Sequencer(Folder(ORDER))
        seq.learn_head(1, 40, synced=True)
        assert seq.missing() == CatchupRequest(epoch=1, from_seq=1, to_seq=40)
        assert seq.lag_events == 40
        assert not seq.caught_up

    def test_caught_up_when_synced_and_at_head(self) -> None:
        """At the head with nothing buffered, nothing is missing."""
        seq = Sequencer(Folder(ORDER))
        for event in _laps(3):
            seq.offer(event)
        seq.learn_head(1, 3, synced=True)
        assert seq.missing() is None
        assert seq.caught_up

    def test_full_buffer_defers_but_never_skips(self) -> None:
        """Beyond the buffer limit an event is dropped for now and fetched again later."""
        events = _laps(6)
        seq = Sequencer(Folder(ORDER), max_pending=2)
        seq.learn_head(1, 0, synced=True)
        for event in events[2:]:
            seq.offer(event)
        assert seq.counts.deferred == 2
        assert seq.missing() == CatchupRequest(epoch=1, from_seq=1, to_seq=2)
        for event in events[:2]:
            seq.offer(event)
        assert seq.folder.seq == 4
        assert seq.missing() == CatchupRequest(epoch=1, from_seq=5, to_seq=6)


class TestEpochs:
    def test_higher_epoch_resets_the_state(self) -> None:
        """A backward seek's epoch drops the old state and folds the new epoch from seq 1."""
        seq = Sequencer(Folder(ORDER))
        for event in _laps(5):
            seq.offer(event)
        new = _laps(2, epoch=2)
        assert seq.offer(new[1]) is Offer.BUFFERED
        assert seq.missing() == CatchupRequest(epoch=2, from_seq=1, to_seq=1)
        seq.offer(new[0])
        assert seq.folder.state == [(2, 1), (2, 2)]

    def test_old_epoch_events_are_stale(self) -> None:
        """Once a newer epoch is known, events of older ones are void, even buffered ones."""
        seq = Sequencer(Folder(ORDER))
        old = _laps(4)
        seq.offer(old[0])
        seq.offer(old[2])
        seq.learn_epoch(2)
        assert seq.pending == 0
        assert seq.offer(old[1]) is Offer.STALE
        assert seq.missing() == CatchupRequest(epoch=2, from_seq=1)


class TestRuns:
    def test_a_run_of_next_events_is_applied_at_once(self) -> None:
        """A message's events that are exactly the next ones are applied in one step,
        with the counts and head that offering them one by one gives."""
        events = _laps(10)
        seq = Sequencer(Folder(ORDER))
        assert seq.offer(events[0]) is Offer.APPLIED
        assert seq.offer_run(events[1:6]) == 5
        assert seq.last_applied == events[1:6]
        one_by_one = Sequencer(Folder(ORDER))
        for event in events[:6]:
            one_by_one.offer(event)
        assert seq.folder.state == one_by_one.folder.state == [(1, i) for i in range(1, 7)]
        assert (seq.counts, seq.head_seq) == (one_by_one.counts, one_by_one.head_seq)

    def test_a_run_stops_where_an_event_is_not_the_next(self) -> None:
        """A gap, a duplicate or another epoch ends the run: the rest is left to offer()."""
        events = _laps(10)
        seq = Sequencer(Folder(ORDER))
        seq.offer(events[0])
        assert seq.offer_run([events[1], events[2], events[4], events[3]]) == 2
        assert seq.folder.seq == 3
        assert seq.offer_run([events[2], events[3]]) == 0  # seq 3 was applied already
        assert seq.offer_run([events[3], _laps(5, epoch=2)[4]]) == 1
        assert seq.folder.seq == 4 and seq.counts.applied == 4

    def test_no_run_while_something_waits_or_the_fold_is_fresh(self) -> None:
        """With events buffered, a new epoch or nothing applied yet, offer() decides."""
        events = _laps(10)
        fresh = Sequencer(Folder(ORDER))
        assert fresh.offer_run(events[:3]) == 0 and fresh.folder.seq == 0
        seq = Sequencer(Folder(ORDER))
        seq.offer(events[0])
        assert seq.offer(events[5]) is Offer.BUFFERED
        assert seq.offer_run(events[1:3]) == 0
        seq.learn_head(2, 0)
        assert Sequencer(Folder(ORDER)).offer_run([]) == 0
        assert seq.offer_run(events[1:3]) == 0  # the head is in epoch 2 now

    def test_a_run_is_remembered_for_conflicting_duplicates(self) -> None:
        """Events applied in a run are kept in the memory of recent events: another copy
        of one of them is a conflict, the same copy a plain duplicate."""
        import msgspec

        events = _laps(6)
        seq = Sequencer(Folder(ORDER))
        seq.offer(events[0])
        assert seq.offer_run(events[1:6]) == 5
        assert seq.offer(events[3]) is Offer.DUPLICATE
        forged = msgspec.structs.replace(events[3], lap_time_ms=1)
        assert seq.offer(forged) is Offer.CONFLICT
