"""A NATS cluster speaking MQTT 3.1.1: three ``nats-server`` nodes on free loopback ports.

``NatsClusterSpec`` is the data, ``NatsCluster`` the running cluster (the tests'
``nats_cluster`` fixture; a ``Topology``'s broker like ``MosquittoSpec``, its ``url``
the list of every node). Each node gets a config
written from ``broker-config/nats-cluster.conf``: its ``server_name``, routes to every
other node, a JetStream folder of its own, an ``mqtt`` listener and an ``http``
monitoring port. ``start()`` returns once every node's ``/healthz?js-enabled-only=true``
answers and each one has acknowledged a QoS 1 publish (about 2-5 s from cold: the first
MQTT client makes NATS create its JetStream streams).

A node can be killed and started again on its ports, with its store (``kill(i)``,
``start_node(i)``): JetStream keeps MQTT sessions and retained messages replicated on
three nodes, so one node down loses nothing; two down at once loses the quorum.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lapcast.topology.mosquitto import CONFIG_DIR, free_port
from lapcast.topology.process import Child, stop_all
from lapcast.topology.spec import ProcessSpec
from simulator.errors import LapcastError

__all__ = [
    "NatsCluster",
    "NatsClusterSpec",
    "NatsNode",
    "authorization_from_acl",
    "find_nats_server",
    "mqtt_to_subject",
    "qos1_publish",
]

INSTALL_HINT = (
    "nats-server not found: install it with `sudo apt-get install -y nats-server` "
    "(Debian/Ubuntu), or pass --broker URL,URL,... of a cluster of your own"
)


def find_nats_server() -> str:
    for candidate in (shutil.which("nats-server"), "/usr/sbin/nats-server",
                      "/usr/local/bin/nats-server"):
        if candidate and Path(candidate).exists():
            return candidate
    raise LapcastError(INSTALL_HINT)


@dataclass(frozen=True, kw_only=True)
class NatsClusterSpec:
    """``nodes`` NATS servers from ``broker-config/CONFIG``, clustered, on free ports."""

    nodes: int = 3
    config: str = "nats-cluster.conf"
    # Text added at the template's @EXTRA@ (authorization, accounts: the secure profile).
    extra: str = ""
    # Other text of the template rewritten (paths of secrets).
    replacements: Mapping[str, str] = field(default_factory=dict)
    tether: bool = True

    def create(self, workdir: Path) -> NatsCluster:
        return NatsCluster(spec=self, workdir=workdir)


@dataclass
class NatsNode:
    """One server of the cluster: its name, ports, folder and process."""

    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    http_port: int
    workdir: Path
    child: Child | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "nats.log"

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def healthz(self, *, js_enabled_only: bool = True) -> bool:
        """Whether the node's ``/healthz`` answers 200 (only JetStream enabled, or all
        its streams and consumers current)."""
        query = "?js-enabled-only=true" if js_enabled_only else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz{query}",
                                        timeout=1.0) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False


class NatsCluster:
    """A running NATS cluster: ``url`` lists every node (clients rotate through them)."""

    def __init__(self, *, spec: NatsClusterSpec, workdir: Path) -> None:
        if spec.nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.spec = spec
        self.workdir = workdir
        self.nodes = [
            NatsNode(name=f"n{i}", client_port=free_port(), cluster_port=free_port(),
                     mqtt_port=free_port(), http_port=free_port(), workdir=workdir / f"n{i}")
            for i in range(spec.nodes)
        ]
        self._rendered = False

    # --- the Broker interface ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: what ``--broker`` takes for a cluster."""
        return ",".join(self.urls)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes)

    def url_from(self, index: int) -> str:
        """The list starting at node ``index``: a client connects there first."""
        order = self.urls[index:] + self.urls[:index]
        return ",".join(order)

    def children(self) -> Sequence[Child]:
        return tuple(node.child for node in self.nodes if node.child is not None)

    def log_text(self) -> str:
        parts = []
        for node in self.nodes:
            text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
            parts.append(f"--- {node.name} ---\n{text[-4000:]}")
        return "\n".join(parts)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Every node, then wait until the cluster serves MQTT on each (``ready``)."""
        self._render()
        for index in range(len(self.nodes)):
            self._spawn(index)
        self.ready(timeout)
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM to every node's process (by PID), SIGKILL after ``timeout``."""
        stop_all([node.child for node in self.nodes if node.child is not None], timeout)
        for node in self.nodes:
            node.child = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one node ---------------------------------------------------------------------------

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Stop node ``index`` with ``sig`` (SIGKILL: no goodbye to its clients or peers)."""
        node = self.nodes[index]
        if node.child is not None:
            node.child.stop(5.0, sig=sig)
            node.child = None

    def start_node(self, index: int, timeout: float = 30.0) -> float:
        """Start node ``index`` again (same ports, same store); seconds until it serves.

        It serves once its ``/healthz?js-enabled-only=true`` answers, it acknowledges a
        QoS 1 publish over MQTT (8-10 s after a SIGKILL, measured: NATS refuses MQTT
        connections until the node has rejoined the JetStream groups), and every MQTT
        stream has a leader that sees all its replicas current: only then may another
        node go down. (The full ``/healthz`` is no use here: NATS 2.9.10 keeps calling
        idle retained-message consumers "not current" long after a restart.)
        """
        started = time.monotonic()
        self._spawn(index)
        deadline = started + timeout
        self.wait_healthy(index, timeout)
        self.publish_until(self.nodes[index], deadline)
        self.wait_streams_current(max(deadline - time.monotonic(), 0.1))
        return time.monotonic() - started

    def stream_replicas(self) -> dict[str, tuple[str, dict[str, bool]]]:
        """Each JetStream stream with a leader: its leader and, per replica, ``current``."""
        seen: dict[str, tuple[str, dict[str, bool]]] = {}
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{node.http_port}/jsz?accounts=true&streams=true",
                        timeout=1.0) as answer:
                    data = json.loads(answer.read())
            except (OSError, ValueError):
                continue
            for account in data.get("account_details") or ():
                for stream in account.get("stream_detail") or ():
                    cluster = stream.get("cluster") or {}
                    if cluster.get("leader") == node.name:
                        seen[stream["name"]] = (node.name, {
                            replica["name"]: bool(replica.get("current"))
                            for replica in cluster.get("replicas") or ()})
        return seen

    def wait_streams_current(self, timeout: float = 30.0) -> None:
        """Every MQTT stream has a leader on a running node and all its replicas current."""
        deadline = time.monotonic() + timeout
        running = {node.name for node in self.nodes if node.running}
        while True:
            streams = self.stream_replicas()
            mqtt = {name: v for name, v in streams.items() if name.startswith("$MQTT_")}
            if len(mqtt) >= 3 and all(
                    leader in running and all(replicas.get(n, False)
                                              for n in running - {leader})
                    for leader, replicas in mqtt.values()):
                return
            if time.monotonic() > deadline:
                raise LapcastError(f"NATS streams not current within {timeout} s: {mqtt}")
            time.sleep(0.1)

    def wait_healthy(self, index: int, timeout: float = 30.0, *,
                     js_enabled_only: bool = True) -> float:
        """Seconds until node ``index``'s ``/healthz`` answered 200."""
        node = self.nodes[index]
        started = time.monotonic()
        deadline = started + timeout
        while not node.healthz(js_enabled_only=js_enabled_only):
            self._check_alive(node)
            if time.monotonic() > deadline:
                raise LapcastError(f"NATS node {node.name} not healthy within {timeout} s: "
                                   f"{self._tail(node)}")
            time.sleep(0.05)
        return time.monotonic() - started

    def ready(self, timeout: float = 30.0) -> None:
        """Every node healthy, and every node acknowledges a QoS 1 publish over MQTT."""
        deadline = time.monotonic() + timeout
        for index in range(len(self.nodes)):
            self.wait_healthy(index, max(deadline - time.monotonic(), 0.1))
        for node in self.nodes:
            self.publish_until(node, deadline)

    def publish_until(self, node: NatsNode, deadline: float) -> None:
        """A QoS 1 publish to ``node`` acknowledged, retried until ``deadline`` (monotonic)."""
        while True:
            self._check_alive(node)
            try:
                secure = "authorization" in self.spec.extra
                qos1_publish(node.mqtt_port, client_id=f"lapcast-ready-{node.name}",
                             topic=f"lapcast/ready/{node.name}", timeout=5.0,
                             username=READY_USER if secure else None,
                             password=READY_PASSWORD if secure else None)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise LapcastError(f"NATS node {node.name} did not acknowledge a QoS 1 "
                                       f"publish in time ({exc}): {self._tail(node)}") from exc
                time.sleep(0.1)

    # --- internals --------------------------------------------------------------------------

    def _render(self) -> None:
        if self._rendered:
            return
        template = (CONFIG_DIR / self.spec.config).read_text()
        for old, new in self.spec.replacements.items():
            template = template.replace(old, new)
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            routes = ",\n".join(f"    nats-route://127.0.0.1:{other.cluster_port}"
                                for other in self.nodes if other is not node)
            text = template
            for key, value in {
                "SERVER_NAME": node.name, "CLIENT_PORT": node.client_port,
                "HTTP_PORT": node.http_port, "STORE_DIR": node.workdir / "jetstream",
                "CLUSTER_PORT": node.cluster_port, "ROUTES": routes,
                "MQTT_PORT": node.mqtt_port, "EXTRA": self.spec.extra,
            }.items():
                text = text.replace(f"@{key}@", str(value))
            node.config_path.write_text(text)
        self._rendered = True

    def _spawn(self, index: int) -> None:
        node = self.nodes[index]
        if node.running:
            raise LapcastError(f"NATS node {node.name} is already running")
        spec = ProcessSpec(name=f"nats-{node.name}",
                           argv=(find_nats_server(), "-c", str(node.config_path)),
                           tether=self.spec.tether)
        node.child = Child(spec, log=node.log_path)

    def _check_alive(self, node: NatsNode) -> None:
        if node.child is None or not node.child.running:
            code = node.child.returncode if node.child is not None else None
            raise LapcastError(f"NATS node {node.name} is not running (exit {code}): "
                               f"{self._tail(node)}")

    @staticmethod
    def _tail(node: NatsNode) -> str:
        if not node.log_path.exists():
            return "no log"
        lines = node.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(lines[-8:])


