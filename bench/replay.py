"""How fast the replay engine publishes at ``--speed max``, against its baselines.

    .venv/bin/python bench/replay.py                 # 200,002 events, window 64
    .venv/bin/python bench/replay.py --laps 100      # quicker, 40,002 events

In one run, against one private Mosquitto (``broker-config/dev.conf``), QoS 1 and
the same in-flight window on every side, each publisher sends the same generated
log (400 cars x 500 laps + 2 = 200,002 events; one JSON payload per event) and a
``mosquitto_sub`` (C, QoS 1) counts what arrives, stamping each message on receipt
(``%U``); a rate is events between the first and the last message received,
divided by the time between them:

1. the engine, one event per message (``ReplayEngine``, speed max, journal on);
2. a bare aiomqtt loop: the same payloads, the same window of pipelined publishes;
3. ``mosquitto_pub -l -q 1 -M WINDOW`` fed the same payloads, one per line, in runs
   of at most 60,000 lines: mosquitto_pub 2.0.11 disconnects early once its 16-bit
   message ids wrap (it takes a PUBACK of a reused id for the last one's), so a
   single run of 200,000 lines loses most of them. Its rate is the lines over the
   sum of the runs' first-to-last receipt times (the reconnections are not counted);
4. the engine with ``--batch 64``.

(1) and (2) run as ``--repeat`` back-to-back pairs (which goes first alternates): on
a shared machine the load drifts between runs by more than the difference measured,
so each pair gives a ratio under the same conditions, and the median ratio counts.

Targets: (1) at least 80% of (2) (median of the pairs' ratios); (4) events/s at least
(3)'s messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt

from lapcast.mosquitto import MosquittoProcess
from simulator.connection import parse_broker_url
from simulator.contract import encode
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import generated_events
from simulator.sources import Source
from simulator.topics import events as events_topic

# mosquitto_pub 2.0.11 -l loses messages once its 16-bit message ids wrap (see above).
MOSQUITTO_PUB_RUN = 60_000


class Subscriber:
    """``mosquitto_sub`` on one topic, QoS 1; receipt times of every message."""

    def __init__(self, port: int, topic: str, messages: int) -> None:
        self.topic = topic
        self.messages = messages
        self.times: list[float] = []
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "mqttv5",
             "-t", topic, "-t", f"{topic}/ready", "-F", "%t %U"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.ready = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            topic, _, stamp = line.decode().rstrip("\n").rpartition(" ")
            if topic == f"{self.topic}/ready":
                self.ready.set()
                continue
            self.times.append(float(stamp))
            if len(self.times) == self.messages:
                self.done.set()

    async def wait_ready(self, port: int) -> None:
        """Probe until the subscription is in place (no sleep-and-hope)."""
        async with aiomqtt.Client("127.0.0.1", port) as client:
            while not self.ready.is_set():
                await client.publish(f"{self.topic}/ready", b"?", qos=1)
                await asyncio.sleep(0.05)

    def wait_done(self, timeout: float) -> None:
        if not self.done.wait(timeout):
            raise SystemExit(f"{self.topic}: {len(self.times)} of {self.messages} messages "
                             f"arrived within {timeout} s")
        self.proc.terminate()
        self.proc.wait()

    def rate(self, events: int, runs: list[int] | None = None) -> float:
        """Events/s between the first and the last receipt (the first message excluded);
        with ``runs`` (messages per run), over the sum of each run's span."""
        per_message = events / self.messages
        spans, start = [], 0
        for count in runs or [self.messages]:
            spans.append(self.times[start + count - 1] - self.times[start])
            start += count
        return (events - per_message * len(spans)) / sum(spans)


async def _bare_loop(port: int, topic: str, payloads: list[bytes], window: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5,
                              max_inflight_messages=window) as client:
        client.pending_calls_threshold = 1 << 30
        slots = asyncio.Semaphore(window)

        async def one(payload: bytes) -> None:
            try:
                await client.publish(topic, payload, qos=1, timeout=math.inf)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as tg:
            for payload in payloads:
                await slots.acquire()
                tg.create_task(one(payload))


