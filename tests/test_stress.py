"""`lapcast stress`: a short real run loses and double-counts nothing; the report's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from support.procs import alive, cmdline, descendants

from consumers.folding import fold_all
from consumers.registry import ALL_BUILTIN, BUILTIN, load_consumer
from lapcast.stress.cost import CpuSampler, bare_costs, process_cpu_s
from lapcast.stress.harness import StressSettings, _Run
from lapcast.stress.probe import ConsumerTrace
from lapcast.stress.recorder import EventsTrace, parse_line, seq_range
from lapcast.stress.report import Latency, event_latencies, max_behind, peak_rate, rate
from simulator.contract import decode_event, encode
from simulator.synth import SynthSpec, events

CLI = [sys.executable, "-m", "lapcast"]
MS = 1_000_000


def _trace(messages: list[tuple[int, int, int, int]]) -> EventsTrace:
    trace = EventsTrace()
    for first, last, published, received in messages:
        trace.add(first, last, published, received)
    return trace


class TestStressRun:
    def test_short_run_loses_and_double_counts_nothing(self, tmp_path: Path) -> None:
        """Engine, Mosquitto and the four built-in consumers over a small field: every event
        once, states equal to the journal's fold, a latency per event per consumer, a
        baseline measured."""
        done = subprocess.run(
            [*CLI, "stress", "--cars", "24", "--laps", "12", "--seed", "3", "--rate", "max",
             "--batch", "16", "--publish-ms", "10", "--pub-messages", "300", "--timeout", "90",
             "--workdir", str(tmp_path / "run"), "--json", "--no-progress"],
            capture_output=True, text=True, timeout=150,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        report = json.loads(done.stdout)
        events = report["events"]
        assert report["ok"] and report["lost"] == 0 and report["double_counted"] == 0
        assert report["journal_events"] == events and report["journal_matches_log"]
        assert report["engine"]["events"] == events and report["engine"]["lost_at_probe"] == 0
        # The lap chart runs beside the three the targets concern, reported like them.
        assert {c["name"] for c in report["consumers"]} == {
            "running-order", "class-poles", "championship", "lap-chart"}
        for consumer in report["consumers"]:
            assert consumer["applied"] == events == consumer["last_seq"]
            assert consumer["state_matches_journal_fold"]
            assert consumer["latency"]["samples"] == events
            assert 0 < consumer["latency"]["p50"] <= consumer["latency"]["max"] < 60_000
            assert consumer["peak_rss_mb"] > 10
        assert report["latency"]["samples"] == len(report["consumers"]) * events
        # Every event but SessionStarted, one a message, up to --pub-messages.
        assert report["mosquitto_pub"]["messages"] == min(300, events - 1)
        assert report["engine"]["peak_rss_mb"] > 10 and report["broker_peak_rss_mb"] > 0
        # The run's files stay where asked: the journal is the generated log, its
        # SessionStarted stamped with the log id.
        run = tmp_path / "run"
        journal_lines = (run / "journal.jsonl").read_bytes().splitlines()
        field_lines = (run / "field.jsonl").read_bytes().splitlines()
        assert journal_lines[1:] == field_lines[1:]
        assert msgspec.structs.replace(decode_event(journal_lines[0]), log_id="") == \
            decode_event(field_lines[0])

    def test_paced_run_lingers_into_fuller_messages(self, tmp_path: Path) -> None:
        """At a target rate the engine waits --linger-ms for later events: at 5,000
        events/s and 3 ms, messages carry several events each, and nothing is lost."""
        done = subprocess.run(
            [*CLI, "stress", "--cars", "24", "--laps", "40", "--seed", "5", "--rate", "5000",
             "--pub-messages", "0", "--timeout", "90", "--json", "--no-progress"],
            capture_output=True, text=True, timeout=150,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert (report["batch"], report["window"], report["linger_ms"]) == (64, 64, 3.0)
        assert report["ok"] and report["lost"] == 0 and report["double_counted"] == 0
        engine = report["engine"]
        assert engine["events"] == report["events"]
        # ~15 events fall due in 3 ms at this rate; without the linger most instants
        # (cars cross the line one at a time) would be a message of their own.
        assert engine["messages"] * 4 < engine["events"], engine

    def test_cpu_per_event_beside_the_bare_work(self, tmp_path: Path) -> None:
        """Every process's CPU per event over the run's events is there and above 0, each
        consumer's at least its bare fold, beside the bare decode of the same events."""
        done = subprocess.run(
            [*CLI, "stress", "--cars", "24", "--laps", "150", "--seed", "4", "--rate", "10000",
             "--pub-messages", "0", "--timeout", "90", "--json", "--no-progress"],
            capture_output=True, text=True, timeout=150,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["ok"]
        bare = report["bare"]
        assert bare["events"] == report["events"] == report["journal_events"]
        assert 0 < bare["decode_us"] < 1000 and 0 < bare["encode_us"] < 1000
        assert set(bare["fold_us"]) == set(ALL_BUILTIN)
        engine = report["engine"]
        # ~3,400 events at 10,000/s: a window of about a third of a second.
        assert 0.1 < engine["cpu_window_s"] < 30
        assert 0 < engine["cpu_us_per_event"] < 10_000
        assert engine["bare_us_per_event"] == round(bare["decode_us"] + bare["encode_us"], 3)
        assert engine["overhead"] > 0
        for consumer in report["consumers"]:
            fold = bare["fold_us"][consumer["name"]]
            assert 0 < fold == consumer["bare_fold_us_per_event"]
            assert consumer["cpu_window_s"] >= engine["cpu_window_s"] * 0.9
            assert consumer["cpu_us_per_event"] >= fold, consumer
            assert consumer["bare_us_per_event"] == round(bare["decode_us"] + fold, 3)
            assert consumer["overhead"] > 0
        others = report["cpu_others_us_per_event"]
        assert set(others) == {"mosquitto", "recorder", "harness"}
        assert all(us is not None and us >= 0 for us in others.values())

    def test_sigkill_of_a_run_still_stops_its_children(self, tmp_path: Path) -> None:
        """A stress run killed with SIGKILL leaves no broker, engine or consumer behind."""
        run = subprocess.Popen(
            [*CLI, "stress", "--laps", "3000", "--pub-messages", "0", "--no-progress",
             "--workdir", str(tmp_path / "run")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started: set[int] = set()
        try:
            deadline = time.monotonic() + 60
            # mosquitto, mosquitto_sub, four consumers and the engine
            while (len(started) < 6 or not any("lapcast replay" in cmdline(p) for p in started)
                   ) and time.monotonic() < deadline:
                started |= descendants(run.pid)
                time.sleep(0.1)
            assert len(started) >= 6, [cmdline(p) for p in started]
        finally:
            run.kill()
            run.wait()
        deadline = time.monotonic() + 15
        while [pid for pid in started if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [f"{pid}: {cmdline(pid)}" for pid in started if alive(pid)]

    def test_table_names_the_figures(self, tmp_path: Path) -> None:
        """Without --json: throughput, consumers, memory, journal and the verdict."""
        done = subprocess.run(
            [*CLI, "stress", "--cars", "12", "--laps", "5", "--rate", "max", "--pub-messages",
             "50", "--timeout", "90", "--no-progress"],
            capture_output=True, text=True, timeout=150, env={**os.environ, "COLUMNS": "200"},
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        for text in ("Throughput", "mosquitto_pub", "latency p99", "state = fold of the journal",
                     "CPU per event, first to last event", "bare, in the harness",
                     "CPU µs/event", "overhead",
                     "Peak memory", "identical to the generated log",
                     "OK: 0 lost, 0 double-counted"):
            assert text in done.stdout, text


class TestWorkdir:
    def test_a_reused_folder_is_cleared_of_the_last_run_only(self, tmp_path: Path) -> None:
        """Journal, logs, recordings and checkpoints of a previous run go; other files stay."""
        for name in ("journal.jsonl", "field.jsonl", "engine.log", "events.rec", "notes.txt"):
            (tmp_path / name).write_text("old")
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "x.ckpt").write_text("old")
        run = _Run(StressSettings(spec=SynthSpec(cars=2, laps=1)), tmp_path, lambda _: None)
        run._fresh()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


class TestReport:
    def test_latency_is_first_state_reaching_the_event(self) -> None:
        """Each event's latency runs to the first state whose seq reaches it."""
        events = _trace([(1, 2, 100 * MS, 101 * MS), (3, 5, 110 * MS, 111 * MS)])
        consumer = ConsumerTrace("x", states=[(2, 105 * MS, 0), (5, 130 * MS, 0)])
        assert list(event_latencies(events, consumer, 5)) == [
            5 * MS, 5 * MS, 20 * MS, 20 * MS, 20 * MS]

    def test_a_redelivered_event_keeps_its_first_publication(self) -> None:
        """A QoS 1 duplicate counts twice in `seen` and does not restamp the event."""
        events = _trace([(1, 3, 100 * MS, 101 * MS), (2, 3, 200 * MS, 201 * MS)])
        assert list(events.seen[1:4]) == [1, 2, 2]
        consumer = ConsumerTrace("x", states=[(3, 250 * MS, 0)])
        assert list(event_latencies(events, consumer, 3)) == [150 * MS] * 3

    def test_max_behind_counts_events_heard_before_each_state(self) -> None:
        """Behind = the engine's newest seq heard by then, minus the state's seq."""
        events = _trace([(1, 10, 0, 10), (11, 50, 0, 20), (51, 60, 0, 40)])
        consumer = ConsumerTrace("x", states=[(5, 15, 0), (20, 30, 0), (60, 50, 0)])
        assert max_behind(events, consumer) == 30

    def test_rates(self) -> None:
        """Sustained rate over the span; the peak over any one-second window."""
        assert rate(1000, 0, 500 * MS) == 2000.0
        assert rate(5, 7, 7) == 0.0
        events = _trace([(1, 100, 0, 0), (101, 150, 0, 900 * MS), (151, 160, 0, 2500 * MS)])
        assert peak_rate(events) == 150.0

    def test_recorded_line_parses_to_arrival_stamp_and_seqs(self) -> None:
        """A mosquitto_sub line gives the arrival in ns, the engine's stamp and the seq range."""
        line = (b'lapcast/v1/sessions/s/events 1795739458.042150988 published_at_ns:17957394580'
                b'00000000 {"type":"Batch","events":[{"seq":7,"car":"a b"},{"seq":9}]}\n')
        topic, received, stamp, payload = parse_line(line)
        assert topic == "lapcast/v1/sessions/s/events"
        assert received == 1795739458_042150988
        assert stamp == 1795739458_000000000
        assert seq_range(payload) == (7, 9)
        _, _, no_stamp, single = parse_line(b"t 1.5  {\"type\":\"LapCompleted\",\"seq\":3}\n")
        assert no_stamp is None and seq_range(single) == (3, 3)

    def test_latency_percentiles(self) -> None:
        """p50, p99 and max in milliseconds; empty input gives none."""
        lat = Latency.of([i * MS for i in range(1, 101)])
        assert (lat.p50, lat.p99, lat.max, lat.samples) == (51.0, 100.0, 100.0, 100)
        assert Latency.of([]).samples == 0


class TestCost:
    def test_process_cpu_grows_with_work(self) -> None:
        """/proc/PID/stat's utime + stime of this process counts CPU spent."""
        before = process_cpu_s(os.getpid())
        assert before is not None
        deadline = time.process_time() + 0.1
        while time.process_time() < deadline:
            pass
        after = process_cpu_s(os.getpid())
        assert after is not None and after - before >= 0.05
        assert process_cpu_s(2**22 + 12345) is None  # no such process

    def test_cpu_between_takes_the_samples_around_the_window(self) -> None:
        """From the last sample at or before the start to the first at or after the end:
        work inside the window is never missed; no sample past the end gives None."""
        sampler = CpuSampler(interval_s=3600)  # sampled by hand only
        sampler.watch("me", os.getpid())
        start = time.time_ns()
        deadline = time.process_time() + 0.1
        while time.process_time() < deadline:
            pass
        end = time.time_ns()
        assert sampler.cpu_between("me", start, end) is None  # nothing sampled after
        sampler.sample()
        cpu = sampler.cpu_between("me", start, end)
        assert cpu is not None and cpu >= 0.05
        assert sampler.cpu_between("me", start - 10**12, end) is None  # before any sample
        assert sampler.cpu_between("other", start, end) is None
        sampler.stop()

    def test_bare_costs_time_each_part_and_fold_as_offline(self) -> None:
        """Decode, encode and each consumer's fold are timed apart over the same lines,
        and the folders end where an offline fold of the events does."""
        spec = SynthSpec(cars=8, laps=30, seed=2)
        lines = [encode(e) + b"\n" for e in events(spec, session_id="s")]
        consumers = [load_consumer(name) for name in BUILTIN]
        bare, folders = bare_costs(iter(lines), consumers)
        assert bare.events == len(lines)
        assert bare.decode_us > 0 and bare.encode_us > 0
        assert set(bare.fold_us) == set(BUILTIN) and all(v > 0 for v in bare.fold_us.values())
        offline = fold_all(consumers, events(spec, session_id="s"))
        assert [f.view() for f in folders] == [f.view() for f in offline]
        assert [f.seq for f in folders] == [len(lines)] * 3