# --- a QoS 1 publish with nothing but a socket ------------------------------------------------
#
# The readiness check runs where an event loop may already be running (an async test's
# fixture), so it speaks the few bytes of MQTT 3.1.1 it needs itself.


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind]) + bytes(encoded) + body


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def qos1_publish(port: int, *, client_id: str, topic: str, timeout: float = 5.0,
                 username: str | None = None, password: str | None = None) -> None:
    """CONNECT (3.1.1, clean session), PUBLISH QoS 1, wait for its PUBACK, DISCONNECT.

    Raises ``OSError`` (``ConnectionError``, ``TimeoutError``) when the node does not.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        flags = 0x02 | (0xC0 if username is not None else 0)
        connect = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _utf8(client_id)
        if username is not None:
            connect += _utf8(username) + _utf8(password or "")
        sock.sendall(_packet(0x10, connect))
        connack = _read_exact(sock, 4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"CONNACK refused (code {connack[3]})")
        sock.sendall(_packet(0x32, _utf8(topic) + struct.pack("!H", 1) + b"ready"))
        puback = _read_exact(sock, 4)
        if puback[0] != 0x40 or puback[2:] != struct.pack("!H", 1):
            raise ConnectionError(f"expected a PUBACK, got {puback!r}")
        sock.sendall(b"\xe0\x00")


# --- the secure profile's roles, for NATS ------------------------------------------------------


def mqtt_to_subject(topic: str) -> str:
    """An MQTT topic filter as the NATS subject NATS maps it to (``/`` -> ``.``,
    ``+`` -> ``*``, ``#`` -> ``>``)."""
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


READY_USER: Final = "lapcast-ready"
READY_PASSWORD: Final = "lapcast-ready"  # it can only publish below lapcast/ready/


def authorization_from_acl(acl: str, passwords: Mapping[str, str]) -> str:
    """An ``authorization`` block giving each user of a Mosquitto ACL (``acl.conf``) the
    same rights on the NATS cluster: ``topic read`` is subscribe, ``write`` publish,
    ``readwrite`` both; anything not listed is denied. ``passwords``: user -> password."""
    rights: dict[str, dict[str, list[str]]] = {}
    user: str | None = None
    for raw in acl.splitlines():
        line = raw.strip()  # comments only at the start of a line ("#" ends topic filters)
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "user" and len(words) == 2:
            user = words[1]
            rights.setdefault(user, {"publish": [], "subscribe": []})
        elif words[0] == "topic" and user is not None and len(words) == 3:
            access, subject = words[1], mqtt_to_subject(words[2])
            if access in ("write", "readwrite"):
                rights[user]["publish"].append(subject)
            if access in ("read", "readwrite"):
                rights[user]["subscribe"].append(subject)
    missing = sorted(set(rights) - set(passwords))
    if missing:
        raise LapcastError(f"no password for {', '.join(missing)}")
    # The readiness check's own user: it may publish below lapcast/ready/ and nothing else.
    rights[READY_USER] = {"publish": ["lapcast.ready.>"], "subscribe": []}

    def allowed(subjects: list[str]) -> str:
        # An empty allow list would mean "no restriction": deny everything instead.
        if not subjects:
            return '{deny: [">"]}'
        return "{allow: [" + ", ".join(json.dumps(item) for item in subjects) + "]}"

    for r in rights.values():
        if r["subscribe"]:
            # NATS delivers a QoS 1 subscription through a JetStream consumer on a
            # subject of its own below $MQTT.sub., under the user's permissions.
            r["subscribe"].append("$MQTT.sub.>")
    users = [
        f"    {{user: {json.dumps(name)}, password: "
        f"{json.dumps(passwords.get(name, READY_PASSWORD))}, permissions: "
        f"{{publish: {allowed(r['publish'])}, subscribe: {allowed(r['subscribe'])}}}}}"
        for name, r in rights.items()
    ]
    return "authorization {\n  users: [\n" + ",\n".join(users) + "\n  ]\n}\n"
