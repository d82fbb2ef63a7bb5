"""Shared fixtures: a real Mosquitto per test, the shared race data, unique topics.

Helpers shared by several test files (not fixtures) live in ``tests/support/``.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.secure import SecureSession

from lapcast.topology import MosquittoProcess, MosquittoSpec
from lapcast.topology.nats import NatsCluster, NatsClusterSpec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
RACE_CSV = SHARED / "data" / "wec-2024-bahrain-8h-race.analysis.csv"
FACTS = SHARED / "seed" / "FACTS.md"


@pytest.fixture(scope="session")
def race_csv() -> Path:
    """The real 2024 Bahrain 8h analysis export, read from ../shared (never copied)."""
    assert RACE_CSV.exists(), f"shared data missing: {RACE_CSV} (CI lays ../shared beside the repo)"
    return RACE_CSV


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A private Mosquitto from broker-config/dev.conf on a free loopback port."""
    # Not tethered: some tests stop and start it from a worker thread.
    with MosquittoSpec(config="dev.conf", tether=False).create(tmp_path / "broker") as proc:
        yield proc


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A 3-node NATS cluster (MQTT 3.1.1, JetStream R3) from broker-config/nats-cluster.conf
    on free loopback ports; ready once every node acknowledges a QoS 1 publish."""
    with NatsClusterSpec(tether=False).create(tmp_path / "nats") as cluster:
        yield cluster


@pytest.fixture
def session_id() -> str:
    """A session id (hence a topic tree) unique to the test."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def secure_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test CA, server certificate, users and ACL made by the repository's own scripts."""
    out = tmp_path_factory.mktemp("secrets")
    for script in ("make-certs.sh", "make-users.sh"):
        subprocess.run([str(REPO / "scripts" / script), str(out)], check=True,
                       capture_output=True, timeout=60)
    return out


@pytest.fixture
def secure_broker(tmp_path: Path, secure_secrets: Path) -> Iterator[MosquittoProcess]:
    """A private Mosquitto from broker-config/secure.conf (TLS, passwords, ACL), free port."""
    spec = MosquittoSpec(config="secure.conf", replacements={"secrets/": f"{secure_secrets}/"},
                         tether=False)
    with spec.create(tmp_path / "secure-broker") as proc:
        yield proc


@pytest.fixture
def secure_env(secure_secrets: Path) -> Callable[[str], dict[str, str]]:
    """``secure_env(user)``: that user's LAPCAST_MQTT_* variables (its .env file)."""

    def env(user: str) -> dict[str, str]:
        text = (secure_secrets / f"{user}.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    return env


@pytest.fixture
def secure_session(secure_broker: MosquittoProcess, secure_env: Callable[[str], dict[str, str]],
                   session_id: str, tmp_path: Path) -> Iterator[SecureSession]:
    """The secure profile's processes for one test, each under its own user; all stopped
    at the end."""
    session = SecureSession(secure_broker, secure_env, session_id, tmp_path)
    try:
        yield session
    finally:
        session.supervisor.stop(grace_s=15)
