"""The pacer: absolute deadlines, pause/resume/speed/seek re-anchoring, under an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from simulator.replay.pacing import ManualClock, MonotonicClock, Pacer


async def _release_times(pacer: Pacer, clock: ManualClock, times_ms: list[int]) -> list[float]:
    """Wait for each session time in turn, as the engine's pump does; clock time of each."""
    released = []
    for t in times_ms:
        while not await pacer.wait_due(t):
            pass
        released.append(clock.now())
    return released


class TestDeadlines:
    async def test_each_event_is_released_exactly_at_its_deadline(self) -> None:
        """Under an auto-advancing clock every release happens at anchor + t / speed."""
        clock = ManualClock(100.0, auto_advance=True)
        pacer = Pacer(clock=clock, speed=4.0)
        times = [0, 1_000, 2_500, 2_500, 10_000]
        released = await _release_times(pacer, clock, times)
        assert released == [100.0 + t / 4000 for t in times]

    async def test_no_drift_over_a_24_hour_session(self) -> None:
        """The deadline of an event 24 hours in is anchor + 86,400 s, to the microsecond."""
        clock = ManualClock(12_345.678, auto_advance=True)
        pacer = Pacer(clock=clock, speed=1.0)
        times = [*range(0, 86_400_001, 97_003), 86_400_000]
        released = await _release_times(pacer, clock, times)
        assert released[-1] == pytest.approx(12_345.678 + 86_400, abs=1e-6)
        for t, at in zip(times, released, strict=True):
            assert at == pytest.approx(12_345.678 + t / 1000, abs=1e-6)

    async def test_max_speed_makes_everything_due_at_once(self) -> None:
        """Speed None (max): no deadline, no waiting."""
        clock = ManualClock(5.0)
        pacer = Pacer(clock=clock, speed=None)
        assert pacer.deadline(10**9) is None
        assert await pacer.wait_due(10**9) is True
        assert clock.now() == 5.0

    async def test_start_position_makes_earlier_events_overdue(self) -> None:
        """Starting at 60 s (--from) releases the events before it at once."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=1.0, position_ms=60_000)
        assert pacer.is_due(59_999) and pacer.is_due(60_000)
        assert not pacer.is_due(60_001)
        assert pacer.lateness(0) == pytest.approx(60.0)


class TestChanges:
    async def test_pause_shifts_remaining_deadlines_by_exactly_the_pause(self) -> None:
        """Paused for 1 s, every later deadline moves by exactly 1 s."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=10.0)
        before = [pacer.deadline(t) for t in (5_000, 7_000, 60_000)]
        clock.advance(0.3)
        pacer.pause()
        clock.advance(1.0)
        assert pacer.session_time_ms() == 3_000  # frozen at the pause
        pacer.resume()
        after = [pacer.deadline(t) for t in (5_000, 7_000, 60_000)]
        assert [a - b for a, b in zip(after, before, strict=True)] == pytest.approx(
            [1.0, 1.0, 1.0], abs=1e-12)

    async def test_a_waiting_release_is_held_by_a_pause_and_freed_by_resume(self) -> None:
        """A waiting release stays blocked while paused, then goes at the shifted deadline."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=1.0)
        waiter = asyncio.create_task(_release_times(pacer, clock, [2_000]))
        await asyncio.sleep(0)
        clock.advance(1.0)
        pacer.pause()
        clock.advance(5.0)
        await asyncio.sleep(0)
        assert not waiter.done()
        pacer.resume()
        await asyncio.sleep(0)
        clock.advance(0.999)
        await asyncio.sleep(0)
        assert not waiter.done()
        clock.advance(0.001)
        assert await waiter == [pytest.approx(7.0)]

    async def test_speed_change_re_anchors_at_the_current_session_time(self) -> None:
        """Doubling the speed halves the time to every later event, from now on."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=1.0)
        clock.advance(10.0)
        pacer.set_speed(2.0)
        assert pacer.session_time_ms() == 10_000
        assert pacer.deadline(20_000) == pytest.approx(15.0)
        pacer.set_speed(None)
        assert pacer.is_due(10**9)
        pacer.mark(12_000)
        pacer.set_speed(1.0)  # back from max: anchored at the last event handed out
        assert pacer.deadline(13_000) == pytest.approx(clock.now() + 1.0)

    async def test_speed_change_while_paused_keeps_the_paused_position(self) -> None:
        """A speed change during a pause applies from the paused instant, after resuming."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=1.0)
        clock.advance(4.0)
        pacer.pause()
        pacer.set_speed(4.0)
        clock.advance(3.0)
        assert pacer.session_time_ms() == 4_000
        pacer.resume()
        assert pacer.deadline(8_000) == pytest.approx(clock.now() + 1.0)

    async def test_seek_jumps_the_session_clock(self) -> None:
        """After a seek to 1 h, events before it are overdue and later ones paced from now."""
        clock = ManualClock(50.0)
        pacer = Pacer(clock=clock, speed=2.0)
        pacer.seek(3_600_000)
        assert pacer.is_due(3_599_999) and pacer.is_due(3_600_000)
        assert pacer.deadline(3_602_000) == pytest.approx(51.0)

    async def test_a_change_wakes_a_waiting_release(self) -> None:
        """wait_due returns False (look again) when a seek comes in while it sleeps."""
        clock = ManualClock(0.0)
        pacer = Pacer(clock=clock, speed=1.0)
        waiter = asyncio.create_task(pacer.wait_due(100_000))
        await asyncio.sleep(0)
        pacer.seek(100_000)
        assert await waiter is True  # woken, and due after the seek

    def test_speed_must_be_positive(self) -> None:
        """A speed of 0 or below is refused."""
        with pytest.raises(ValueError, match="above 0"):
            Pacer(clock=ManualClock(), speed=0)
        with pytest.raises(ValueError, match="above 0"):
            Pacer(clock=ManualClock()).set_speed(-1)


class TestRealClock:
    async def test_monotonic_clock_releases_within_a_few_milliseconds(self) -> None:
        """On the real clock, 500 releases 2 ms apart are late by less than 5 ms (p99).

        The cores are shared: a run the OS scheduler disturbed is measured again, up to
        three runs, and the best counts.
        """
        best = float("inf")
        for _ in range(3):
            pacer = Pacer(clock=MonotonicClock(), speed=1000.0)
            late = []
            for t in range(0, 1_000_000, 2_000):
                while not await pacer.wait_due(t):
                    pass
                lateness = pacer.lateness(t)
                assert lateness is not None and lateness >= 0
                late.append(lateness * 1000)
            late.sort()
            p99 = late[int(0.99 * len(late))]
            print(f"pacer alone, real clock: p99 lateness {p99:.3f} ms")
            best = min(best, p99)
            if best < 5.0:
                break
        assert best < 5.0
