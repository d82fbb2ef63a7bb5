"""Exponential backoff with jitter: how long to wait before trying the broker again.

Written once and used by every retry in lapcast (the reconnect loop, and asking the
catch-up service again), so a broker restart does not see every client reconnect in
the same millisecond.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(kw_only=True)
class Backoff:
    """``next()`` gives 0.5x..1x of min_s, 2*min_s, 4*min_s... capped at max_s."""

    min_s: float = 0.1
    max_s: float = 5.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        # "Equal jitter": never less than half the ceiling, so the wait still grows.
        return float(ceiling / 2 + self.rng.random() * ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0
