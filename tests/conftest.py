"""Shared fixtures: a real Mosquitto per test, the shared race data, unique topics."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lapcast.mosquitto import MosquittoProcess

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
    with MosquittoProcess(config="dev.conf", workdir=tmp_path / "broker") as proc:
        yield proc


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
    with MosquittoProcess(config="secure.conf", replacements={"secrets/": f"{secure_secrets}/"},
                          workdir=tmp_path / "secure-broker") as proc:
        yield proc


@pytest.fixture
def secure_env(secure_secrets: Path) -> Callable[[str], dict[str, str]]:
    """``secure_env(user)``: that user's LAPCAST_MQTT_* variables (its .env file)."""

    def env(user: str) -> dict[str, str]:
        text = (secure_secrets / f"{user}.env").read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    return env
