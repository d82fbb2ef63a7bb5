"""The engine's own SessionStarted reaches a consumer at the largest field synth accepts.

``lapcast synth`` accepts at most ``MAX_CARS`` cars, so that the SessionStarted (every
entry in one message, ~170 bytes a car) fits one broker packet; a consumer lets a
message opening with it through up to ``MAX_META_BYTES``, whatever ``--max-payload-bytes``
says: no dead letter, no false alarm.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumers import guard
from consumers.testing import consumer_process, stop_process, wait_for
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.contract import Batch, LapCompleted, encode
from simulator.synth import SynthSpec, events
from simulator.synth.spec import MAX_CARS

CLI = [sys.executable, "-m", "lapcast"]


class TestMetaLimit:
    def test_session_started_alone_or_first_of_a_batch_passes_a_small_limit(self) -> None:
        """A 3.4 MB SessionStarted passes the 1 MiB limit; a lap message that big does not."""
        stream = events(SynthSpec(cars=MAX_CARS, laps=1, seed=1))
        started = next(stream)
        laps = [e for e, _ in zip(stream, range(63), strict=False)]
        alone = encode(started)
        assert 1024 * 1024 < len(alone) <= guard.MAX_META_BYTES
        for encoding in ("json", "msgpack"):
            for payload in (encode(started, encoding),
                            encode(Batch(events=[started, *laps]), encoding)):
                checked = guard.check_events(payload, retained=False,
                                             session_id=started.session_id,
                                             max_bytes=1024 * 1024)
                assert isinstance(checked, list), checked
        lap = next(e for e in laps if isinstance(e, LapCompleted))
        big = encode(Batch(events=[lap] * 20_000))
        assert len(big) > 1024 * 1024
        refused = guard.check_events(big, retained=False, session_id=lap.session_id,
                                     max_bytes=1024 * 1024)
        assert isinstance(refused, guard.Refusal) and "oversized" in refused.reason

    def test_synth_refuses_a_field_beyond_the_limit_with_the_reason(self) -> None:
        """One car more than MAX_CARS: one line saying why, exit 2."""
        result = subprocess.run([*CLI, "synth", "--cars", str(MAX_CARS + 1), "--laps", "1"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert f"cars must be 1..{MAX_CARS}" in result.stderr
        assert "one MQTT message" in result.stderr


class TestLargestField:
    @pytest.mark.parametrize("batch", ["1", "64"])
    def test_consumer_gets_the_meta_without_a_dead_letter(
        self, broker: MosquittoProcess, session_id: str, tmp_path: Path, batch: str
    ) -> None:
        """MAX_CARS cars replayed at max speed: the consumer folds all, dead letters 0."""
        field = tmp_path / "field.jsonl"
        subprocess.run([*CLI, "synth", "--cars", str(MAX_CARS), "--laps", "1", "--seed", "2",
                        "--no-progress", "--session-id", session_id, "--out", str(field)],
                       check=True, capture_output=True, timeout=60)
        total = sum(1 for _ in field.open("rb"))
        consumer = consumer_process("class-poles", broker_url=broker.url, session_id=session_id,
                                    state_dir=tmp_path / "state",
                                    log_file=tmp_path / "consumer.log")
        try:
            import asyncio

            async def scenario() -> dict[str, object]:
                await wait_for(broker.url, topics.consumer_status(session_id, "class-poles"),
                               lambda d: d.get("state") != "lost")
                engine = subprocess.run(
                    [*CLI, "replay", str(field), "--broker", broker.url, "--speed", "max",
                     "--batch", batch, "--journal", str(tmp_path / "journal.jsonl"),
                     "--exit-when-done"], capture_output=True, text=True, timeout=120)
                assert engine.returncode == 0, engine.stderr
                health: dict[str, object] = await wait_for(
                    broker.url, topics.consumer_status(session_id, "class-poles"),
                    lambda d: d.get("last_seq") == total, timeout=90)
                return health

            health = asyncio.run(scenario())
        finally:
            assert stop_process(consumer) == 0
        assert health["dead_letters"] == 0 and health["refused"] == 0, health
