"""Make paho-mqtt's ``Properties`` cheap to create (it is created for every message).

``paho.mqtt.properties.Properties.__init__`` rebuilds two constant lookup tables
(about 30 entries, each through an overridden ``__setattr__``) for every MQTT v5
packet, incoming ones included: on a consumer receiving events that was the
largest single cost, about 80 us of ~300 us per message. The tables are never
mutated by paho, so every instance can share one copy. ``install()`` swaps the
constructor for one that does exactly that; it is idempotent and checked against
paho's own result, so a paho release that changes the class is left alone.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["install", "matches_paho"]

_original_init = Properties.__init__


def install() -> bool:
    """Share paho's property tables between instances; False if paho looks different."""
    if getattr(Properties.__init__, "_lapcast_shared", False):
        return True
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    shared = {k: getattr(template, k, None) for k in ("types", "names", "properties")}
    if set(vars(template)) != {"packetType", *shared} or None in shared.values():
        return False  # not the class this was written against

    def shared_init(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        for name, value in shared.items():
            object.__setattr__(self, name, value)

    shared_init._lapcast_shared = True  # type: ignore[attr-defined]
    Properties.__init__ = shared_init  # type: ignore[method-assign]
    return True


def matches_paho(packet_type: int = PacketTypes.PUBLISH) -> bool:
    """A shared-table instance packs and looks like one paho built itself."""
    fast = Properties(packet_type)  # type: ignore[no-untyped-call]
    slow: Any = object.__new__(Properties)
    _original_init(slow, packet_type)  # type: ignore[no-untyped-call]
    fast.UserProperty = ("published_at_ns", "1")
    slow.UserProperty = ("published_at_ns", "1")
    same_bytes = fast.pack() == slow.pack()  # type: ignore[no-untyped-call]
    return bool(same_bytes and vars(fast).keys() == vars(slow).keys())
