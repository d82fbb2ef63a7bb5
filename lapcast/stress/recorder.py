"""The events stream as the broker delivers it, recorded by ``mosquitto_sub`` (C).

At 20,000 events/s a Python subscriber would take a good share of a core on a small
machine, away from the processes under test; ``mosquitto_sub`` writes one line per
message (topic, arrival time to the nanosecond, the MQTT v5 user properties, the
payload) to a file for next to nothing, and the file is read afterwards. While the
run goes on, only the newest line is decoded, for the progress display.

Credentials and the CA file reach the Mosquitto clients through their own options
file (``$XDG_CONFIG_HOME/mosquitto_sub``, mode 600), never their command lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from lapcast.topology import Child, ProcessSpec
from simulator import contract
from simulator.connection import BrokerSettings
from simulator.contract import unwrap_envelope
from simulator.errors import LapcastError

__all__ = ["PUBLISHED_AT", "EventsRecorder", "EventsTrace", "client_options", "mosquitto_env"]

PUBLISHED_AT: Final = contract.PUBLISHED_AT
_FORMAT: Final = "%t %U %P %p"


class _Envelope(msgspec.Struct):
    epoch: int = 1
    seq: int = 0


class _EventsMessage(msgspec.Struct):
    """An event or a ``Batch``: msgspec skips every other field."""

    type: str = ""
    epoch: int = 1
    seq: int = 0
    events: list[_Envelope] = []


_json_events: Final = msgspec.json.Decoder(_EventsMessage)
_msgpack_events: Final = msgspec.msgpack.Decoder(_EventsMessage)


def seq_range(payload: bytes) -> tuple[int, int]:
    """``(first, last)`` seq of the events an events message carries."""
    decoder = _json_events if payload.lstrip()[:1] == b"{" else _msgpack_events
    decoded = decoder.decode(payload)
    if decoded.events:
        return decoded.events[0].seq, decoded.events[-1].seq
    return decoded.seq, decoded.seq


@dataclass
class EventsTrace:
    """Every events message: its seq range, publish stamp and arrival time."""

    first_seq: array[int] = field(default_factory=lambda: array("q"))
    last_seq: array[int] = field(default_factory=lambda: array("q"))
    published_ns: array[int] = field(default_factory=lambda: array("q"))
    received_ns: array[int] = field(default_factory=lambda: array("q"))
    # Deliveries per seq: 0 lost, 2+ delivered again (QoS 1 redelivery).
    seen: bytearray = field(default_factory=bytearray)
    events: int = 0  # events received, duplicates included
    max_seq: int = 0
    undecodable: int = 0

    def add(self, first: int, last: int, published: int, received: int) -> None:
        self.first_seq.append(first)
        self.last_seq.append(last)
        self.published_ns.append(published)
        self.received_ns.append(received)
        if len(self.seen) <= last:
            self.seen.extend(bytes(max(last + 1 - len(self.seen), len(self.seen))))
        seen = self.seen
        for seq in range(first, last + 1):
            if seen[seq] < 255:
                seen[seq] += 1
        self.events += last - first + 1
        self.max_seq = max(self.max_seq, last)

    @property
    def messages(self) -> int:
        return len(self.first_seq)


def parse_line(line: bytes) -> tuple[str, int, int | None, bytes]:
    """``topic arrival_s.ns user:props payload`` -> (topic, arrival ns, stamp, payload)."""
    topic, arrival, props, payload = line.rstrip(b"\n").split(b" ", 3)
    seconds, _, fraction = arrival.partition(b".")
    received = int(seconds) * 1_000_000_000 + int(fraction.ljust(9, b"0")[:9] or b"0")
    stamp = None
    for prop in props.split(b","):
        key, _, value = prop.partition(b":")
        if key == PUBLISHED_AT.encode() and value.isdigit():
            stamp = int(value)
    return topic.decode(), received, stamp, payload


def client_options(broker: BrokerSettings) -> list[str]:
    """Options of ``mosquitto_sub``/``mosquitto_pub`` for this broker, without secrets."""
    host, port = broker.current()
    return ["-h", host, "-p", str(port), "-V", "mqttv311" if broker.is_v311() else "mqttv5"]


def mosquitto_env(broker: BrokerSettings, folder: Path) -> dict[str, str]:
    """An environment whose Mosquitto clients read the secrets from an options file."""
    env = dict(os.environ)
    lines = []
    if broker.username:
        lines.append(f"-u {broker.username}")
    if broker.password:
        lines.append(f"-P {broker.password}")
    if broker.tls:
        lines.append(f"--cafile {broker.ca_file}" if broker.ca_file else "--tls-use-os-certs")
    if lines:
        folder.mkdir(parents=True, exist_ok=True)
        for client in ("mosquitto_sub", "mosquitto_pub"):
            path = folder / client
            path.touch(mode=0o600)
            path.write_text("\n".join(lines) + "\n")
        env["XDG_CONFIG_HOME"] = str(folder)
    return env


class EventsRecorder:
    """``mosquitto_sub`` on one events topic, into ``path``; ``trace()`` reads it back."""

    def __init__(self, broker: BrokerSettings, topic: str, path: Path, *,
                 env: dict[str, str], client_id: str) -> None:
        binary = shutil.which("mosquitto_sub")
        pub = shutil.which("mosquitto_pub")
        if binary is None or pub is None:
            raise LapcastError("mosquitto_sub/mosquitto_pub not found: install the "
                               "mosquitto-clients package")
        self.topic = topic
        self.ready_topic = f"{topic}/ready"
        self.path = path
        self._broker = broker
        self._env = env
        self._pub = pub
        self.child = Child(
            ProcessSpec(name="mosquitto_sub", env=env, argv=(
                binary, *client_options(broker), "-q", "1", "-t", topic, "-t",
                self.ready_topic, "-F", _FORMAT, "-i", client_id)),
            log=path, errors=path.with_suffix(".err"),
        )
        self._offset = 0
        self.cpu_s = 0.0
        self._tail = b""
        self.lines = 0
        self.max_seq = 0

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Publish on the ready topic until the recording shows it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.child.running:
                raise LapcastError(f"mosquitto_sub exited: {self.child.tail(300)}")
            subprocess.run([self._pub, *client_options(self._broker), "-q", "1",
                            "-t", self.ready_topic, "-m", "1"], env=self._env,
                           capture_output=True, timeout=30)
            time.sleep(0.1)
            if self.path.stat().st_size > 0:
                return
        raise LapcastError(f"mosquitto_sub did not subscribe within {timeout} s")

    def poll(self) -> tuple[int, int]:
        """(messages so far, newest seq) from what was written since the last poll."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        data = self._tail + chunk
        complete, _, self._tail = data.rpartition(b"\n")
        if complete:
            self.lines += complete.count(b"\n") + 1
            last = complete.rsplit(b"\n", 1)[-1]
            try:
                topic, _, _, payload = parse_line(last)
                if topic == self.topic:
                    self.max_seq = max(self.max_seq, seq_range(payload)[1])
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
                pass
        return self.lines, self.max_seq

    def stop(self) -> None:
        self.cpu_s = self.child.stop(timeout=5).cpu_s

    def trace(self) -> EventsTrace:
        """Everything recorded on the events topic, in arrival order."""
        trace = EventsTrace()
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    topic, received, stamp, payload = parse_line(line)
                    if topic != self.topic:
                        continue
                    payload, enveloped = unwrap_envelope(payload)  # MQTT 3.1.1
                    stamp = enveloped or stamp
                    first, last = seq_range(payload)
                except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
                    trace.undecodable += 1
                    continue
                if first < 1:
                    trace.undecodable += 1
                    continue
                trace.add(first, last, stamp or received, received)
        return trace
