"""What a stress run cost in CPU, per event, and what the bare work costs beside it.

**The processes.** ``CpuSampler`` reads ``/proc/PID/stat`` (``utime + stime``: every
thread of the process, those that have ended included) of each process of the run
every ``interval_s`` from a thread of the harness, stamped with ``time.time_ns()``,
the clock of the engine's publish stamps and of the recorder's arrival times. A
process's CPU between two moments is taken from the last sample at or before the
first and the first sample at or after the second (``cpu_between``): it never
undercounts, and it overcounts by at most what the process spends in two sampling
intervals. The kernel counts in clock ticks (10 ms with ``CLK_TCK`` 100), so a run
should last seconds for the figure to mean much.

The windows (``lapcast.stress.harness``): from the engine's publication of the first
event to the recorder's arrival of the last one for the engine, the broker, the
recorder and the harness (the probe, mostly); to the probe's arrival of the first
state reaching the last event for a consumer. Start-up (the engine scanning its
source, a consumer loading) and the stop are outside them.

**The bare work** (``bare_costs``): in the harness, after the run, over the
journal's lines: a ``msgspec.json.Decoder(Event)`` decode of each line, a JSON
encode of each decoded event (what the engine does besides, for the journal and the
wire), and each consumer's ``Folder.apply`` over the decoded events, measured in
this thread's CPU time (``time.thread_time_ns``). A process's CPU per event over the
bare decode plus its bare fold is the runtime's overhead, a ratio that holds better
than either figure on a busy machine.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from consumers.api import Consumer
from consumers.folding import Folder
from simulator.contract import Event

__all__ = ["BareCosts", "CpuSampler", "bare_costs", "process_cpu_s"]

_TICK_S: Final = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
# Lines decoded (then folded) at a time: the decoded events of a long run are not all
# held at once.
_CHUNK: Final = 8192


def process_cpu_s(pid: int) -> float | None:
    """``utime + stime`` of a live process, in seconds (Linux); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


@dataclass
class _Series:
    times_ns: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)


class CpuSampler:
    """Samples the CPU time of named processes from a thread, until ``stop()``."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._pids: dict[str, int] = {}
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lapcast-cpu-sampler",
                                        daemon=True)

    def watch(self, name: str, pid: int) -> None:
        """Sample ``pid`` as ``name`` from now on (sampled once at once)."""
        with self._lock:
            self._pids[name] = pid
            self._series.setdefault(name, _Series())
        self.sample()

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """A last sample, then the thread ends."""
        self.sample()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def sample(self) -> None:
        """One sample of every process watched (a process that has ended is skipped)."""
        with self._lock:
            for name, pid in self._pids.items():
                now = time.time_ns()
                cpu = process_cpu_s(pid)
                if cpu is not None:
                    series = self._series[name]
                    series.times_ns.append(now)
                    series.cpu_s.append(cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def cpu_between(self, name: str, start_ns: int, end_ns: int) -> float | None:
        """CPU seconds of ``name`` from ``start_ns`` to ``end_ns`` (wall clock), counted
        from the samples around them; None without a sample on either side."""
        with self._lock:
            series = self._series.get(name)
            if series is None:
                return None
            times, cpu = series.times_ns, series.cpu_s
            before = bisect_right(times, start_ns) - 1
            after = bisect_left(times, end_ns)
            if before < 0 or after >= len(times) or end_ns < start_ns:
                return None
            return cpu[after] - cpu[before]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)


@dataclass(frozen=True, kw_only=True)
class BareCosts:
    """Microseconds of this process's CPU per event, over the same events."""

    events: int
    decode_us: float  # msgspec JSON decode of a journal line into its Event
    encode_us: float  # JSON encode of the decoded event
    fold_us: dict[str, float]  # per consumer: Folder.apply alone (the decode taken out)


def bare_costs(lines: Iterable[bytes], consumers: Sequence[Consumer[Any]]
               ) -> tuple[BareCosts, list[Folder[Any]]]:
    """Decode, encode and fold ``lines`` (JSON events), timing each part apart; the
    figures and the folders (their states are the offline fold of the lines)."""
    decode = msgspec.json.Decoder(Event).decode
    encode = msgspec.json.Encoder().encode
    folders = [Folder(consumer) for consumer in consumers]
    fold_ns = [0] * len(folders)
    decode_ns = encode_ns = count = 0
    clock = time.thread_time_ns
    chunk: list[bytes] = []
    iterator = iter(lines)
    while True:
        chunk.clear()
        for line in iterator:
            chunk.append(line)
            if len(chunk) >= _CHUNK:
                break
        if not chunk:
            break
        count += len(chunk)
        started = clock()
        events = [decode(line) for line in chunk]
        decode_ns += clock() - started
        started = clock()
        for event in events:
            encode(event)
        encode_ns += clock() - started
        for i, folder in enumerate(folders):
            apply = folder.apply
            started = clock()
            for event in events:
                apply(event)
            fold_ns[i] += clock() - started

    def per_event(ns: int) -> float:
        return round(ns / count / 1000, 3) if count else 0.0

    return BareCosts(events=count, decode_us=per_event(decode_ns),
                     encode_us=per_event(encode_ns),
                     fold_us={f.consumer.name: per_event(ns)
                              for f, ns in zip(folders, fold_ns, strict=True)}), folders
