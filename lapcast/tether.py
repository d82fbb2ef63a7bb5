"""Moved to ``lapcast.topology.tether``; this name stays for existing imports."""

from lapcast.topology.tether import tethered

__all__ = ["tethered"]
