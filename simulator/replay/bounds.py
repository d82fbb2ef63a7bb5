"""The ranges of every number the engine takes, from the command line or the control topic.

One place, so ``lapcast replay``, ``lapcast demo``, the control topic and the
in-process API refuse the same values with the same reason:

* speed: 0.01 to 10,000,000 session seconds per wall second, or ``max`` (None). The
  bounds keep every deadline a finite float at any session length: 5e-324 would
  make them infinite, 1e-300 would freeze the replay.
* batch: 1 to 10,000 events per message.
* window: 1 to 65,535 messages in flight (MQTT packet identifiers are 16 bits).
* linger: 0 to 1,000 ms.
* seek target: from 0 to the end of the session (checked by the engine, which knows
  the end).

Each ``check_*`` returns the value or raises ``ValueError`` with the reason; the
caller adds where it came from (an option, a command).
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "BATCH_MAX",
    "LINGER_MAX_MS",
    "SPEED_MAX",
    "SPEED_MIN",
    "WINDOW_MAX",
    "check_batch",
    "check_linger_ms",
    "check_speed",
    "check_window",
    "shown",
]

SPEED_MIN: Final = 0.01
SPEED_MAX: Final = 10_000_000.0
BATCH_MAX: Final = 10_000
WINDOW_MAX: Final = 65_535
LINGER_MAX_MS: Final = 1000.0


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: reasons echo what was sent."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_speed(factor: float | None) -> float | None:
    """A speed factor within range, or None (max)."""
    if factor is None:
        return None
    if not _is_number(factor) or not math.isfinite(factor) or not (
            SPEED_MIN <= factor <= SPEED_MAX):
        raise ValueError(f"speed {shown(factor)} is out of range: from {SPEED_MIN:g} to "
                         f"{SPEED_MAX:,.0f}, or \"max\"")
    return float(factor)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} {shown(value)} is out of range: a whole number from "
                         f"{low:,} to {high:,}")
    return value


def check_batch(value: object) -> int:
    return _check_int("batch", value, 1, BATCH_MAX)


def check_window(value: object) -> int:
    return _check_int("window", value, 1, WINDOW_MAX)


def check_linger_ms(value: object) -> float:
    if not _is_number(value) or not 0 <= value <= LINGER_MAX_MS:  # type: ignore[operator]
        raise ValueError(f"linger {shown(value)} ms is out of range: from 0 to "
                         f"{LINGER_MAX_MS:g}")
    return float(value)  # type: ignore[arg-type]
