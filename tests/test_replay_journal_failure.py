"""Write-ahead under a failing disk: nothing is published that the journal lacks.

An injected writer failure (the journal's file raises ENOSPC after N bytes) and a
real 256 KB tmpfs (the tests run as root): the engine stops publishing, its retained
status says ``error`` naming the journal, ``lapcast replay`` exits with one line, and
every event a real subscriber received is a complete line of the journal.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.journal import JournalError, scan
from simulator.replay import ReplayEngine, ReplaySettings
from simulator.replay.testing import Recorder, generated_source

LAPCAST = [sys.executable, "-m", "lapcast"]


class FullDisk:
    """A journal file that takes ``room`` more bytes, then raises ENOSPC (a part of the
    write that fits goes through first, as a real full disk does)."""

    def __init__(self, inner: Any, room: int) -> None:
        self.inner = inner
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.inner.write(data[:self.room])
            self.inner.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _journaled(path: Path) -> dict[tuple[int, int], bytes]:
    """The complete lines of a journal by (epoch, seq) (a torn tail left out)."""
    index, _ = scan(path)
    lines = path.read_bytes()[:index.size].split(b"\n")[:-1]
    out = {}
    for line in lines:
        event = msgspec.json.decode(line)
        out[(event["epoch"], event["seq"])] = line
    return out


def _published(recorder: Recorder, session_id: str) -> dict[tuple[int, int], bytes]:
    return {(m["epoch"], m["seq"]): p for p, m in
            ((r.payload, msgspec.json.decode(r.payload))
             for r in recorder.on(topics.events(session_id)))}


def _last_status(recorder: Recorder, session_id: str) -> dict[str, Any]:
    docs = recorder.on(topics.status(session_id))
    return msgspec.json.decode(docs[-1].payload) if docs else {}


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KB tmpfs, unmounted afterwards."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


class TestFailingJournal:
    async def test_an_injected_write_failure_stops_publishing(
            self, broker: MosquittoProcess, session_id: str, tmp_path: Path) -> None:
        """ENOSPC after 20 KB: run() raises a JournalError naming the journal, the
        retained status says error with the reason, and published ⊆ journaled."""
        settings = parse_broker_url(broker.url)
        journal = tmp_path / "j.jsonl"
        engine = ReplayEngine(generated_source(session_id, cars=30, laps=100), ReplaySettings(
            broker=settings, journal_path=journal, speed=None, batch=1))
        async with Recorder(settings, [topics.events(session_id),
                                       topics.status(session_id)]) as recorder:
            task = asyncio.create_task(engine.run())
            await engine.wait_connected()
            assert engine.write_ahead is not None
            writer = engine.write_ahead.journal
            writer._file = FullDisk(writer._file, room=20_000)  # type: ignore[assignment]
            started = time.monotonic()
            with pytest.raises(JournalError, match=r"No space left on device \(errno 28\)"):
                await asyncio.wait_for(task, 30)
            # At once: the messages never published are not waited for (stop_grace_s 5).
            assert time.monotonic() - started < 2.0
            await recorder.wait_for(lambda r: _last_status(r, session_id).get("state")
                                    == "error")
            await asyncio.sleep(0.2)  # anything still on its way
        status = _last_status(recorder, session_id)
        assert str(journal) in status["reason"] and "errno 28" in status["reason"]
        journaled = _journaled(journal)
        published = _published(recorder, session_id)
        assert published and len(journaled) < engine.total_events
        assert set(published) <= set(journaled)
        assert all(journaled[key] == payload for key, payload in published.items())

    async def test_a_full_tmpfs_ends_lapcast_replay_with_one_line(
            self, broker: MosquittoProcess, session_id: str, small_tmpfs: Path) -> None:
        """The journal on a real 256 KB tmpfs: `lapcast replay` stops publishing when the
        disk is full, exits 2 with one line naming the journal, no traceback; every event
        a subscriber got is a complete journal line."""
        settings = parse_broker_url(broker.url)
        journal = small_tmpfs / "j.jsonl"
        async with Recorder(settings, [topics.events(session_id),
                                       topics.status(session_id)]) as recorder:
            proc = await asyncio.create_subprocess_exec(
                *LAPCAST, "replay", "synth", "--cars", "40", "--laps", "200", "--seed", "3",
                "--session-id", session_id, "--broker", broker.url, "--speed", "max",
                "--journal", str(journal), "--exit-when-done",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 120)
            await recorder.wait_for(lambda r: _last_status(r, session_id).get("state")
                                    == "error")
            await asyncio.sleep(0.2)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 2, err.decode()
        assert len(lines) == 1 and lines[0].startswith(f"lapcast replay: journal {journal}: ")
        assert "No space left on device" in lines[0]
        journaled = _journaled(journal)
        published = _published(recorder, session_id)
        assert published and set(published) <= set(journaled)
        assert all(journaled[key] == payload for key, payload in published.items())
        assert _last_status(recorder, session_id)["reason"] in lines[0]


class TestJournalPaths:
    @pytest.mark.parametrize("where", ["a directory", "under a file", "read-only",
                                       "no such folder, cannot create"])
    def test_an_unusable_journal_path_is_one_line_and_exit_2(
            self, where: str, tmp_path: Path) -> None:
        """A journal that cannot be opened: one line naming the path, exit 2."""
        readonly = tmp_path / "ro"
        path = {
            "a directory": tmp_path,
            "under a file": tmp_path / "file" / "j.jsonl",
            "read-only": readonly / "j.jsonl",
            "no such folder, cannot create": Path("/proc/lapcast-nope/j.jsonl"),
        }[where]
        (tmp_path / "file").write_text("x")
        readonly.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(readonly)],
                       check=True)
        try:
            done = subprocess.run(
                [*LAPCAST, "replay", "synth", "--cars", "2", "--laps", "1", "--broker",
                 "mqtt://127.0.0.1:1", "--journal", str(path)],
                capture_output=True, text=True, timeout=60)
        finally:
            subprocess.run(["umount", "-l", str(readonly)], check=True)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        # The CLI checks the path before it loads anything (lapcast.cli.common); the
        # engine's own check (JournalWriter) says the same for a library caller.
        assert len(lines) == 1 and "journal" in lines[0] and str(path) in lines[0], lines
        assert "Traceback" not in done.stderr
