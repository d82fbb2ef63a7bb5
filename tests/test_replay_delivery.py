"""Delivery details: the hand-packed published_at_ns property matches paho's packing."""

from __future__ import annotations

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulator.replay.delivery import PUBLISHED_AT, Outgoing, PublishedAt


class TestPublishedAt:
    def test_packs_the_same_bytes_as_paho(self) -> None:
        """The user property is byte for byte what paho's Properties would send."""
        for ns in (0, 7, time.time_ns(), 2**63 - 1):
            reference = Properties(PacketTypes.PUBLISH)
            reference.UserProperty = (PUBLISHED_AT, str(ns))
            assert PublishedAt(ns).pack() == reference.pack()

    def test_reads_back_through_paho(self) -> None:
        """A receiver that unpacks the bytes with paho finds published_at_ns."""
        ns = time.time_ns()
        unpacked = Properties(PacketTypes.PUBLISH)
        unpacked.unpack(PublishedAt(ns).pack())
        assert unpacked.UserProperty == [(PUBLISHED_AT, str(ns))]
        assert str(ns) in repr(PublishedAt(ns))


class TestOutgoing:
    def test_count_of_a_batch(self) -> None:
        """A message carrying seq 5..68 counts 64 events."""
        assert Outgoing(epoch=1, first_seq=5, last_seq=68, payload=b"").count == 64
