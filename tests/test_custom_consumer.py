"""A user's own consumer: the example plug-in, installed through its entry point, run live."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from consumers.folding import fold_all
from consumers.testing import (
    TestPublisher,
    consumer_process,
    stop_process,
    wait_for,
    write_journal,
)
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.sources import load_source

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "stint-lengths"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example installed with pip into a folder of its own (as a user would install it)."""
    target = tmp_path_factory.mktemp("plugin")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path_factory.mktemp("plugin-src") / "stint-lengths"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    yield target


def _env(installed: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(installed)}


class TestExamplePlugin:
    def test_listed_by_lapcast_consumers(self, installed: Path) -> None:
        """`lapcast consumers` shows the plug-in next to the built-in consumers."""
        out = subprocess.run(
            [sys.executable, "-m", "lapcast", "consumers", "--json"],
            env=_env(installed), check=True, capture_output=True, text=True,
        ).stdout
        rows = {row["name"]: row for row in json.loads(out)}
        assert rows["stint-lengths"]["entry_point"] == "lapcast_stint_lengths:CONSUMER"
        assert rows["stint-lengths"]["description"] == "laps of each stint, per driver"
        assert {"running-order", "class-poles"} <= rows.keys()

    def test_consumer_code_is_short(self) -> None:
        """The worked example stays under 30 lines of code (blank lines and comments aside)."""
        lines = (EXAMPLE / "lapcast_stint_lengths.py").read_text().splitlines()
        code = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        assert len(code) < 30

    async def test_runs_live_end_to_end(self, installed: Path, broker: MosquittoProcess,
                                        session_id: str, race_csv: Path,
                                        tmp_path: Path) -> None:
        """`lapcast consume stint-lengths` on the real race equals the plug-in's offline fold."""
        sys.path.insert(0, str(installed))
        try:
            from lapcast_stint_lengths import CONSUMER
        finally:
            sys.path.remove(str(installed))
        events = list(load_source(str(race_csv), session_id=session_id).events())
        journal = tmp_path / "journal.jsonl"
        proc = consumer_process(
            "stint-lengths", broker_url=broker.url, session_id=session_id,
            state_dir=tmp_path / "state", journal=journal, pythonpath=[installed],
            log_file=tmp_path / "consumer.log",
        )
        try:
            await wait_for(broker.url, topics.consumer_status(session_id, "stint-lengths"),
                           lambda d: d.get("state") != "lost")
            half = len(events) // 2
            write_journal(journal, events[:half])  # the first half happened before
            async with TestPublisher(broker.url, session_id) as pub:
                for start in range(half, len(events), 50):
                    part = events[start:start + 50]
                    write_journal(journal, part)
                    await pub.events(part, batch=50)
            doc = await wait_for(broker.url, topics.state(session_id, "stint-lengths"),
                                 lambda d: d["seq"] == len(events), timeout=60)
        finally:
            assert stop_process(proc) == 0
        expected = msgspec.to_builtins(fold_all([CONSUMER], events)[0].view())
        assert doc["state"] == expected
        # The real race: #8 Toyota stopped 9 times, so its drivers drove 10 stints.
        assert sum(len(v) for k, v in expected.items() if k.startswith("#8 ")) == 10
