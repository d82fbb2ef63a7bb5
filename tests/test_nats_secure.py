"""The secure profile's roles on the NATS cluster: the same users and rights as
broker-config/acl.conf (made by scripts/make-users.sh), as NATS permissions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from consumers.testing import consumer_process, stop_process, wait_for
from lapcast.cli.fold_cmd import fold_source
from lapcast.topology.nats import (
    NatsCluster,
    NatsClusterSpec,
    authorization_from_acl,
    mqtt_to_subject,
)
from simulator import topics

V311 = aiomqtt.ProtocolVersion.V311
USERS = ("engine", "operator", "board", "running-order", "class-poles", "championship")


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory,
                   secure_secrets: Path) -> Iterator[NatsCluster]:
    """A 3-node cluster whose users and rights come from the secure profile's ACL."""
    passwords = {}
    for user in USERS:
        env = (secure_secrets / f"{user}.env").read_text()
        passwords[user] = next(line.split("=", 1)[1] for line in env.splitlines()
                               if line.startswith("LAPCAST_MQTT_PASSWORD="))
    acl = (secure_secrets / "acl.conf").read_text()
    spec = NatsClusterSpec(tether=False, extra=authorization_from_acl(acl, passwords))
    with spec.create(tmp_path_factory.mktemp("secure-nats")) as cluster:
        cluster.passwords = passwords  # type: ignore[attr-defined]
        yield cluster


def _client(cluster: NatsCluster, node: int, user: str, client_id: str) -> aiomqtt.Client:
    password = cluster.passwords[user]  # type: ignore[attr-defined]
    return aiomqtt.Client("127.0.0.1", cluster.nodes[node].mqtt_port, protocol=V311,
                          identifier=client_id, username=user, password=password)


class TestRoles:
    def test_topics_map_to_nats_subjects(self) -> None:
        """`/` is `.`, `+` is `*`, `#` is `>`."""
        assert mqtt_to_subject("lapcast/v1/sessions/+/catchup/reply/x/#") == \
            "lapcast.v1.sessions.*.catchup.reply.x.>"

    async def test_a_consumer_cannot_publish_events(
            self, secure_cluster: NatsCluster, session_id: str) -> None:
        """running-order's user publishing on the events topic: NATS drops it (3.1.1 has
        no PUBACK reason code, so the publisher is not told); the engine's arrives."""
        events = topics.events(session_id)
        async with _client(secure_cluster, 1, "class-poles", f"cp-{session_id}") as reader:
            await reader.subscribe(events, qos=1)
            async with _client(secure_cluster, 2, "running-order", f"ro-{session_id}") as bad:
                await bad.publish(events, b"forged", qos=1, timeout=5)
            async with _client(secure_cluster, 0, "engine", f"eng-{session_id}") as engine:
                await engine.publish(events, b"from-engine", qos=1, timeout=5)
            got: list[object] = []
            try:
                async with asyncio.timeout(1.5):
                    async for message in reader.messages:
                        got.append(message.payload)
            except TimeoutError:
                pass
        assert got == [b"from-engine"]

    async def test_a_board_reads_states_but_not_events(
            self, secure_cluster: NatsCluster, session_id: str) -> None:
        """The board's user may subscribe to states and is refused the events topic; an
        unknown user is refused the connection."""
        async with _client(secure_cluster, 0, "board", f"b-{session_id}") as board:
            granted = await board.subscribe(topics.state(session_id, "running-order"), qos=1)
            refused = await board.subscribe(topics.events(session_id), qos=1)
        assert [int(c.value) for c in granted] == [1]  # type: ignore[union-attr]
        assert [int(c.value) for c in refused] == [0x80]  # type: ignore[union-attr]
        with pytest.raises(aiomqtt.MqttCodeError):
            async with aiomqtt.Client("127.0.0.1", secure_cluster.nodes[1].mqtt_port,
                                      protocol=V311, username="nobody", password="x"):
                pass

    async def test_lapcast_runs_under_its_users(
            self, secure_cluster: NatsCluster, session_id: str, tmp_path: Path,
            secure_env: Callable[[str], dict[str, str]]) -> None:
        """The engine and a consumer, each under its own user on another node: the
        consumer's state (catch-up included) equals `lapcast fold` of the journal."""
        journal = tmp_path / "journal.jsonl"
        env = {**secure_env("running-order"), "LAPCAST_MQTT_CA_FILE": ""}
        consumer = consumer_process("running-order", broker_url=secure_cluster.url_from(1),
                                    session_id=session_id, state_dir=tmp_path / "state",
                                    environ=env, log_file=tmp_path / "consumer.log")
        try:
            await wait_for(secure_cluster.url_from(2), topics.consumer_status(
                session_id, "running-order"), lambda d: d.get("state") != "lost",
                timeout=60, environ=env)
            engine_env = {**secure_env("engine"), "LAPCAST_MQTT_CA_FILE": ""}
            done = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "lapcast", "replay", "synth:cars=8,laps=15",
                "--session-id", session_id, "--broker", secure_cluster.url_from(0),
                "--speed", "max", "--journal", str(journal), "--exit-when-done"],
                env={**os.environ, **engine_env}, capture_output=True,
                text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            expected = fold_source(str(journal))
            total = expected.events
            board_env = {**secure_env("board"), "LAPCAST_MQTT_CA_FILE": ""}
            doc = await wait_for(secure_cluster.url_from(2),
                                 topics.state(session_id, "running-order"),
                                 lambda d: d["seq"] >= total, timeout=60, environ=board_env)
        finally:
            stop_process(consumer)
        assert doc["seq"] == total
        views = msgspec.json.decode(msgspec.json.encode(expected.views()))
        assert doc["state"] == views["running_order"]
