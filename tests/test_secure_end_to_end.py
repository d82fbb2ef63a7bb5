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
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.secure import PROJECTIONS, Env, SecureSession

from simulator import topics
from simulator.contract import LapCompleted, encode
from simulator.errors import BrokerError
from simulator.sources import load_source

pytestmark = pytest.mark.broker


class TestSecureEndToEnd:
    async def test_secure_engine_three_consumers_and_board_over_tls(
        self, secure_session: SecureSession, race_csv: Path, secure_env: Env
    ) -> None:
        """The race over TLS, each process its own user: live states equal the offline fold."""
        s = secure_session
        s.start_board("--exit-when-done")
        last, states = await s.run_to_the_end(race_csv)
        offline = s.offline()
        for name in PROJECTIONS:
            assert states[name]["state"] == offline[name], name
        health = await s.health(lambda h: all(
            n in h and h[n]["last_seq"] == last for n in PROJECTIONS))
        for name in PROJECTIONS:
            assert (health[name]["refused"], health[name]["dead_letters"]) == (0, 0), name
        assert await asyncio.to_thread(s.wait, "board", 60) == 0, s.log("board")
        assert "finished" in s.output("board")
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
