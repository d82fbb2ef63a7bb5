"""End-to-end latency: engine publish -> first consumer state message reflecting the event.

Starts a private Mosquitto, the three built-in consumers (``lapcast consume``) and
the replay engine (``lapcast replay``) on the shared 2024 Bahrain race (a
``lapcast.topology.Topology`` per run, on the one broker), and listens to the events
(each message carries ``published_at_ns``, the engine's wall clock at publish) and to
every consumer's state topic (stamped with the ``seq`` it reflects).
The latency of an event for a consumer is the arrival time of the first state
message whose ``(epoch, seq)`` reaches it, minus the event's ``published_at_ns``: it
includes the broker hops, the fold and the coalescing wait (``--publish-ms``).

Runs (``--runs``): ``--speed 100`` for ``--seconds`` of wall time (the paced case),
and ``--speed max`` for the whole race (the burst case, which also gives each
consumer's sustained events/s: events folded / (last state - first event)), one
event per message and in batches (the engine's ``--batch``).

    .venv/bin/python bench/latency.py [--seconds 30] [--runs 100:1,max:1,max:25]
                                      [--publish-ms 100] [--checkpoint-events 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumers.registry import BUILTIN  # noqa: E402
from lapcast.logs import configure_logging  # noqa: E402
from lapcast.topology import (  # noqa: E402
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoSpec,
    Supervisor,
    Topology,
)
from simulator import topics  # noqa: E402
from simulator.connection import parse_broker_url  # noqa: E402
from simulator.contract import (  # noqa: E402
    PUBLISHED_AT,
    decode_consumer_health,
    decode_engine_status,
    decode_message,
    decode_state_stamp,
    events_of,
)

RACE = ROOT.parent / "shared" / "data" / "wec-2024-bahrain-8h-race.analysis.csv"


@dataclass
class Recorder:
    """What the watcher hears: states (stamped on arrival by mosquitto_sub), health, status.

    The probes are ``mosquitto_sub`` processes (C): they take next to no CPU from the
    processes being measured and stamp each message when it arrives (``%U``).
    """

    session_id: str
    published: dict[tuple[int, int], int] = field(default_factory=dict)
    states: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine_status: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, stream: Any) -> None:
        """Lines ``arrival_ns|topic|retain|payload`` until the watcher ends."""
        for raw in stream:
            stamp, topic, retain, payload = raw.decode().rstrip("\n").split("|", 3)
            if not payload:
                continue
            data = payload.encode()
            if topic == topics.status(self.session_id):
                self.engine_status = msgspec.to_builtins(decode_engine_status(data))
            elif "/consumers/" in topic:
                health = decode_consumer_health(data)
                self.health[health.consumer] = msgspec.to_builtins(health)
            elif retain == "0":  # a state published during the run
                seconds, _, nanos = stamp.partition(".")
                state = decode_state_stamp(data)
                with self.lock:
                    self.states.setdefault(state.projection, []).append(
                        (state.epoch, state.seq, int(seconds) * 10**9 + int(nanos)))

    def load_events(self, path: Path) -> None:
        """The events recorded (``user properties|payload``): seq -> engine publish time."""
        for raw in path.read_bytes().splitlines():
            props, _, payload = raw.partition(b"|")
            stamp = next((int(v) for k, _, v in (p.partition(":") for p in
                                                 props.decode().split(" ") if p)
                          if k == PUBLISHED_AT), None)
            if stamp is None:
                continue
            for event in events_of(decode_message(payload)):
                self.published.setdefault((event.epoch, event.seq), stamp)


def mosquitto_sub(port: int, topic_filters: list[str], fmt: str,
                  out: Any) -> subprocess.Popen[bytes]:
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1",
            "-F", fmt, "-i", f"bench-{uuid.uuid4().hex[:8]}"]
    for topic in topic_filters:
        argv += ["-t", topic]
    return subprocess.Popen(argv, stdout=out)


def probe(port: int, session_id: str, events_file: Path
          ) -> tuple[list[subprocess.Popen[bytes]], Recorder]:
    rec = Recorder(session_id)
    root = topics.session_root(session_id)
    with events_file.open("wb") as out:
        events = mosquitto_sub(port, [topics.events(session_id)], "%P|%p", out)
    watcher = mosquitto_sub(port, [f"{root}/state/+", f"{root}/consumers/+/status",
                                   topics.status(session_id)], "%U|%t|%r|%p", subprocess.PIPE)
    threading.Thread(target=rec.read, args=(watcher.stdout,), daemon=True).start()
    return [events, watcher], rec


def latencies(rec: Recorder, projection: str) -> list[float]:
    """Per event, ms from engine publish to the first state message reaching its seq."""
    with rec.lock:
        states = sorted(rec.states.get(projection, []), key=lambda s: s[2])
        published = sorted(rec.published.items())
    out: list[float] = []
    i = 0
    for (epoch, seq), sent in published:
        while i < len(states) and (states[i][0], states[i][1]) < (epoch, seq):
            i += 1
        if i == len(states):
            break
        out.append((states[i][2] - sent) / 1e6)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def topology(speed: str, batch: int, args: argparse.Namespace, broker_url: str,
             session: str, work: Path) -> Topology:
    """The three consumers and the engine of one run, on the bench's broker."""
    return Topology(
        broker=ExternalBroker(broker_url),
        consumers=tuple(
            ConsumerSpec(consumer=name, session_id=session, state_dir=work / "state",
                         extra=("--publish-ms", str(args.publish_ms),
                                "--checkpoint-events", str(args.checkpoint_events),
                                "--checkpoint-ms", str(args.checkpoint_ms)))
            for name in BUILTIN
        ),
        engine=EngineSpec(source=str(args.source.resolve()), session_id=session, speed=speed,
                          journal=work / f"{session}.jsonl", extra=("--batch", str(batch))),
    )


