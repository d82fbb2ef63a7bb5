"""Synthetic fields: determinism, the statistical shape of the model, streaming, the CLI."""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics as st
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

from consumers.folding import fold_all
from consumers.registry import load_consumer
from lapcast.mosquitto import MosquittoProcess
from simulator.contract import (
    CarRetired,
    ChequeredFlag,
    Event,
    Flag,
    FlagChanged,
    LapCompleted,
    LapDeleted,
    SessionKind,
    SessionStarted,
    TimePenalty,
    encode,
)
from simulator.errors import SourceError
from simulator.logid import as_published
from simulator.sources import load_source
from simulator.synth import Field, SynthSpec, events, load, parse_spec
from simulator.synth.model import CLASSES

CLI = [sys.executable, "-m", "lapcast"]


def _digest(stream: Iterable[Event]) -> str:
    h = hashlib.sha256()
    for event in stream:
        h.update(encode(event))
        h.update(b"\n")
    return h.hexdigest()


def _laps(stream: Iterable[Event]) -> tuple[SessionStarted, list[LapCompleted], list[Event]]:
    started: SessionStarted | None = None
    laps: list[LapCompleted] = []
    others: list[Event] = []
    for event in stream:
        if isinstance(event, SessionStarted):
            started = event
        elif isinstance(event, LapCompleted):
            laps.append(event)
        else:
            others.append(event)
    assert started is not None
    return started, laps, others


def _by_car(laps: list[LapCompleted]) -> dict[str, list[LapCompleted]]:
    out: dict[str, list[LapCompleted]] = defaultdict(list)
    for lap in laps:
        out[lap.car].append(lap)
    return out


def _green_laps(laps: list[LapCompleted]) -> list[LapCompleted]:
    """Laps driven at race pace: green, not lap 1, not in- or out-laps."""
    return [x for x in laps if x.flag is Flag.GREEN and x.lap > 1 and not x.in_pit
            and x.pit_time_ms is None and x.lap_time_ms is not None]


class TestDeterminism:
    def test_same_seed_gives_byte_identical_logs(self) -> None:
        """Two streams of one spec encode to the same bytes, event for event."""
        spec = SynthSpec(cars=150, laps=40, seed=11)
        assert _digest(events(spec)) == _digest(events(spec))

    def test_events_is_a_fresh_stream_every_call(self) -> None:
        """A Source re-reads from seq 1 each time (the engine re-reads it on a seek)."""
        source = load_source("synth:cars=40,seed=3,laps=12")
        first = source.events()
        assert iter(first) is first  # a stream, not a list
        head = [next(first).seq for _ in range(50)]
        again = [e.seq for _, e in zip(range(50), source.events(), strict=False)]
        assert head == again == list(range(1, 51))
        assert _digest(source.events()) == _digest(source.events())

    def test_another_seed_gives_another_session(self) -> None:
        """The seed decides the session."""
        assert _digest(events(SynthSpec(cars=30, laps=10, seed=1))) != _digest(
            events(SynthSpec(cars=30, laps=10, seed=2)))

    def test_cli_output_identical_across_processes_and_hash_seeds(self, tmp_path: Path) -> None:
        """`lapcast synth --out` writes the same file in two processes with different hash seeds."""
        outs = []
        for hash_seed in ("1", "2"):
            out = tmp_path / f"log-{hash_seed}.jsonl"
            env = {**os.environ, "PYTHONHASHSEED": hash_seed}
            subprocess.run([*CLI, "synth", "--cars", "60", "--laps", "20", "--seed", "5",
                            "--out", str(out), "--no-progress"],
                           check=True, env=env, capture_output=True, timeout=60)
            outs.append(out.read_bytes())
        assert outs[0] == outs[1]
        assert outs[0] == b"".join(encode(e) + b"\n"
                                   for e in events(SynthSpec(cars=60, laps=20, seed=5)))


Laps = tuple[SessionStarted, list[LapCompleted], list[Event]]


@pytest.fixture(scope="module")
def race() -> Laps:
    """A 400-car race of 120 laps with one safety car and one full-course yellow."""
    return _laps(events(SynthSpec(cars=400, laps=120, seed=7, sc=1, fcy=1)))


