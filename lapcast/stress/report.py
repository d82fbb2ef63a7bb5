"""What a stress run measured: the figures, and the arithmetic behind them (pure).

Latency of an event for a consumer: the arrival, at the probe, of the first state
message of that consumer whose ``seq`` reaches the event, minus the engine's
``published_at_ns`` of the message that carried the event. It includes both broker
hops, the decode, the fold and the coalescing wait (``--publish-ms``).

CPU per event of a process: its CPU time over a window of the run divided by the
events (``lapcast.stress.cost``), beside the bare work of the same events measured
in the harness: ``overhead`` is the one over the other.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lapcast.stress.cost import BareCosts
from lapcast.stress.probe import ConsumerTrace
from lapcast.stress.recorder import EventsTrace

__all__ = [
    "ConsumerFigures",
    "EngineFigures",
    "Latency",
    "PubFigures",
    "StressReport",
    "event_latencies",
    "max_behind",
    "peak_rate",
    "per_event_us",
    "rate",
]


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Milliseconds."""

    p50: float | None
    p99: float | None
    max: float | None
    samples: int

    @classmethod
    def of(cls, values_ns: Sequence[int]) -> Latency:
        if not values_ns:
            return cls(p50=None, p99=None, max=None, samples=0)
        ordered = sorted(values_ns)
        n = len(ordered)

        def pick(q: float) -> float:
            return round(ordered[min(n - 1, int(q * n))] / 1e6, 2)

        return cls(p50=pick(0.50), p99=pick(0.99), max=round(ordered[-1] / 1e6, 2), samples=n)


@dataclass(kw_only=True)
class EngineFigures:
    events: int  # distinct events the probe received
    messages: int
    seconds: float  # first to last arrival at the probe
    events_per_s: float
    peak_events_per_s_1s: float
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    lost_at_probe: int = 0  # events the probe never received
    redelivered_at_probe: int = 0  # QoS 1 duplicates the probe received
    # First event published to last event received by the recorder.
    cpu_window_s: float | None = None
    cpu_us_per_event: float | None = None  # the engine's CPU over that window
    bare_us_per_event: float | None = None  # bare decode + encode of an event

    @property
    def overhead(self) -> float | None:
        return _ratio(self.cpu_us_per_event, self.bare_us_per_event)


@dataclass(kw_only=True)
class ConsumerFigures:
    name: str
    applied: int
    last_seq: int
    lost: int
    double_counted: int
    state_matches_journal_fold: bool
    duplicates_ignored: int
    # Most events the engine had published (as the probe heard them) beyond the state
    # the consumer had published, at any of its state messages.
    max_behind_events: int
    caught_up_after_ms: float | None  # last state reaching the end - last event published
    events_per_s: float | None
    state_messages: int
    latency: Latency
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    # First event published to the first state reaching the last event, at the probe.
    cpu_window_s: float | None = None
    cpu_us_per_event: float | None = None  # the consumer's CPU over that window
    bare_fold_us_per_event: float | None = None  # its Folder.apply alone
    bare_us_per_event: float | None = None  # bare decode + its fold
    dead_letters: int = 0

    @property
    def overhead(self) -> float | None:
        return _ratio(self.cpu_us_per_event, self.bare_us_per_event)


@dataclass(kw_only=True)
class PubFigures:
    """``mosquitto_pub -l -q 1`` on the same broker: one message per event line."""

    messages: int
    seconds: float
    messages_per_s: float
    wall_messages_per_s: float  # by the process's own run time, connect included


@dataclass(kw_only=True)
class StressReport:
    spec: str
    session_id: str
    events: int
    session_ms: int
    generate_s: float
    rate_target: float | None  # events/s; None: max
    speed: float | None  # the engine's --speed that aims at the rate; None: max
    batch: int
    window: int
    linger_ms: float  # the engine's: paced batches wait up to this for later events
    publish_ms: int
    broker: str
    engine: EngineFigures
    consumers: list[ConsumerFigures]
    latency: Latency  # every consumer's events together
    journal_events: int
    journal_matches_log: bool
    broker_peak_rss_mb: float | None
    mosquitto_pub: PubFigures | None
    probe_cpu_s: float  # this process while the engine ran (the state probe, mostly)
    recorder_cpu_s: float  # mosquitto_sub recording the events
    wall_s: float
    bare: BareCosts | None = None  # the bare decode, encode and folds of the journal
    # Over the engine's window: the broker's processes, the recorder, the harness.
    cpu_others_us_per_event: dict[str, float | None] = field(default_factory=dict)
    timed_out: bool = False
    errors: list[str] = field(default_factory=list)
    workdir: str | None = None

    @property
    def lost(self) -> int:
        return sum(c.lost for c in self.consumers)

    @property
    def double_counted(self) -> int:
        return sum(c.double_counted for c in self.consumers)

    @property
    def ok(self) -> bool:
        return (not self.timed_out and not self.errors and self.lost == 0
                and self.double_counted == 0 and self.journal_matches_log
                and all(c.state_matches_journal_fold for c in self.consumers))

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["lost"] = self.lost
        doc["double_counted"] = self.double_counted
        doc["ok"] = self.ok
        doc["engine"]["overhead"] = self.engine.overhead
        for out, consumer in zip(doc["consumers"], self.consumers, strict=True):
            out["overhead"] = consumer.overhead
        return doc


def per_event_us(cpu_s: float | None, events: int) -> float | None:
    """Microseconds per event, None when either is unknown."""
    if cpu_s is None or events <= 0:
        return None
    return round(cpu_s / events * 1e6, 2)


def _ratio(cost: float | None, bare: float | None) -> float | None:
    return None if cost is None or not bare else round(cost / bare, 2)


def event_latencies(events: EventsTrace, consumer: ConsumerTrace, total: int) -> array[int]:
    """Per event (seq 1..total): first state reaching it minus the event's publish stamp."""
    published = array("q", bytes(8 * (total + 1)))
    for first, last, stamp in zip(events.first_seq, events.last_seq, events.published_ns,
                                  strict=True):
        for seq in range(first, min(last, total) + 1):
            if not published[seq]:
                published[seq] = stamp  # a redelivery keeps the first publication
    out = array("q")
    seq = 1
    for state_seq, received, _ in consumer.states:
        while seq <= min(state_seq, total):
            if published[seq]:
                out.append(received - published[seq])
            seq += 1
    return out


def rate(count: int, first_ns: int, last_ns: int) -> float:
    """Per second, between two moments (0 when they coincide)."""
    span = (last_ns - first_ns) / 1e9
    return round(count / span, 1) if span > 0 else 0.0


def peak_rate(trace: EventsTrace, window_ns: int = 1_000_000_000) -> float:
    """The most events that arrived within any window of ``window_ns``, per second."""
    times = trace.received_ns
    counts = [last - first + 1 for first, last in zip(trace.first_seq, trace.last_seq,
                                                       strict=True)]
    best = inside = start = 0
    for end in range(len(times)):
        inside += counts[end]
        while times[end] - times[start] > window_ns:
            inside -= counts[start]
            start += 1
        best = max(best, inside)
    return round(best * 1e9 / window_ns, 1)


def max_behind(events: EventsTrace, consumer: ConsumerTrace) -> int:
    """The most events published (heard by the probe) beyond a state, at any state."""
    received, last = events.received_ns, events.last_seq
    worst = 0
    i = 0
    head = 0
    for seq, at, _ in consumer.states:
        while i < len(received) and received[i] <= at:
            head = max(head, last[i])
            i += 1
        worst = max(worst, head - seq)
    return worst
