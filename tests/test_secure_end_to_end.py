"""The whole system on the secure profile: TLS, a user per process, the ACL in force.

Real processes (``lapcast replay``, three ``lapcast consume``, ``lapcast board``), each
with its own user from ``scripts/make-users.sh``, against a private Mosquitto started
from ``broker-config/secure.conf``; the shared 2024 Bahrain race at ``--speed max``.
Then what gets past the broker (a message the engine's credentials may publish, a
catch-up request a consumer may send) is shown to change no projection.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumers.folding import fold_all
from consumers.registry import load_consumer
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import BrokerSettings, parse_broker_url
from simulator.contract import LapCompleted, encode
from simulator.errors import BrokerError
from simulator.sources import load_source

pytestmark = pytest.mark.broker

PROJECTIONS = ("running-order", "class-poles", "championship")
Env = Callable[[str], dict[str, str]]


class SecureSession:
    """One session on the secure broker: its processes, each under its own user."""

    def __init__(self, broker: MosquittoProcess, env: Env, session_id: str,
                 tmp_path: Path) -> None:
        self.broker = broker
        self.env = env
        self.session_id = session_id
        self.tmp = tmp_path
        self.journal = tmp_path / "journal.jsonl"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def settings(self, user: str) -> BrokerSettings:
        return parse_broker_url(self.broker.url, environ=self.env(user))

    def spawn(self, name: str, user: str, *args: str, stdout: Any = None) -> None:
        """``python -m lapcast ARGS --broker URL`` with ``user``'s LAPCAST_MQTT_* only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAPCAST_MQTT_")}
        env.update(self.env(user), COLUMNS="200", LINES="80")
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "lapcast", "-v", *args, "--broker", self.broker.url],
            env=env, stdout=stdout or subprocess.DEVNULL, stderr=log,
        )
        log.close()

    def start_consumers(self) -> None:
        for name in PROJECTIONS:
            self.spawn(name, name, "consume", name, "--session", self.session_id,
                       "--state-dir", str(self.tmp / "state"), "--publish-ms", "50",
                       "--catchup-timeout", "1")

    def start_engine(self, source: Path) -> None:
        self.spawn("engine", "engine", "replay", str(source), "--session-id", self.session_id,
                   "--speed", "max", "--journal", str(self.journal))

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    async def latest(self, user: str, filters: list[str],
                     done: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        """Newest JSON document per topic, as ``user`` reads them, once ``done`` holds."""
        seen: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout), self.settings(user).client() as client:
                await client.subscribe([(f, 1) for f in filters])
                if done(seen):
                    return seen
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes) and payload:
                        seen[message.topic.value] = msgspec.json.decode(payload)
                    if done(seen):
                        return seen
        except TimeoutError:
            logs = {name: self.log(name)[-1500:] for name in self.procs}
            raise AssertionError(f"timed out; seen {str(seen)[:1500]}; logs {logs}") from None
        raise AssertionError("subscription ended")

    async def health(self, done: Callable[[dict[str, Any]], bool],
                     timeout: float = 90) -> dict[str, Any]:
        """Each consumer's retained health by name, read by the operator user."""
        prefix = topics.consumer_status(self.session_id, "")[: -len("/status")]

        def ready(seen: dict[str, Any]) -> bool:
            return done({t[len(prefix):].split("/")[0]: d for t, d in seen.items()})

        seen = await self.latest("operator", [topics.consumer_status(self.session_id, "+")],
                                 ready, timeout)
        return {t[len(prefix):].split("/")[0]: d for t, d in seen.items()}

    async def states(self, done: Callable[[dict[str, Any]], bool],
                     timeout: float = 90) -> dict[str, Any]:
        """Each projection's retained state by name, read by the board user."""
        wanted = {topics.state(self.session_id, name): name for name in PROJECTIONS}

        def ready(seen: dict[str, Any]) -> bool:
            return done({wanted[t]: d for t, d in seen.items() if t in wanted})

        seen = await self.latest("board", list(wanted), ready, timeout)
        return {wanted[t]: d for t, d in seen.items() if t in wanted}

    def last_seq(self) -> int:
        return sum(1 for line in self.journal.read_bytes().splitlines() if line.strip())

    def offline(self) -> dict[str, Any]:
        """``lapcast fold`` of the engine's journal: what every live state must equal."""
        events = list(load_source(str(self.journal)).events())
        folders = fold_all([load_consumer(name) for name in PROJECTIONS], events)
        return {name: msgspec.to_builtins(folder.view())
                for name, folder in zip(PROJECTIONS, folders, strict=True)}

    async def run_to_the_end(self, race_csv: Path) -> tuple[int, dict[str, Any]]:
        """Consumers first, then the engine at --speed max; every state at the last seq."""
        self.start_consumers()
        await self.health(lambda h: all(n in h and h[n].get("state") != "lost"
                                        for n in PROJECTIONS))
        self.start_engine(race_csv)
        status = await self.latest(
            "board", [topics.status(self.session_id)],
            lambda s: any(d.get("state") == "finished" for d in s.values()))
        last = next(iter(status.values()))["last_seq"]
        assert last == self.last_seq() > 7000
        states = await self.states(lambda s: len(s) == len(PROJECTIONS) and all(
            d["seq"] == last for d in s.values()))
        return last, states


@pytest.fixture
def secure_session(secure_broker: MosquittoProcess, secure_env: Env, session_id: str,
                   tmp_path: Path) -> Iterator[SecureSession]:
    session = SecureSession(secure_broker, secure_env, session_id, tmp_path)
    yield session
    for name in list(session.procs):
        session.stop(name)


