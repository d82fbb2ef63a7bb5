"""Consumers on the secure profile: TLS, their own users, and defence in depth behind the ACL.

The broker is a private Mosquitto from ``broker-config/secure.conf`` (fixtures
``secure_broker`` and ``secure_env`` in conftest): every process below logs in
with its own user, from the ``LAPCAST_MQTT_*`` variables of its ``.env`` file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.folding import fold_all
from consumers.registry import BUILTIN, load_consumer
from consumers.testing import (
    TestPublisher,
    consumer_process,
    stop_process,
    wait_for,
    write_journal,
)
from lapcast.cli.fold_cmd import fold_source
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.replay.testing import generated_events

Env = Callable[[str], dict[str, str]]


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        stop_process(proc)


class TestSecureConsumers:
    async def test_secure_replay_and_consumers_over_tls_with_their_own_users(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str,
        race_csv: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]],
    ) -> None:
        """Engine and consumers over TLS as their users; a late one catches up through the ACL."""
        url = secure_broker.url
        board = secure_env("board")

        def consume(name: str) -> None:
            procs.append(consumer_process(
                name, broker_url=url, session_id=session_id, state_dir=tmp_path / "state",
                environ=secure_env(name), log_file=tmp_path / f"{name}.log"))

        for name in ("running-order", "championship"):
            consume(name)
            await wait_for(url, topics.consumer_status(session_id, name),
                           lambda d: d.get("state") != "lost", environ=board)
        journal = tmp_path / "journal.jsonl"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "lapcast", "replay", str(race_csv), "--broker", url,
             "--session-id", session_id, "--speed", "max", "--batch", "10",
             "--journal", str(journal)],
            env={**os.environ, **secure_env("engine")}, stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "replay.log").open("wb")))
        status = await wait_for(url, topics.status(session_id),
                                lambda d: d.get("state") == "finished", timeout=120,
                                environ=board)
        consume("class-poles")  # after the end: everything comes from the catch-up service
        expected = _plain(fold_source(str(journal)).views())
        for name in BUILTIN:
            doc = await wait_for(url, topics.state(session_id, name),
                                 lambda d: d["seq"] == status["last_seq"], timeout=90,
                                 environ=board)
            assert doc["state"] == expected.get(load_consumer(name).json_key), name
        health = await wait_for(url, topics.consumer_status(session_id, "class-poles"),
                                lambda d: d["state"] == "live", environ=board)
        assert health["catchups"] >= 1 and health["dead_letters"] == 0

    async def test_secure_forged_messages_past_the_broker_change_no_projection(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str,
        tmp_path: Path, procs: list[subprocess.Popen[bytes]],
    ) -> None:
        """What the ACL lets through but is forged is refused, counted and dead-lettered.

        Only the engine's user may publish events, so the forgeries come with its
        credentials (a leaked password, a buggy engine): an event of another session,
        a retained event, an oversized message. The state stays the fold of the log.
        """
        url = secure_broker.url
        board, engine = secure_env("board"), secure_env("engine")
        events = generated_events(session_id, cars=4, laps=8)
        journal = tmp_path / "journal.jsonl"
        procs.append(consumer_process(
            "class-poles", broker_url=url, session_id=session_id,
            state_dir=tmp_path / "state", journal=journal, environ=secure_env("class-poles"),
            extra=["--max-payload-bytes", "4096"], log_file=tmp_path / "consumer.log"))
        health_topic = topics.consumer_status(session_id, "class-poles")
        await wait_for(url, health_topic, lambda d: d.get("state") != "lost", environ=board)
        write_journal(journal, events)
        nxt = msgspec.structs.replace(events[-1], seq=len(events) + 1)
        async with TestPublisher(url, session_id, environ=engine) as pub:
            await pub.events(events, batch=4)
            state_topic = topics.state(session_id, "class-poles")
            before = await wait_for(url, state_topic, lambda d: d["seq"] == len(events),
                                    environ=board)
            await pub.raw(msgspec.json.encode(msgspec.structs.replace(
                nxt, session_id="another-session")))
            await pub.raw(msgspec.json.encode(nxt), retain=True)
            await pub.raw(msgspec.json.encode(nxt) + b" " * 5000)
        health = await wait_for(url, health_topic, lambda d: d["refused"] == 3, environ=board)
        assert health["dead_letters"] == 3 and health["last_seq"] == len(events)
        after = await wait_for(url, state_topic, lambda d: True, environ=board)
        assert after == before
        expected = fold_all([load_consumer("class-poles")], events)[0].view()
        assert after["state"] == _plain(expected)
