"""The 3-node NATS cluster fixture, and the NATS MQTT behaviour lapcast's 3.1.1 profile
relies on (measured on nats-server 2.9.10)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator

import aiomqtt
import pytest

from lapcast.topology.nats import NatsCluster, NatsClusterSpec, qos1_publish
from simulator.mqtt.settings import parse_broker_url

V311 = aiomqtt.ProtocolVersion.V311


def _client(cluster: NatsCluster, node: int, client_id: str, **kwargs: object) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", cluster.nodes[node].mqtt_port, protocol=V311,
                          identifier=client_id, **kwargs)  # type: ignore[arg-type]


async def _drain(client: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message)
    except TimeoutError:
        pass
    return got


class TestFixture:
    def test_three_nodes_with_their_own_config_and_store(self, nats_cluster: NatsCluster) -> None:
        """Each node has a server_name, routes to the two others, its own JetStream folder,
        an mqtt listener and an http port, all on loopback; every node is healthy."""
        ports = set()
        for node in nats_cluster.nodes:
            text = node.config_path.read_text()
            assert f"server_name: {node.name}" in text
            others = [o for o in nats_cluster.nodes if o is not node]
            for other in others:
                assert f"nats-route://127.0.0.1:{other.cluster_port}" in text
            assert f"nats-route://127.0.0.1:{node.cluster_port}" not in text
            assert str(node.workdir / "jetstream") in text
            assert re.search(rf"mqtt \{{\s*listen: 127\.0\.0\.1:{node.mqtt_port}", text)
            assert f"http: 127.0.0.1:{node.http_port}" in text
            assert "@" not in text.split("#")[0]
            assert node.healthz()
            ports |= {node.client_port, node.cluster_port, node.mqtt_port, node.http_port}
        assert len(ports) == 12
        assert 4222 not in ports

    def test_url_lists_every_node_and_parses(self, nats_cluster: NatsCluster) -> None:
        """``url`` is every node's MQTT URL, comma-separated; ``url_from(i)`` starts at i."""
        assert nats_cluster.url.split(",") == list(nats_cluster.urls)
        assert nats_cluster.url_from(1).split(",")[0] == nats_cluster.nodes[1].url
        assert len(nats_cluster.url_from(2).split(",")) == 3
        parse_broker_url(nats_cluster.nodes[0].url)

    def test_stop_ends_every_server_by_pid(self, nats_cluster: NatsCluster) -> None:
        """After stop() no node's process is left."""
        pids = [node.child.pid for node in nats_cluster.nodes if node.child is not None]
        assert len(pids) == 3
        nats_cluster.stop()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)

    def test_a_killed_node_restarts_with_its_store(self, nats_cluster: NatsCluster) -> None:
        """SIGKILL of a node, then start_node: it serves MQTT again and JetStream's streams
        are current on every node; the other nodes served MQTT meanwhile (once JetStream
        has elected new leaders, when the dead node led a stream: up to about 10 s)."""
        nats_cluster.kill(1)
        assert not nats_cluster.nodes[1].running
        nats_cluster.publish_until(nats_cluster.nodes[2], time.monotonic() + 30)
        took = nats_cluster.start_node(1)
        assert took < 30
        qos1_publish(nats_cluster.nodes[1].mqtt_port, client_id="after", topic="a/b")
        assert all(node.running for node in nats_cluster.nodes)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One cluster for the behaviour tests below (topics and client ids are unique)."""
    with NatsClusterSpec(tether=False).create(tmp_path_factory.mktemp("nats")) as running:
        yield running


class TestNatsMqtt:
    async def test_v5_is_refused_with_0x84(self, cluster: NatsCluster) -> None:
        """NATS 2.9 speaks MQTT 3.1.1 only: a v5 CONNECT gets CONNACK 0x84."""
        client = aiomqtt.Client("127.0.0.1", cluster.nodes[0].mqtt_port,
                                protocol=aiomqtt.ProtocolVersion.V5)
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with client:
                pass
        assert caught.value.rc is not None and int(caught.value.rc.value) == 0x84  # type: ignore[union-attr]

    async def test_retained_state_is_readable_from_every_node(
            self, cluster: NatsCluster, session_id: str) -> None:
        """A retained publish on node 0 is delivered, retained, by nodes 1 and 2."""
        topic = f"lapcast/v1/sessions/{session_id}/state/running-order"
        async with _client(cluster, 0, f"writer-{session_id}") as writer:
            await writer.publish(topic, b"state-1", qos=1, retain=True)
        for node in (1, 2):
            async with _client(cluster, node, f"reader-{node}-{session_id}") as reader:
                await reader.subscribe(topic, qos=1)
                got = await _drain(reader, 1.0)
            assert [(m.payload, m.retain) for m in got] == [(b"state-1", True)]

    async def test_a_persistent_session_follows_the_client_to_another_node(
            self, cluster: NatsCluster, session_id: str) -> None:
        """clean_session=False on node 1; QoS 1 messages sent while it is away are
        delivered when it reconnects on node 2."""
        topic = f"lapcast/v1/sessions/{session_id}/events"
        async with _client(cluster, 1, f"durable-{session_id}", clean_session=False) as consumer:
            await consumer.subscribe(topic, qos=1)
        async with _client(cluster, 0, f"engine-{session_id}") as engine:
            for i in range(5):
                await engine.publish(topic, str(i).encode(), qos=1)
        async with _client(cluster, 2, f"durable-{session_id}", clean_session=False) as consumer:
            got = await _drain(consumer, 1.0)
        assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]

    async def test_own_messages_come_back_and_live_ones_lose_the_retain_flag(
            self, cluster: NatsCluster, session_id: str) -> None:
        """3.1.1 has no noLocal: a client subscribed to its own retained topic gets its
        publish back, without the retain flag (live forwarding clears it)."""
        topic = f"lapcast/v1/sessions/{session_id}/state/x"
        async with _client(cluster, 0, f"self-{session_id}") as client:
            await client.subscribe(topic, qos=1)
            await client.publish(topic, b"mine", qos=1, retain=True)
            got = await _drain(client, 0.5)
        assert [(m.payload, m.retain) for m in got] == [(b"mine", False)]

    @pytest.mark.parametrize("level", ["a.b", "a b"])
    async def test_a_dot_or_space_in_a_topic_closes_the_connection(
            self, cluster: NatsCluster, level: str) -> None:
        """Why session ids are portable: NATS drops a client publishing to such a topic."""
        with pytest.raises(aiomqtt.MqttError):
            async with _client(cluster, 0, "dotted") as client:
                await client.publish(f"lapcast/v1/sessions/{level}/events", b"x", qos=1,
                                     timeout=2)
                await client.publish("lapcast/v1/ok", b"x", qos=1, timeout=2)