class TestShape:

    def test_class_pace_order(self) -> None:
        """The median green lap orders the classes as their base pace in the model does."""
        classes = ("LMGT3", "LMGTE", "HYPERCAR", "LMP2")
        started, laps, _ = _laps(events(SynthSpec(cars=200, laps=30, seed=4, classes=classes)))
        class_of = {e.car: e.car_class for e in started.entries}
        medians = {}
        for name in classes:
            medians[name] = st.median(x.lap_time_ms or 0 for x in _green_laps(laps)
                                      if class_of[x.car] == name)
        expected = sorted(classes, key=lambda name: CLASSES[name].base_ms)
        assert expected[0] == "HYPERCAR"
        assert sorted(classes, key=medians.__getitem__) == expected

    def test_class_pace_close_to_the_real_race(self, race_csv: Path) -> None:
        """Each class's median green lap is within 1% of the real race's."""

        def medians(stream: Iterable[Event]) -> dict[str, float]:
            started, laps, _ = _laps(stream)
            class_of = {e.car: e.car_class for e in started.entries}
            return {name: st.median(x.lap_time_ms or 0 for x in _green_laps(laps)
                                    if class_of[x.car] == name)
                    for name in ("HYPERCAR", "LMGT3")}

        real = medians(load_source(str(race_csv)).events())
        synth = medians(events(SynthSpec(cars=72, laps=120, seed=2)))
        for name in ("HYPERCAR", "LMGT3"):
            assert abs(synth[name] - real[name]) / real[name] < 0.01, (name, synth, real)

    def test_stints_run_to_the_fuel_limit_with_in_and_out_laps(self, race: Laps) -> None:
        """Long stints end near the fuel limit; stops: an in-lap, then an out-lap with pit time."""
        started, laps, _ = race
        class_of = {e.car: e.car_class for e in started.entries}
        lengths: dict[str, list[int]] = defaultdict(list)
        for car, car_laps in _by_car(laps).items():
            since = 0
            for prev, lap in itertools.pairwise(car_laps):
                if prev.in_pit:
                    assert lap.pit_time_ms is not None and lap.pit_time_ms > 0, (car, lap.lap)
                    if since:
                        lengths[class_of[car]].append(lap.lap - since)
                    since = lap.lap
                else:
                    assert lap.pit_time_ms is None, (car, lap.lap)
        for name, values in lengths.items():
            model = CLASSES[name]
            long_runs = sorted(values)[len(values) // 2:]
            assert abs(st.median(long_runs) - model.fuel_stint_laps_mean) <= 2, (name, values)
            assert max(values) <= model.fuel_stint_laps_mean + 5 * model.fuel_stint_laps_sd
        pit = [x.pit_time_ms for x in laps if x.pit_time_ms]
        assert 60_000 < st.median(pit) < 120_000

    def test_yellow_periods_slow_every_car(self, race: Laps) -> None:
        """Every car with a lap wholly under the safety car laps far slower than its green pace."""
        _, laps, others = race
        flags = [e for e in others if isinstance(e, FlagChanged)]
        sc = [(a.session_time_ms, b.session_time_ms) for a, b in itertools.pairwise(flags)
              if a.flag is Flag.SAFETY_CAR]
        fcy = [f for f in flags if f.flag is Flag.FCY]
        assert len(sc) == 1 and len(fcy) == 1
        start, end = sc[0]
        slowed = 0
        for car_laps in _by_car(laps).values():
            green = st.median(x.lap_time_ms or 0 for x in _green_laps(car_laps))
            for prev, lap in itertools.pairwise(car_laps):
                inside = start <= prev.session_time_ms and lap.session_time_ms < end
                if inside and lap.pit_time_ms is None and not lap.in_pit:
                    assert lap.flag is Flag.SAFETY_CAR
                    assert (lap.lap_time_ms or 0) > 1.4 * green, (lap.car, lap.lap)
                    slowed += 1
        assert slowed > 400  # every car ran several laps behind it

    def test_corrections_point_at_laps_driven(self) -> None:
        """Deleted laps name a lap the car completed before the decision; penalties happen."""
        _, laps, others = _laps(events(SynthSpec(cars=1000, laps=40, seed=9)))
        crossed = {(x.car, x.lap): x.session_time_ms for x in laps}
        deleted = [e for e in others if isinstance(e, LapDeleted)]
        penalties = [e for e in others if isinstance(e, TimePenalty)]
        assert deleted and penalties
        for e in deleted:
            assert (e.car, e.lap) in crossed and crossed[(e.car, e.lap)] < e.session_time_ms
            assert e.synthesized
        assert all(e.synthesized and e.penalty_ms > 0 for e in penalties)

    def test_race_finishes_at_the_distance(self, race: Laps) -> None:
        """The first car to complete the distance takes the flag; others cross once more at most."""
        _, laps, others = race
        flag = next(e for e in others if isinstance(e, ChequeredFlag))
        assert flag.laps == 120
        assert max(x.lap for x in laps) == 120
        for car_laps in _by_car(laps).values():
            after = [x for x in car_laps if x.session_time_ms >= flag.session_time_ms]
            assert len(after) <= 1
            assert all(x.flag is Flag.CHEQUERED for x in after)
        assert all(x.synthesized for x in laps)
        assert not any(x.valid for x in laps if x.lap == 1)  # timed from the start line

    def test_no_retirements_keeps_the_rest_of_the_field(self) -> None:
        """retirements=0: nobody retires, and cars that finished anyway drive the same laps."""
        spec = SynthSpec(cars=60, laps=150, seed=6)
        _, laps, others = _laps(events(spec))
        _, steady, steady_others = _laps(events(SynthSpec(cars=60, laps=150, seed=6,
                                                          retirements=0)))
        retired = {e.car for e in others if isinstance(e, CarRetired)}
        assert retired and not any(isinstance(e, CarRetired) for e in steady_others)
        by_car, steady_by_car = _by_car(laps), _by_car(steady)
        assert len(steady_by_car) == 60
        for car, car_laps in by_car.items():
            if car not in retired:
                assert [(x.lap, x.lap_time_ms) for x in car_laps] == [
                    (x.lap, x.lap_time_ms) for x in steady_by_car[car]][:len(car_laps)]

    def test_qualifying_runs_stop_at_the_flag_and_the_budget(self) -> None:
        """Cars do out-lap, flying laps, in-lap runs within their budget and stop after the flag."""
        started, laps, others = _laps(events(SynthSpec(cars=60, laps=12, seed=5,
                                                       session="qualifying")))
        assert started.session_kind is SessionKind.QUALIFYING
        assert started.duration_ms
        flag = next(e for e in others if isinstance(e, ChequeredFlag))
        assert flag.session_time_ms == started.duration_ms
        for car_laps in _by_car(laps).values():
            assert len(car_laps) <= 12
            after = [x for x in car_laps if x.session_time_ms >= started.duration_ms]
            assert len(after) <= 1
        class_of = {e.car: e.car_class for e in started.entries}
        best = defaultdict(list)
        for car, car_laps in _by_car(laps).items():
            best[class_of[car]].append(min(x.lap_time_ms or 0 for x in car_laps))
        # Flying laps beat the race base (low fuel, fresh tyres).
        for name, values in best.items():
            assert st.median(values) < CLASSES[name].base_ms


class TestStreaming:
    def test_memory_does_not_grow_with_the_laps(self) -> None:
        """Four times the laps: four times the events, about the same peak memory."""
        peaks = []
        counts = []
        for laps in (10, 40):
            tracemalloc.start()
            n = sum(1 for _ in events(SynthSpec(cars=500, laps=laps, seed=1)))
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            counts.append(n)
        assert counts[1] > 3.5 * counts[0]
        assert peaks[1] < 1.3 * peaks[0], peaks

    def test_crossings_come_in_time_order(self) -> None:
        """The heap merge hands out crossings in session-time order."""
        times = [c.session_time_ms for c in Field(SynthSpec(cars=300, laps=15, seed=8)).crossings()]
        assert times == sorted(times)


class TestSpec:
    def test_spec_text_round_trips(self) -> None:
        """A spec's text parses back to the same spec."""
        spec = SynthSpec(cars=1000, laps=50, seed=7, classes=("HYPERCAR", "LMGT3"),
                         session="qualifying", fcy=2, sc=0, retirements=0.5)
        assert parse_spec(spec.text()) == spec
        assert parse_spec("synth") == SynthSpec()

    def test_load_source_dispatches_synth(self) -> None:
        """`load_source("synth:...")` is a synthetic source with the spec's session id."""
        source = load_source("synth:cars=10,seed=7,laps=3,classes=HYPERCAR:LMGT3,session=race")
        assert source.session_id == "synth-race-10-s7"
        assert load("synth:cars=10,seed=7,laps=3", session_id="x").session_id == "x"

    def test_errors_name_the_key_and_column(self) -> None:
        """A bad key, value or class is refused with the spec and where in it."""
        with pytest.raises(SourceError, match=r"synth:cars=5,lapz=3:1:14: unknown key 'lapz'"):
            parse_spec("synth:cars=5,lapz=3")
        with pytest.raises(SourceError, match="cars must be an integer, not 'many'"):
            parse_spec("synth:cars=many")
        with pytest.raises(SourceError, match="unknown class 'F1'"):
            parse_spec("synth:classes=HYPERCAR:F1")
        with pytest.raises(SourceError, match="cars must be 1"):
            parse_spec("synth:cars=0")
        with pytest.raises(SourceError, match="qualifying: laps is each car's budget, at least 3"):
            parse_spec("synth:session=qualifying,laps=2")


class TestCli:
    def test_synth_file_folds_like_the_stream(self, tmp_path: Path) -> None:
        """The written log loads as a journal and gives the same events as the spec."""
        out = tmp_path / "field.jsonl"
        done = subprocess.run([*CLI, "synth", "--cars", "50", "--laps", "8", "--seed", "3",
                               "--session", "race", "--out", str(out)],
                              capture_output=True, text=True, timeout=60, check=True)
        assert "events in" in done.stderr
        journal = [encode(e) for e in load_source(str(out)).events()]
        direct = [encode(e) for e in events(SynthSpec(cars=50, laps=8, seed=3))]
        assert journal == direct

    def test_bad_options_exit_2_with_one_line(self) -> None:
        """An unknown class is a clear error, not a traceback."""
        done = subprocess.run([*CLI, "synth", "--classes", "HYPERCAR:F1"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "unknown class 'F1'" in done.stderr and "Traceback" not in done.stderr


class TestReplay:
    def test_replay_synth_with_options_publishes_the_field(
        self, broker: MosquittoProcess, tmp_path: Path
    ) -> None:
        """`lapcast replay synth --cars ... --seed ...` journals exactly that field's log."""
        journal = tmp_path / "journal.jsonl"
        done = subprocess.run(
            [*CLI, "replay", "synth", "--cars", "40", "--laps", "4", "--seed", "7",
             "--broker", broker.url, "--speed", "max", "--batch", "32", "--exit-when-done",
             "--journal", str(journal)],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        spec = SynthSpec(cars=40, laps=4, seed=7)
        assert journal.read_bytes() == b"".join(encode(e) + b"\n"
                                                for e in as_published(events(spec)))


class TestRedFlag:
    def test_off_by_default_the_spec_is_unchanged(self) -> None:
        """Without red the spec's text, and so its log, is what it was before red existed."""
        spec = SynthSpec(cars=30, laps=10, seed=4)
        assert spec.red is None
        assert spec.text() == "synth:cars=30,seed=4,laps=10,classes=HYPERCAR:LMGT3,session=race"
        red = SynthSpec(cars=30, laps=10, seed=4, red=5, red_minutes=20)
        assert red.text().endswith(",red=5,red_minutes=20")
        assert parse_spec(red.text()) == red

    def test_red_period_suspends_the_race(self) -> None:
        """red=N: the flag turns RED after minute N, every running car crosses under it once
        or twice, the laps under and through it are never a best lap, and the race goes on
        to its chequered flag."""
        spec = SynthSpec(cars=40, laps=40, seed=2, red=25, red_minutes=30, retirements=0)
        stream = list(events(spec))
        _, laps, others = _laps(stream)
        changes = [e for e in others if isinstance(e, FlagChanged)]
        red = next(i for i, e in enumerate(changes) if e.flag is Flag.RED)
        start, end = changes[red].session_time_ms, changes[red + 1].session_time_ms
        assert 25 * 60_000 <= start < 27 * 60_000
        assert changes[red + 1].previous is Flag.RED and 55 * 60_000 <= end < 58 * 60_000
        assert changes[-1].flag is Flag.CHEQUERED
        under = [x for x in laps if x.flag is Flag.RED]
        assert {x.car for x in under} == {x.car for x in laps}  # every car crossed under red
        assert max(Counter(x.car for x in under).values()) <= 2
        assert not any(x.valid for x in under)
        spanning = {car: next(x for x in car_laps if x.session_time_ms >= end)
                    for car, car_laps in _by_car(laps).items()}
        assert not any(x.valid for x in spanning.values())
        invalid = {(x.car, x.lap) for x in laps if not x.valid}
        folded = fold_all([load_consumer("running-order")], iter(stream))[0].view()
        assert all((r["car"], r["best_lap"]) not in invalid for r in folded["rows"])
        assert folded["chequered"] and {r["status"] for r in folded["rows"]} == {"finished"}

    def test_red_options_checked(self) -> None:
        """red is for races, from minute 1; red_minutes needs red."""
        with pytest.raises(SourceError, match="red-flag period is modelled in races only"):
            parse_spec("synth:session=qualifying,laps=5,red=10")
        with pytest.raises(SourceError, match="red is the minute the race is suspended"):
            parse_spec("synth:red=0")
        with pytest.raises(SourceError, match="give red"):
            parse_spec("synth:red_minutes=20")

    def test_cli_red_option(self) -> None:
        """`lapcast synth --red N --red-minutes M` writes the spec's log; --help says what N is."""
        out = subprocess.run([*CLI, "synth", "--cars", "8", "--laps", "12", "--seed", "1",
                              "--red", "6", "--red-minutes", "15"],
                             check=True, capture_output=True, timeout=60).stdout
        spec = SynthSpec(cars=8, laps=12, seed=1, red=6, red_minutes=15)
        assert out == b"".join(encode(e) + b"\n" for e in events(spec))
        help_text = subprocess.run([*CLI, "synth", "--help"], check=True, capture_output=True,
                                   text=True, timeout=60).stdout
        assert "--red N" in help_text and "minute N" in help_text
