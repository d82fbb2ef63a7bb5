"""``lapcast stress``: the engine and the consumers over a real broker, measured.

``run_stress(StressSettings(...))`` runs a synthetic field through a Mosquitto, the
replay engine and the consumers (each its own process, as in production), probes
what they publish, and returns a ``StressReport``: events/s, latency from engine
publish to consumer state, lag, peak memory, lost and double-counted events
(checked against the engine's journal), and ``mosquitto_pub``'s rate for comparison.
"""

from lapcast.stress.harness import Progress, StressSettings, run_stress
from lapcast.stress.report import StressReport

__all__ = ["Progress", "StressReport", "StressSettings", "run_stress"]