def _measure(port: int, topic: str, messages: int, events: int,
             publish: Callable[[], Awaitable[object]] | None = None,
             command: list[str] | None = None, chunks: list[Path] | None = None) -> float:
    sub = Subscriber(port, topic, messages)
    asyncio.run(sub.wait_ready(port))
    runs = None
    if publish is not None:
        asyncio.run(publish())  # type: ignore[arg-type]
    else:
        assert command is not None and chunks is not None
        runs = []
        for chunk in chunks:
            with chunk.open("rb") as data:
                subprocess.run(command, stdin=data, check=True)
            runs.append(chunk.read_bytes().count(b"\n"))
    sub.wait_done(timeout=300)
    return sub.rate(events, runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, default=400)
    parser.add_argument("--laps", type=int, default=500)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3,
                        help="back-to-back pairs of engine and bare-loop runs (median ratio "
                             "counts)")
    args = parser.parse_args(argv)

    session = "bench"
    events = generated_events(session, cars=args.cars, laps=args.laps)
    payloads = [encode(event) for event in events]
    n = len(events)
    source = Source(name="generated", session_id=session, open_events=lambda: iter(events),
                    size=n)
    work = Path(tempfile.mkdtemp(prefix="lapcast-bench-replay-"))
    chunks = []
    for start in range(0, n, MOSQUITTO_PUB_RUN):
        chunk = work / f"payloads-{start}.txt"
        chunk.write_bytes(b"".join(p + b"\n" for p in payloads[start:start + MOSQUITTO_PUB_RUN]))
        chunks.append(chunk)
    # As `lapcast replay` does after loading: the log stays out of full collections.
    gc.collect()
    gc.freeze()
    print(f"{n:,} events, {sum(map(len, payloads)) / n:.0f} bytes each on average, "
          f"QoS 1, window {args.window}, counted by mosquitto_sub", flush=True)

    with MosquittoProcess(config="dev.conf", workdir=work / "broker") as broker:
        port = broker.port
        settings = parse_broker_url(broker.url)

        def engine(run: str, batch: int) -> Callable[[], Awaitable[object]]:
            async def go() -> None:
                src = Source(name="generated", session_id=run, open_events=source.open_events,
                             size=n)
                engine = ReplayEngine(src, ReplaySettings(
                    broker=settings, journal_path=work / f"{run}.jsonl", speed=None,
                    batch=batch, window=args.window, exit_when_done=True))
                await engine.run()
            return go

        rates: dict[str, float] = {}
        ratios: list[float] = []
        started = time.perf_counter()
        for run in range(1, args.repeat + 1):
            pair: dict[str, float] = {}
            order = ("engine", "bare") if run % 2 else ("bare", "engine")
            for who in order:
                if who == "engine":
                    pair[who] = _measure(port, events_topic(f"engine-{run}"), n, n,
                                         publish=engine(f"engine-{run}", 1))
                else:
                    topic = f"bench/bare-{run}"
                    pair[who] = _measure(port, topic, n, n, publish=functools.partial(
                        _bare_loop, port, topic, payloads, args.window))
            ratios.append(pair["engine"] / pair["bare"])
            for who in pair:
                rates[who] = max(rates.get(who, 0.0), pair[who])
            print(f"pair {run}: engine {pair['engine']:8,.0f} events/s, bare aiomqtt "
                  f"{pair['bare']:8,.0f} messages/s: {ratios[-1]:.0%}", flush=True)
        topic = "bench/mosquitto_pub"
        rates["mosquitto_pub"] = _measure(
            port, topic, n, n,
            command=["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                     "-M", str(args.window), "-t", topic, "-l"], chunks=chunks)
        print(f"mosquitto_pub -l:           {rates['mosquitto_pub']:10,.0f} messages/s",
              flush=True)
        batches = math.ceil(n / args.batch)
        rates["batch"] = _measure(port, events_topic("engine-b"), batches, n,
                                  publish=engine("engine-b", args.batch))
        print(f"engine, --batch {args.batch}:         {rates['batch']:10,.0f} events/s "
              f"({batches:,} messages)", flush=True)

    print(f"best: engine {rates['engine']:,.0f} events/s, bare aiomqtt "
          f"{rates['bare']:,.0f} messages/s")
    ratio = statistics.median(ratios)
    batch_ratio = rates["batch"] / rates["mosquitto_pub"]
    print(f"engine / bare aiomqtt:      {ratio:10.0%}   (median of {len(ratios)} pairs; "
          f"target >= 80%: "
          f"{'met' if ratio >= 0.8 else 'NOT met'})")
    print(f"engine --batch {args.batch} / mosquitto_pub: {batch_ratio:6.2f}x  (target >= 1: "
          f"{'met' if batch_ratio >= 1 else 'NOT met'})")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
