"""How one live consumer runs: ``RunnerSettings``, and where its defaults come from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from simulator import names, topics
from simulator.errors import LapcastError

__all__ = ["RunnerSettings", "default_client_id", "default_state_dir"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/lapcast`` (``~/.local/state/lapcast``): where checkpoints live."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lapcast"


def default_client_id(consumer: str, session_id: str) -> str:
    """``lapcast-{consumer}-{session}``, portable (a consumer named ``pkg.mod:obj`` too)."""
    return names.portable_name(f"lapcast-{consumer}-{session_id}")


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """How one consumer runs. Times are milliseconds unless the name says seconds."""

    session_id: str
    client_id: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    # Read catch-up ranges from this journal file instead of asking the engine.
    journal: Path | None = None
    checkpoint_events: int = 1000
    checkpoint_ms: int = 1000
    publish_ms: int = 100
    health_ms: int = 1000
    # Events messages above this size are refused (and counted), never decoded.
    max_payload_bytes: int = 1024 * 1024
    session_expiry_s: int = 3600
    catchup_timeout_s: float = 5.0
    keepalive_s: int = 4  # paho gives up after 1-2x this silent: a dead link in < 10 s
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    # Early events buffered while a gap is fetched; beyond it they are fetched again.
    max_pending: int = 200_000

    def __post_init__(self) -> None:
        topics.validate_session_id(self.session_id)
        if self.client_id is not None:
            names.validate_client_id(self.client_id)
        for name in ("checkpoint_events", "checkpoint_ms", "publish_ms", "health_ms",
                     "max_payload_bytes", "session_expiry_s", "max_pending"):
            if getattr(self, name) < 1:
                raise LapcastError(f"{name.replace('_', '-')} must be at least 1, "
                                   f"not {getattr(self, name)}")
