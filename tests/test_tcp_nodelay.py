"""Nagle's algorithm is off on both ends of lapcast's connections (the engine's excepted).

With Nagle on, a small packet written while an earlier one is unacknowledged waits
for that ACK, which Linux delays by up to 40 ms on a quiet link: the tail of the
stress test's latency was such stalls (a state, its changes and its health written
in a row by a consumer; PUBACKs and deliveries written in a row by the broker).
"""

from __future__ import annotations

import socket
from pathlib import Path

from lapcast.mosquitto import CONFIG_DIR, MosquittoProcess
from lapcast.stress.probe import Probe
from simulator.connection import parse_broker_url
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import generated_source


def _settings(conf: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0].split() for line in conf.read_text().splitlines())
    return {words[0]: " ".join(words[1:]) for words in lines if words}


class TestBrokerConfigs:
    def test_every_broker_config_sets_tcp_nodelay(self) -> None:
        configs = sorted(CONFIG_DIR.glob("*.conf"))
        assert {c.name for c in configs} >= {"dev.conf", "secure.conf"}
        for conf in configs:
            # Not Mosquitto's: NATS (Go) sets TCP_NODELAY on every connection by default.
            if conf.name == "acl.conf" or conf.name.startswith("nats-"):
                continue
            assert _settings(conf).get("set_tcp_nodelay") == "true", conf


class TestClients:
    async def test_a_lapcast_client_socket_has_tcp_nodelay(
            self, broker: MosquittoProcess) -> None:
        async with parse_broker_url(broker.url).client(identifier="nodelay-check") as client:
            sock = client._client.socket()  # aiomqtt wraps a paho client
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    def test_the_stress_probe_socket_has_tcp_nodelay(
            self, broker: MosquittoProcess, session_id: str) -> None:
        settings = parse_broker_url(broker.url)
        probe = Probe(host=settings.host, port=settings.port, session_id=session_id,
                      consumers=["running-order"], broker=settings)
        probe.start()
        try:
            sock = probe._client.socket()
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            probe.stop()

    def test_the_engine_keeps_nagle_for_its_qos1_stream(self, session_id: str,
                                                        tmp_path: Path) -> None:
        """The exception: every events message is QoS 1, so the broker's PUBACK returns
        the TCP ACK at once; Nagle only packs back-to-back messages (bench/replay.py)."""
        engine = ReplayEngine(generated_source(session_id, cars=1, laps=1), ReplaySettings(
            broker=parse_broker_url("mqtt://127.0.0.1:1"), journal_path=tmp_path / "j"))
        assert engine._client_kwargs()["socket_options"] == ()