class TestSecureEndToEnd:
    async def test_secure_engine_three_consumers_and_board_over_tls(
        self, secure_session: SecureSession, race_csv: Path, secure_env: Env
    ) -> None:
        """The race over TLS, each process its own user: live states equal the offline fold."""
        s = secure_session
        s.spawn("board", "board", "board", "--session", s.session_id, "--exit-when-done",
                stdout=subprocess.PIPE)
        last, states = await s.run_to_the_end(race_csv)
        offline = s.offline()
        for name in PROJECTIONS:
            assert states[name]["state"] == offline[name], name
        health = await s.health(lambda h: all(
            n in h and h[n]["last_seq"] == last for n in PROJECTIONS))
        for name in PROJECTIONS:
            assert (health[name]["refused"], health[name]["dead_letters"]) == (0, 0), name
        board = s.procs["board"]
        out, _ = await asyncio.to_thread(board.communicate, timeout=60)
        assert board.returncode == 0, s.log("board")
        assert "finished" in out.decode(errors="replace")
        for name in ("engine", *PROJECTIONS):
            assert s.stop(name) == 0, s.log(name)
        passwords = [secure_env(user)["LAPCAST_MQTT_PASSWORD"]
                     for user in ("engine", "board", *PROJECTIONS)]
        for name in s.procs:
            assert not [p for p in passwords if p in s.log(name)], f"{name} logged a password"


class TestSecureForgedMessages:
    async def test_secure_forged_messages_change_no_projection(
        self, secure_session: SecureSession, race_csv: Path
    ) -> None:
        """What gets past the broker is refused by every consumer, counted and dead-lettered."""
        s = secure_session
        last, before = await s.run_to_the_end(race_csv)
        events = list(load_source(str(s.journal)).events())
        template = next(e for e in reversed(events) if isinstance(e, LapCompleted))
        nxt = msgspec.structs.replace(template, seq=last + 1, lap=template.lap + 1,
                                      session_time_ms=template.session_time_ms + 90_000,
                                      lap_time_ms=1)  # would take the lead and every pole
        other_session = msgspec.structs.replace(nxt, session_id=f"{s.session_id}-other")
        oversized = msgspec.structs.replace(nxt, driver="X" * (1536 * 1024))
        forged = [
            (encode(other_session), False, "does not match the topic's session"),
            (encode(nxt), True, "retained message on the events topic"),
            (encode(oversized), False, "oversized"),
        ]
        letters: list[dict[str, Any]] = []

        async def collect() -> None:
            async with s.settings("operator").client() as client:
                await client.subscribe(topics.dead_letter(s.session_id), qos=1)
                subscribed.set()
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    letters.append(msgspec.json.decode(message.payload))

        subscribed = asyncio.Event()
        collector = asyncio.create_task(collect())
        await asyncio.wait_for(subscribed.wait(), 10)
        # Only the engine's user may write on the events topic: these get past the ACL.
        async with s.settings("engine").client() as engine:
            for payload, retain, _ in forged:
                await engine.publish(topics.events(s.session_id), payload, qos=1, retain=retain)
        health = await s.health(lambda h: all(
            n in h and h[n]["refused"] >= len(forged) for n in PROJECTIONS), timeout=30)
        for name in PROJECTIONS:
            assert health[name]["refused"] == len(forged), name
            assert health[name]["dead_letters"] == len(forged), name
            assert health[name]["last_seq"] == last, name
            assert health[name]["events_applied"] == last, name
        async with asyncio.timeout(10):
            while len(letters) < len(forged) * len(PROJECTIONS):
                await asyncio.sleep(0.05)
        collector.cancel()
        for name in PROJECTIONS:
            mine = [letter for letter in letters if letter["consumer"] == name]
            for (payload, _, reason), letter in zip(forged, mine, strict=True):
                assert reason in letter["reason"], letter["reason"]
                assert letter["topic"] == topics.events(s.session_id)
                assert letter["size"] == len(payload)
                kept = base64.b64decode(letter["payload_base64"])
                assert payload.startswith(kept)
        after = await s.states(lambda st: len(st) == len(PROJECTIONS))
        offline = s.offline()
        for name in PROJECTIONS:
            assert after[name] == before[name], name
            assert after[name]["state"] == offline[name], name


class TestSecureControl:
    async def test_secure_operator_steers_the_engine_and_the_board_cannot(
        self, secure_session: SecureSession, race_csv: Path
    ) -> None:
        """Race control pauses and resumes the replay over TLS; the board's try is refused."""
        s = secure_session
        s.spawn("engine", "engine", "replay", str(race_csv), "--session-id", s.session_id,
                "--speed", "1", "--journal", str(s.journal))
        status = [topics.status(s.session_id)]

        def state(name: str) -> Callable[[dict[str, Any]], bool]:
            return lambda seen: any(d.get("state") == name for d in seen.values())

        await s.latest("operator", status, state("running"), timeout=30)
        async with s.settings("board").client() as board:
            with pytest.raises(BrokerError, match=re.escape(topics.control(s.session_id))):
                await board.publish(topics.control(s.session_id), b'{"command":"pause"}',
                                    qos=1)
        async with s.settings("operator").client() as operator:
            await operator.publish(topics.control(s.session_id), b'{"command":"pause"}', qos=1)
            await s.latest("operator", status, state("paused"), timeout=10)
            await operator.publish(topics.control(s.session_id), b'{"command":"resume"}',
                                   qos=1)
            await s.latest("operator", status, state("running"), timeout=10)
        assert s.stop("engine") == 0, s.log("engine")
