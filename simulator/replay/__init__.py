"""The replay engine: pacing, journal, delivery, control and catch-up.

``ReplayEngine`` (``engine.py``) ties the parts together; each part is its own
module: ``cursor`` (the source in order), ``publisher`` (pump, linger, send due),
``writeahead`` (flush before publish), ``pacing`` (absolute deadlines, injectable
clock), ``delivery`` (QoS 1 window, resend on reconnect), ``status``, ``requests``
(control and catch-up topics), ``control`` (validated commands), ``catchup``
(journal ranges over MQTT v5 request/response), ``link`` (connections). The
journal itself is ``simulator.journal``.
"""

from simulator.replay.engine import LOST_STATUS, ReplayEngine, ReplaySettings, ReplayStats

__all__ = ["LOST_STATUS", "ReplayEngine", "ReplaySettings", "ReplayStats"]
