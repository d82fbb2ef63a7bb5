"""Where lapcast's broker settings and client used to live: now ``simulator.mqtt``.

Kept so that ``from simulator.connection import ...`` goes on working;
new code imports from ``simulator.mqtt.settings`` and ``simulator.mqtt.client``.
"""

from __future__ import annotations

from simulator.mqtt.client import CheckedClient, check_puback, check_suback, is_final
from simulator.mqtt.settings import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    NO_DELAY,
    BrokerSettings,
    parse_broker_url,
)

__all__ = [
    "ENV_CA_FILE",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "NO_DELAY",
    "BrokerSettings",
    "CheckedClient",
    "check_puback",
    "check_suback",
    "is_final",
    "parse_broker_url",
]
