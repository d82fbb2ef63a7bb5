"""One stress run: a synthetic field through the engine, the broker and the consumers.

The steps, each a real process, as a user would run them:

1. generate the field (``simulator.synth``) into ``field.jsonl`` in the run's folder;
2. start a private Mosquitto (``broker-config/dev.conf``) unless a broker is given;
   the broker, the consumers and the engine are a ``Topology`` started in that order
   by ``lapcast.topology.Supervisor``, which reaps each with its CPU and peak memory;
3. start the probe (``probe.Probe``), then one ``lapcast consume NAME`` per consumer,
   and wait until each has reported its health;
4. start ``lapcast replay field.jsonl`` at the speed that gives the target rate (the
   field's events over its session time) or at max;
5. until every consumer's state reaches the last event: report progress;
6. stop the consumers (SIGTERM: their last state and health), then the engine;
7. ``mosquitto_pub -l -q 1`` sends events of the same field, one per message, to the
   same broker: the baseline the engine's batched rate is held against;
8. check: the journal holds exactly the generated log; each consumer applied every
   event once (its health) and its last state equals the offline fold of the journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import structlog

from consumers.registry import ALL_BUILTIN, load_consumer
from lapcast.stress.cost import BareCosts, CpuSampler, bare_costs
from lapcast.stress.probe import Probe
from lapcast.stress.recorder import (
    EventsRecorder,
    EventsTrace,
    client_options,
    mosquitto_env,
)
from lapcast.stress.report import (
    ConsumerFigures,
    EngineFigures,
    Latency,
    PubFigures,
    StressReport,
    event_latencies,
    max_behind,
    peak_rate,
    per_event_us,
    rate,
)
from lapcast.topology import (
    BrokerSpec,
    Child,
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoSpec,
    Supervisor,
    Topology,
    vm_hwm_mb,
)
from simulator import journal, topics
from simulator.connection import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    BrokerSettings,
    parse_broker_url,
)
from simulator.contract import SessionStarted, decode_event, decode_state, encode
from simulator.errors import ContractError, LapcastError
from simulator.mqtt.settings import ENV_MQTT_VERSION
from simulator.replay.engine import check_linger_ms
from simulator.synth import SynthSpec, events

__all__ = ["Progress", "StressSettings", "run_stress"]

log = structlog.get_logger()

# A 10,000-car SessionStarted is ~1.5 MB; the consumers' default refuses over 1 MiB.
MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
_TICK_S: Final = 0.25
# mosquitto_pub's in-flight window: its best (the engine's default window), whatever
# window the engine is given.
PUB_WINDOW: Final = 64


@dataclass(frozen=True, kw_only=True)
class StressSettings:
    spec: SynthSpec
    rate: float | None = 20_000.0  # events/s the engine aims at; None: max
    batch: int = 64
    linger_ms: float = 3.0  # the engine's; see lapcast stress --help
    publish_ms: int = 20  # the consumers' coalescing interval
    window: int = 64  # the engine's
    broker: BrokerSettings | None = None  # None: a private Mosquitto
    consumers: tuple[str, ...] = ALL_BUILTIN
    workdir: Path | None = None  # None: a temporary folder, removed unless keep
    keep: bool = False
    timeout_s: float = 600.0
    pub_messages: int = 20_000  # mosquitto_pub's comparison; 0 skips it

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise LapcastError(f"--rate {self.rate}: above 0, or max")
        for name in ("batch", "publish_ms", "window"):
            if getattr(self, name) < 1:
                raise LapcastError(f"--{name.replace('_', '-')} must be at least 1")
        check_linger_ms(self.linger_ms)  # before the field is generated


@dataclass(kw_only=True)
class Progress:
    """A snapshot for the live display."""

    phase: str
    elapsed_s: float
    total: int
    received: int
    rate_1s: float
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


def run_stress(settings: StressSettings, *,
               on_progress: ProgressCallback | None = None) -> StressReport:
    """Run the whole test; raises ``LapcastError`` only when it cannot even start."""
    workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="lapcast-stress-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(settings, workdir, on_progress or (lambda _: None))
    try:
        report = run.execute()
    finally:
        run.cleanup()
        if settings.workdir is None and not settings.keep and not run.failed:
            shutil.rmtree(workdir, ignore_errors=True)
    # Where the field, journal, logs and recordings are, if they were kept.
    report.workdir = str(workdir) if workdir.exists() else None
    return report


class _Run:
    def __init__(self, settings: StressSettings, workdir: Path,
                 on_progress: ProgressCallback) -> None:
        self.s = settings
        self.dir = workdir
        self.on_progress = on_progress
        self.session_id = f"stress-{uuid.uuid4().hex[:8]}"
        self.field_path = workdir / "field.jsonl"
        self.journal_path = workdir / "journal.jsonl"
        self.supervisor: Supervisor | None = None
        self.probe: Probe | None = None
        self.recorder: EventsRecorder | None = None
        self.sampler = CpuSampler()
        self.events = EventsTrace()  # read from the recording once the run is over
        self._rates: list[tuple[float, int]] = []  # (monotonic, newest seq) for progress
        self.errors: list[str] = []
        self.total = 0  # events in the field, once generated
        self.failed = False
        self.started = time.monotonic()

    # --- the steps ---------------------------------------------------------------------

    def execute(self) -> StressReport:
        s = self.s
        self._fresh()
        total, session_ms, generate_s = self._generate()
        self.total = total
        speed = None if s.rate is None else s.rate * (session_ms / 1000) / total
        broker = self._broker(speed)
        client_env = mosquitto_env(broker, self.dir / "mosquitto-clients")
        pub_topic = topics.events(f"{self.session_id}-mosquitto-pub")
        self.recorder = EventsRecorder(broker, topics.events(self.session_id),
                                       self.dir / "events.rec", env=client_env,
                                       client_id=f"lapcast-stress-rec-{self.session_id}")
        self.recorder.wait_subscribed()
        self._watch_cpu()
        self.probe = Probe(host=broker.host, port=broker.port, session_id=self.session_id,
                           consumers=list(s.consumers), broker=broker)
        self.probe.start()
        self._start_consumers()
        self._start_engine()
        cpu_before = _own_cpu_s()
        timed_out = self._follow(total)
        probe_cpu = _own_cpu_s() - cpu_before
        self.sampler.stop()  # its last sample: after the last event and state
        assert self.supervisor is not None and self.engine is not None
        # The consumers first (their last state and health), then the engine.
        usages = self.supervisor.stop_children(s.consumers, grace_s=10.0)
        engine_usage = self.supervisor.stop_children(["engine"], grace_s=10.0)["engine"]
        if engine_usage.returncode not in (0, -15, 130):
            self.errors.append(f"engine exited with {engine_usage.returncode}: "
                               f"{self.engine.tail(500)}")
        time.sleep(0.3)  # the consumers' last health and state reach the probe
        self.recorder.stop()
        self.events = self.recorder.trace()
        pub = (self._mosquitto_pub(broker, pub_topic, total, client_env)
               if s.pub_messages else None)
        broker_peak = max((peak for node in self.supervisor.broker.children()
                           if (peak := vm_hwm_mb(node.pid)) is not None), default=None)
        self._on_phase("checking", total)
        journal_events, journal_ok = self._check_journal()
        bare, folders = self._bare(journal_events)
        figures = self._consumer_figures(total, journal_events, usages, folders, bare)
        engine_figures = self._engine_figures(total)
        engine_figures.peak_rss_mb = engine_usage.peak_rss_mb
        engine_figures.cpu_s = round(engine_usage.cpu_s, 2)
        cpu_others = self._cpu_figures(engine_figures, figures, bare)
        all_latencies: list[int] = []
        for name in s.consumers:
            all_latencies.extend(event_latencies(self.events, self.probe.consumers[name],
                                                 total))
        report = StressReport(
            spec=s.spec.text(), session_id=self.session_id, events=total,
            session_ms=session_ms, generate_s=round(generate_s, 2), rate_target=s.rate,
            speed=None if speed is None else round(speed, 3), batch=s.batch,
            window=s.window, linger_ms=s.linger_ms,
            publish_ms=s.publish_ms, broker=broker.describe_all(), engine=engine_figures,
            consumers=figures, latency=Latency.of(all_latencies),
            journal_events=journal_events, journal_matches_log=journal_ok,
            broker_peak_rss_mb=None if broker_peak is None else round(broker_peak, 1),
            bare=bare, cpu_others_us_per_event=cpu_others,
            mosquitto_pub=pub, probe_cpu_s=round(probe_cpu, 2),
            recorder_cpu_s=round(self.recorder.cpu_s, 2),
            wall_s=round(time.monotonic() - self.started, 1),
            timed_out=timed_out, errors=self.errors,
        )
        self.failed = not report.ok
        return report

    def _fresh(self) -> None:
        """A folder used before holds another session's journal and checkpoints: clear
        what a run writes (and nothing else)."""
        for path in self.dir.glob("*"):
            if path.name in ("state", "broker", "mosquitto-clients") and path.is_dir():
                shutil.rmtree(path)
            elif path.suffix in (".jsonl", ".log", ".rec", ".err") and path.is_file():
                path.unlink()

    def _generate(self) -> tuple[int, int, float]:
        self._on_phase("generating", 0)
        started = time.perf_counter()
        count = end = 0
        with open(self.field_path, "wb", buffering=1 << 20) as f:
            for event in events(self.s.spec, session_id=self.session_id):
                f.write(encode(event))
                f.write(b"\n")
                count += 1
                end = event.session_time_ms
        return count, end, time.perf_counter() - started

    def _broker(self, speed: float | None) -> BrokerSettings:
        """The supervisor of the run, its broker started; how to reach the broker."""
        s = self.s
        spec: BrokerSpec = ExternalBroker(_url(s.broker)) if s.broker else MosquittoSpec()
        env = _child_env(s.broker) if s.broker else dict(os.environ)
        self.supervisor = Supervisor(self._topology(spec, env, speed), self.dir, grace_s=5.0)
        if s.broker is not None:
            self.supervisor.start_broker()
            return s.broker
        self._on_phase("starting mosquitto", 0)
        return parse_broker_url(self.supervisor.start_broker())

    def _topology(self, broker: BrokerSpec, env: dict[str, str],
                  speed: float | None) -> Topology:
        s = self.s
        return Topology(
            broker=broker,
            consumers=tuple(
                ConsumerSpec(consumer=name, session_id=self.session_id,
                             state_dir=self.dir / "state", env=env,
                             extra=("--publish-ms", str(s.publish_ms),
                                    "--max-payload-bytes", str(MAX_PAYLOAD_BYTES)))
                for name in s.consumers
            ),
            engine=EngineSpec(
                source=str(self.field_path), journal=self.journal_path, env=env,
                speed="max" if speed is None else f"{speed:.6g}",
                extra=("--batch", str(s.batch), "--window", str(s.window),
                       "--linger-ms", f"{s.linger_ms:g}"),
            ),
        )

    @property
    def consumers(self) -> dict[str, Child]:
        children = self.supervisor.children if self.supervisor else {}
        return {name: children[name] for name in self.s.consumers if name in children}

    @property
    def engine(self) -> Child | None:
        return self.supervisor.children.get("engine") if self.supervisor else None

    def _start_consumers(self) -> None:
        assert self.supervisor is not None and self.probe is not None
        self._on_phase("starting consumers", 0)
        self.supervisor.start_consumers()
        for name, child in self.consumers.items():
            self.sampler.watch(name, child.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, child in self.consumers.items():
                if not child.running:
                    raise LapcastError(f"consumer {name} exited at start: {child.tail()}")
            if all(trace.health for trace in self.probe.consumers.values()):
                return
            time.sleep(0.05)
        raise LapcastError("consumers did not report their health within 60 s: "
                           + "; ".join(f"{n}: {c.tail(300)}" for n, c in self.consumers.items()))

    def _start_engine(self) -> None:
        assert self.supervisor is not None
        self._on_phase("starting the engine", 0)
        self.supervisor.start_engine()
        assert self.engine is not None
        self.sampler.watch("engine", self.engine.pid)

    def _follow(self, total: int) -> bool:
        """Until every consumer has folded the last event; True if it timed out."""
        probe, engine, recorder = self.probe, self.engine, self.recorder
        assert probe is not None and engine is not None and recorder is not None
        deadline = time.monotonic() + self.s.timeout_s
        while True:
            time.sleep(_TICK_S)
            self._on_phase("running", total)
            states = [trace.seq for trace in probe.consumers.values()]
            if all(seq >= total for seq in states):
                return False
            if not engine.running and recorder.poll()[1] < total:
                self.errors.append(f"engine exited early: {engine.tail(500)}")
                return False
            for name, child in self.consumers.items():
                if not child.running:
                    self.errors.append(f"consumer {name} exited: {child.tail(500)}")
                    return False
            if time.monotonic() > deadline:
                self.errors.append(f"not done within --timeout {self.s.timeout_s:g} s")
                return True

    def _mosquitto_pub(self, broker: BrokerSettings, topic: str, total: int,
                       env: dict[str, str]) -> PubFigures | None:
        """The same field's events, one per message, by Mosquitto's own C client, counted
        on arrival by ``mosquitto_sub`` (C too, so the count is not the probe's limit)."""
        pub_bin, sub_bin = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
        if pub_bin is None or sub_bin is None:
            self.errors.append("mosquitto_pub/mosquitto_sub not found: no baseline measured")
            return None
        self._on_phase("mosquitto_pub", total)
        lines_path = self.dir / "mosquitto_pub.jsonl"
        count = 0
        with open(self.field_path, "rb") as src, open(lines_path, "wb") as dst:
            next(src, None)  # SessionStarted: large with a big field, and not a lap
            for line in src:
                if count >= self.s.pub_messages:
                    break
                dst.write(line)
                count += 1
        if count == 0:
            return None
        where = [*client_options(broker), "-q", "1"]
        ready = f"{topic}/ready"
        sub = subprocess.Popen(
            [sub_bin, *where, "-t", topic, "-t", ready, "-F", "%t %U",
             "-i", f"lapcast-stress-sub-{self.session_id}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        assert sub.stdout is not None
        reader = threading.Thread(target=_pump_lines, args=(sub.stdout, lines), daemon=True)
        reader.start()
        arrivals: list[float] = []
        try:
            # Subscribed once a message on the ready topic comes back (sent until it does).
            for _ in range(100):
                subprocess.run([pub_bin, *where, "-t", ready, "-m", "1"], check=True,
                               timeout=30, capture_output=True, env=env)
                try:
                    if lines.get(timeout=0.2).startswith(ready.encode()):
                        break
                except queue.Empty:
                    continue
            else:
                self.errors.append("mosquitto_sub never subscribed: no baseline measured")
                return None
            argv = [pub_bin, *where, "-M", str(PUB_WINDOW), "-t", topic, "-l",
                    "-i", f"lapcast-stress-pub-{self.session_id}"]
            started = time.perf_counter()
            with open(lines_path, "rb") as stdin:
                done = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=300,
                                      env=env)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                self.errors.append(f"mosquitto_pub exited with {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace')[-300:]}")
                return None
            deadline = time.monotonic() + 30
            while len(arrivals) < count and time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                name, _, stamp = line.decode().strip().rpartition(" ")
                if name == topic:
                    arrivals.append(float(stamp))
        finally:
            sub.kill()
            sub.wait()
        if len(arrivals) < 2:
            self.errors.append(f"mosquitto_sub heard {len(arrivals)} of {count} messages")
            return None
        seconds = arrivals[-1] - arrivals[0]
        return PubFigures(messages=len(arrivals), seconds=round(seconds, 3),
                          messages_per_s=round(len(arrivals) / seconds, 1) if seconds else 0.0,
                          wall_messages_per_s=round(count / wall, 1))

    # --- checks and figures ----------------------------------------------------------------

    def _check_journal(self) -> tuple[int, bool]:
        """Events in the journal (epoch 1), and whether they are the generated log, byte
        for byte."""
        try:
            index, _ = journal.scan(self.journal_path)
        except (OSError, LapcastError) as exc:
            self.errors.append(f"journal {self.journal_path}: {exc}")
            return 0, False
        if list(index.epochs) != [1]:
            self.errors.append(f"journal epochs {list(index.epochs)}, expected [1]")
        return index.last_seq(1), _same_log(self.journal_path, self.field_path)

    def _bare(self, journal_events: int) -> tuple[BareCosts | None, dict[str, Any]]:
        """The bare decode, encode and folds of the journal's events, timed; the folders
        (the offline fold the consumers' states are checked against), by name."""
        if not journal_events:
            return None, {}
        self._on_phase("bare decode and folds", self.total)
        with open(self.journal_path, "rb") as f:
            bare, folders = bare_costs(f, [load_consumer(n) for n in self.s.consumers])
        return bare, {folder.consumer.name: folder for folder in folders}

    def _consumer_figures(self, total: int, journal_events: int, usages: dict[str, Any],
                          folders: dict[str, Any], bare: BareCosts | None
                          ) -> list[ConsumerFigures]:
        probe, trace_events = self.probe, self.events
        assert probe is not None
        folded = {name: folder.view() for name, folder in folders.items()}
        last_published = max(trace_events.published_ns, default=0)
        first_pub = trace_events.published_ns[0] if trace_events.messages else None
        out = []
        for name in self.s.consumers:
            trace = probe.consumers[name]
            health = trace.health
            applied = int(health.get("events_applied") or 0)
            matches = False
            if trace.last_state and name in folded:
                expected = msgspec.json.decode(msgspec.json.encode(
                    msgspec.to_builtins(folded[name])))
                matches = decode_state(trace.last_state).state == expected
            caught_up = next((recv for seq, recv, _ in trace.states if seq >= total), None)
            usage = usages.get(name)
            cpu = (None if caught_up is None or first_pub is None
                   else self.sampler.cpu_between(name, first_pub, caught_up))
            fold_us = None if bare is None else bare.fold_us.get(name)
            out.append(ConsumerFigures(
                name=name, applied=applied, last_seq=int(health.get("last_seq") or 0),
                lost=max(0, journal_events - applied),
                double_counted=max(0, applied - journal_events),
                state_matches_journal_fold=matches,
                duplicates_ignored=int(health.get("duplicates") or 0),
                max_behind_events=max_behind(trace_events, trace),
                caught_up_after_ms=(None if caught_up is None or not last_published
                                    else round((caught_up - last_published) / 1e6, 1)),
                events_per_s=(None if caught_up is None or first_pub is None
                              else rate(applied, first_pub, caught_up)),
                state_messages=len(trace.states),
                latency=Latency.of(event_latencies(trace_events, trace, total)),
                peak_rss_mb=None if usage is None else round(usage.peak_rss_mb, 1),
                cpu_s=None if usage is None else round(usage.cpu_s, 2),
                cpu_window_s=(None if caught_up is None or first_pub is None
                              else round((caught_up - first_pub) / 1e9, 3)),
                cpu_us_per_event=per_event_us(cpu, applied),
                bare_fold_us_per_event=fold_us,
                bare_us_per_event=(None if bare is None or fold_us is None
                                   else round(bare.decode_us + fold_us, 3)),
                dead_letters=int(health.get("dead_letters") or 0),
            ))
        return out

    def _cpu_figures(self, engine: EngineFigures, consumers: list[ConsumerFigures],
                     bare: BareCosts | None) -> dict[str, float | None]:
        """The engine's CPU per event (into ``engine``) and that of the other processes
        of the run over the engine's window: the broker, the recorder and the harness."""
        trace = self.events
        if not trace.messages:
            return {}
        first, last = trace.published_ns[0], max(trace.received_ns)
        engine.cpu_window_s = round((last - first) / 1e9, 3)
        engine.cpu_us_per_event = per_event_us(
            self.sampler.cpu_between("engine", first, last), engine.events)
        if bare is not None:
            engine.bare_us_per_event = round(bare.decode_us + bare.encode_us, 3)
        return {name: per_event_us(self.sampler.cpu_between(name, first, last), engine.events)
                for name in self.sampler.names() if name != "engine"
                and name not in self.s.consumers}

    def _watch_cpu(self) -> None:
        """The broker's processes, the recorder and this process (the probe, mostly)
        from now on; the consumers and the engine as they start."""
        assert self.supervisor is not None and self.recorder is not None
        for node in self.supervisor.broker.children():
            self.sampler.watch(node.name, node.pid)
        self.sampler.watch("recorder", self.recorder.child.pid)
        self.sampler.watch("harness", os.getpid())
        self.sampler.start()

    def _engine_figures(self, total: int) -> EngineFigures:
        trace = self.events
        seen = trace.seen[1:total + 1]
        distinct = total - seen.count(0) if seen else 0
        redelivered = sum(n - 1 for n in seen if n > 1)
        first = trace.received_ns[0] if trace.messages else 0
        last = trace.received_ns[-1] if trace.messages else 0
        return EngineFigures(
            events=distinct, messages=trace.messages, seconds=round((last - first) / 1e9, 3),
            events_per_s=rate(distinct, first, last), peak_events_per_s_1s=peak_rate(trace),
            lost_at_probe=total - distinct, redelivered_at_probe=redelivered,
        )

    # --- progress and cleanup ------------------------------------------------------------------

    def _on_phase(self, phase: str, total: int) -> None:
        probe, recorder = self.probe, self.recorder
        consumers: dict[str, dict[str, Any]] = {}
        received, rate_1s = 0, 0.0
        if recorder is not None and phase == "running":
            _, received = recorder.poll()
            now = time.monotonic()
            self._rates.append((now, received))
            while len(self._rates) > 2 and now - self._rates[0][0] > 1.0:
                self._rates.pop(0)
            then, seq_then = self._rates[0]
            rate_1s = (received - seq_then) / (now - then) if now > then else 0.0
        if probe is not None:
            with probe.lock:
                for name, ctrace in probe.consumers.items():
                    last = ctrace.states[-1] if ctrace.states else None
                    child = self.consumers.get(name)
                    consumers[name] = {
                        "seq": ctrace.seq,
                        "state": ctrace.health.get("state", "?"),
                        "lag_events": max(0, received - ctrace.seq),
                        "last_latency_ms": (None if last is None or not last[2]
                                            else round((last[1] - last[2]) / 1e6, 1)),
                        "rss_mb": None if child is None else child.peak_so_far_mb(),
                    }
        self.on_progress(Progress(phase=phase, elapsed_s=time.monotonic() - self.started,
                                  total=total or self.total, received=received,
                                  rate_1s=rate_1s,
                                  consumers=consumers))

    def cleanup(self) -> None:
        """Whatever still runs: the lapcast processes, the recorder and the probe, the
        broker last."""
        if self.supervisor is not None:
            with contextlib.suppress(Exception):
                self.supervisor.stop_children()
        with contextlib.suppress(Exception):
            self.sampler.stop()
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                self.recorder.stop()
        if self.probe is not None:
            with contextlib.suppress(Exception):
                self.probe.stop()
        if self.supervisor is not None:
            self.supervisor.stop()


def _url(broker: BrokerSettings) -> str:
    """Every endpoint, without credentials (those go by environment)."""
    scheme = "mqtts" if broker.tls else "mqtt"
    return ",".join(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
                    for host, port in broker.endpoints)


def _child_env(broker: BrokerSettings) -> dict[str, str]:
    """Credentials go to the children by environment, never on their command lines."""
    env = dict(os.environ)
    if broker.username:
        env[ENV_USERNAME] = broker.username
    if broker.password:
        env[ENV_PASSWORD] = broker.password
    if broker.ca_file:
        env[ENV_CA_FILE] = broker.ca_file
    env[ENV_MQTT_VERSION] = broker.mqtt_version
    return env


def _pump_lines(stream: Any, into: queue.Queue[bytes]) -> None:
    for line in stream:
        into.put(line)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _digest(path: Path, *, skip_first_line: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if skip_first_line:
            f.readline()
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _first_event(path: Path) -> Any:
    with open(path, "rb") as f:
        event = decode_event(f.readline())
    # The engine stamps the log's SessionStarted with its log id (simulator.logid).
    return msgspec.structs.replace(event, log_id="") if isinstance(
        event, SessionStarted) else event


def _same_log(journal_path: Path, field_path: Path) -> bool:
    """The journal is the generated log byte for byte, but for the log id on its first
    event."""
    try:
        if _first_event(journal_path) != _first_event(field_path):
            return False
    except ContractError:
        return False
    return (_digest(journal_path, skip_first_line=True)
            == _digest(field_path, skip_first_line=True))
