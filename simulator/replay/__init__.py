"""The replay engine: pacing, journal, delivery, control and catch-up.

``ReplayEngine`` (``engine.py``) ties the parts together; each part is its own
module: ``pacing`` (absolute deadlines, injectable clock), ``delivery`` (QoS 1
window, resend on reconnect), ``control`` (validated commands), ``catchup``
(journal ranges over MQTT v5 request/response). The journal itself is
``simulator.journal``.
"""

from simulator.replay.engine import LOST_STATUS, ReplayEngine, ReplaySettings, ReplayStats

__all__ = ["LOST_STATUS", "ReplayEngine", "ReplaySettings", "ReplayStats"]
