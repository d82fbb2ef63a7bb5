"""lapcast: an event-sourced live timing simulator for motor racing, over MQTT.

The import packages: ``simulator`` (wire contract, sources, replay engine,
synthetic fields), ``consumers`` (runtime and projections) and ``lapcast``
(the command line and the local broker it can start).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
