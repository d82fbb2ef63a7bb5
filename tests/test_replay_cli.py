"""`lapcast replay` as a user runs it: real subprocesses against a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.journal import scan
from simulator.replay.testing import Recorder

LAPCAST = [sys.executable, "-m", "lapcast"]


def _fold(path: Path) -> dict[str, Any]:
    out = subprocess.run([*LAPCAST, "fold", str(path), "--json"], capture_output=True,
                         check=True, timeout=120)
    document: dict[str, Any] = msgspec.json.decode(out.stdout)
    document.pop("source", None)
    return document


def _statuses(recorder: Recorder, session: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(m.payload) for m in recorder.on(topics.status(session))]


class TestReplayCommand:
    def test_exit_when_done_and_the_journal_folds_like_the_source(
            self, broker: MosquittoProcess, race_csv: Path, session_id: str,
            tmp_path: Path) -> None:
        """`lapcast replay race.csv --speed max --exit-when-done` exits 0 once done; folding
        its journal gives what folding the CSV gives; a second run appends epoch 2."""
        journal = tmp_path / "journal.jsonl"
        command = [*LAPCAST, "replay", str(race_csv), "--broker", broker.url, "--speed",
                   "max", "--session-id", session_id, "--journal", str(journal),
                   "--exit-when-done"]
        first = subprocess.run(command, capture_output=True, timeout=120)
        assert first.returncode == 0, first.stderr.decode()
        assert _fold(journal) == _fold(race_csv) | {"session_id": session_id}
        second = subprocess.run([*command, "--batch", "50"], capture_output=True, timeout=120)
        assert second.returncode == 0, second.stderr.decode()
        index, _ = scan(journal)
        assert sorted(index.epochs) == [1, 2]
        assert index.last_seq(1) == index.last_seq(2)
        assert _fold(journal)["events"] == index.last_seq(2)

    async def test_sigkill_leaves_lost_and_sigterm_stopped(
            self, broker: MosquittoProcess, race_csv: Path, session_id: str,
            tmp_path: Path) -> None:
        """Killed, the engine's last will marks the status lost; stopped with SIGTERM it
        exits 0 and says stopped."""
        settings = parse_broker_url(broker.url)
        status = topics.status(session_id)
        events = topics.events(session_id)
        for sig, final in ((signal.SIGKILL, "lost"), (signal.SIGTERM, "stopped")):
            async with Recorder(settings, [status, events]) as recorder:
                proc = await asyncio.create_subprocess_exec(
                    *LAPCAST, "replay", str(race_csv), "--broker", broker.url,
                    "--session-id", session_id, "--speed", "60",
                    "--journal", str(tmp_path / f"{sig}.jsonl"),
                    stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
                await recorder.wait_for(lambda r: any(
                    d["state"] == "running" and d["events_published"] > 0
                    for d in _statuses(r, session_id)))
                proc.send_signal(sig)
                code = await asyncio.wait_for(proc.wait(), 20)
                await recorder.wait_for(
                    lambda r, final=final: _statuses(r, session_id)[-1]["state"] == final)
            journal = (tmp_path / f"{sig}.jsonl").read_bytes().split(b"\n")[:-1]
            if sig == signal.SIGTERM:
                assert code == 0
            else:
                assert _statuses(recorder, session_id)[-1] == {"state": "lost"}
            # Write-ahead: whatever a subscriber saw is in the journal, even after SIGKILL.
            seen = [m.payload for m in recorder.on(events)]
            assert seen and seen == journal[:len(seen)]

    def test_bad_arguments_are_one_clear_line(self, race_csv: Path, tmp_path: Path) -> None:
        """A start past the end, a missing file or a zero batch exit 2 with a message."""
        cases = [
            (["--from", "9:00:00"], "is past the end of the session (8:03:30.433)"),
            (["--batch", "0"], "--batch: batch 0 is out of range: a whole number from 1"),
            (["--speed", "-1"], "--speed: speed '-1' is out of range: from 0.01"),
        ]
        for extra, message in cases:
            run = subprocess.run([*LAPCAST, "replay", str(race_csv), "--broker",
                                  "mqtt://127.0.0.1:1", "--journal", str(tmp_path / "j.jsonl"),
                                  *extra], capture_output=True, timeout=60)
            assert run.returncode == 2
            assert message in run.stderr.decode()
        run = subprocess.run([*LAPCAST, "replay", str(tmp_path / "nope.csv")],
                             capture_output=True, timeout=60)
        assert run.returncode == 2 and "nope.csv: no such file" in run.stderr.decode()


class TestTerminal:
    async def test_keys_steer_the_replay_and_a_progress_line_shows(
            self, broker: MosquittoProcess, race_csv: Path, session_id: str,
            tmp_path: Path) -> None:
        """On a terminal: space pauses, + doubles the speed, q stops cleanly; stderr shows
        the progress line."""
        settings = parse_broker_url(broker.url)
        status = topics.status(session_id)
        master, slave = pty.openpty()
        output = bytearray()

        def drain() -> None:  # the child must never block on a full terminal
            with contextlib.suppress(OSError):
                while chunk := os.read(master, 4096):
                    output.extend(chunk)

        async def shown(text: bytes) -> None:  # the progress line ticks every 0.25 s
            async with asyncio.timeout(5):
                while text not in output:
                    await asyncio.sleep(0.05)

        async with Recorder(settings, [status]) as recorder:
            proc = await asyncio.create_subprocess_exec(
                *LAPCAST, "replay", str(race_csv), "--broker", broker.url,
                "--session-id", session_id, "--speed", "30",
                "--journal", str(tmp_path / "tty.jsonl"),
                stdin=slave, stdout=slave, stderr=slave)
            os.close(slave)
            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            try:
                await recorder.wait_for(lambda r: any(
                    d["state"] == "running" for d in _statuses(r, session_id)))
                os.write(master, b" ")
                await recorder.wait_for(lambda r: _statuses(r, session_id)[-1]["state"]
                                        == "paused")
                await shown(b"paused ")
                os.write(master, b"+")
                await recorder.wait_for(lambda r: _statuses(r, session_id)[-1]["speed"]
                                        == 60.0)
                await shown(b"speed 60x")
                os.write(master, b" q")
                code = await asyncio.wait_for(proc.wait(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await recorder.wait_for(lambda r: _statuses(r, session_id)[-1]["state"]
                                    == "stopped")
        os.close(master)
        reader.join(5)
        assert code == 0
        text = output.decode(errors="replace")
        assert "7,510 events" in text and "speed 30x" in text and "lag" in text


class TestBadNumbers:
    @pytest.mark.parametrize("option", [
        ["--speed", "5e-324"], ["--speed", "1e-300"], ["--speed", "inf"], ["--speed", "nan"],
        ["--speed", "-2"], ["--speed", "fast"], ["--speed", "2e7"], ["--batch", "0"],
        ["--batch", "10001"], ["--batch", "1.5"], ["--window", "0"], ["--window", "65536"],
        ["--linger-ms", "nan"], ["--linger-ms", "-1"], ["--linger-ms", "1001"],
        ["--from", "-5"], ["--from", "soon"],
    ])
    def test_an_out_of_range_number_is_one_line_and_exit_2(self, option: list[str],
                                                          tmp_path: Path) -> None:
        """Every number of `lapcast replay` is checked before anything starts: one line
        naming the option and the range, exit 2, no traceback."""
        done = subprocess.run([*LAPCAST, "replay", "synth", "--cars", "2", "--laps", "1",
                               "--broker", "mqtt://127.0.0.1:1", "--journal",
                               str(tmp_path / "j.jsonl"), *option],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"lapcast replay: {option[0]}:"), lines
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "j.jsonl").exists()
