"""Shared fixtures: a real Mosquitto per test, the shared race data, unique topics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lapcast.mosquitto import MosquittoProcess

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
