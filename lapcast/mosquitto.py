"""Moved to ``lapcast.topology.mosquitto``; this name stays for existing imports."""

from lapcast.topology.mosquitto import CONFIG_DIR, MosquittoProcess, find_mosquitto, free_port

__all__ = ["CONFIG_DIR", "MosquittoProcess", "find_mosquitto", "free_port"]