def run(speed: str, batch: int, args: argparse.Namespace, broker_url: str,
        work: Path) -> None:
    session = f"bench-{speed}-{uuid.uuid4().hex[:6]}"
    events_file = work / f"{session}.events"
    subs, rec = probe(parse_broker_url(broker_url).port, session, events_file)
    # Logs in work/SESSION/NAME.log.
    parts = Supervisor(topology(speed, batch, args, broker_url, session, work),
                       work / session, grace_s=30)
    try:
        parts.start_consumers()
        wait_until(lambda: len(rec.health) == len(BUILTIN), 30, "the consumers to subscribe")
        started = time.monotonic()
        parts.start_engine()
        if speed == "max":
            wait_until(lambda: rec.engine_status.get("state") == "finished", 600,
                       "the replay to finish")
        else:
            time.sleep(args.seconds)
        parts.stop_children(["engine"])
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # the events probe writes the last messages
        subs[0].terminate()
        subs[0].wait()
        rec.load_events(events_file)
        last = max(rec.published)
        wait_until(lambda: all(rec.states.get(n) and (rec.states[n][-1][0], rec.states[n][-1][1])
                               >= last for n in BUILTIN), 60, "the consumers to catch up")
    finally:
        parts.stop()
        for proc in subs:
            proc.terminate()
        for proc in subs:
            proc.wait(30)
    events = len(rec.published)
    print(f"\n--speed {speed} --batch {batch}: {events} events published in {elapsed:.1f} s")
    print(f"  {'consumer':<14} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'events/s':>10} "
          f"{'catch-ups':>9} {'duplicates':>10}")
    first_sent = min(rec.published.values())
    for name in BUILTIN:
        lat = latencies(rec, name)
        done = rec.states[name][-1][2]
        rate = events / ((done - first_sent) / 1e9)
        health = rec.health.get(name, {})
        print(f"  {name:<14} {statistics.median(lat):8.1f} {pct(lat, 99):8.1f} "
              f"{max(lat):8.1f} {rate:10.0f} {health.get('catchups', '?'):>9} "
              f"{health.get('duplicates', '?'):>10}" + ("" if speed == "max" else "  (paced)"))
    if any(h.get("dead_letters") for h in rec.health.values()):
        print("  dead letters:", {n: h.get("dead_letters") for n, h in rec.health.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=RACE)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="wall seconds of the --speed 100 run (default 30)")
    parser.add_argument("--runs", default="100:1,max:1,max:25", metavar="SPEED:BATCH,...",
                        help="replays to measure: engine --speed and --batch "
                             "(default 100:1,max:1,max:25)")
    parser.add_argument("--publish-ms", type=int, default=100,
                        help="consumers' coalescing interval N (default 100)")
    parser.add_argument("--checkpoint-events", type=int, default=1000)
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    args = parser.parse_args()
    configure_logging()  # quiet: warnings and errors only
    print(f"settings: consumers --publish-ms {args.publish_ms} "
          f"--checkpoint-events {args.checkpoint_events} --checkpoint-ms "
          f"{args.checkpoint_ms}; source {args.source.name}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="lapcast-bench-") as tmp:
        work = Path(tmp)
        with Supervisor(Topology(broker=MosquittoSpec(config="dev.conf")), work) as broker:
            url = broker.start_broker()
            for spec in args.runs.split(","):
                speed, _, batch = spec.partition(":")
                run(speed, int(batch or 1), args, url, work)


if __name__ == "__main__":
    main()
