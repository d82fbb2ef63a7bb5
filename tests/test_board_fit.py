"""The terminal board fits its terminal: compact at 80x24, full tables at 200x60 (tmux).

A real chain (Mosquitto, the consumers, a replay of the 2023 Bahrain qualifying) and
``lapcast board`` in a private tmux server of the size under test; the test reads the
screen tmux shows, so what is checked is what a person sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.subscribe
import pytest

from consumers.testing import consumer_process, stop_process
from lapcast.board.keys import QUIT, commands_for
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.contract import EngineLost, EngineStatus

REPO = Path(__file__).resolve().parents[1]
QUALIFYING = REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"
POLES = ("1:46.564", "1:52.290", "1:58.692")
LEADERS = ("#8", "#23", "#85")
TITLE = "#8 (Buemi / Hartley / Hirakawa) are champions"


class Terminal:
    """A private tmux server with one window of ``width`` x ``height``."""

    def __init__(self, tmp_path: Path, width: int, height: int) -> None:
        self.socket = f"lapcast-fit-{uuid.uuid4().hex[:8]}"
        self.size = (width, height)
        self.conf = tmp_path / "tmux.conf"
        self.conf.write_text(f"set -g history-limit 0\nset -g default-size {width}x{height}\n")

    def __call__(self, *args: str) -> str:
        # Without COLUMNS/LINES: the board must read the size from the terminal itself.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                              capture_output=True, text=True, check=True, timeout=10,
                              env=env).stdout

    def start(self, command: list[str]) -> None:
        width, height = self.size
        self("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "board",
             "-c", str(REPO), *command)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "board")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


@pytest.fixture
def chain(broker: MosquittoProcess, tmp_path: Path, session_id: str) -> Iterator[str]:
    """The consumers and a finished replay of the qualifying; yields the session id."""
    # Catch-up from the journal file: the replay exits when done, and a consumer that was
    # still connecting then (a loaded machine) must still find every event.
    procs = [consumer_process(name, broker_url=broker.url, session_id=session_id,
                              state_dir=tmp_path / "state" / name,
                              journal=tmp_path / "journal.jsonl")
             for name in ("running-order", "class-poles", "championship")]
    try:
        subprocess.run([sys.executable, "-m", "lapcast", "replay", str(QUALIFYING),
                        "--session-id", session_id, "--broker", broker.url, "--speed", "max",
                        "--journal", str(tmp_path / "journal.jsonl"), "--exit-when-done"],
                       check=True, capture_output=True, timeout=120)
        yield session_id
    finally:
        for proc in procs:
            stop_process(proc)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             on_fail: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{on_fail()}")


def board_on(terminal: Terminal, broker: MosquittoProcess, session_id: str) -> None:
    terminal.start([sys.executable, "-m", "lapcast", "board", "--session", session_id,
                    "--broker", broker.url])


class TestBoardFit:
    """What must stay on screen, at the sizes people use."""

    def test_80x24_keeps_leaders_poles_and_title(self, broker: MosquittoProcess,
                                                 chain: str, tmp_path: Path) -> None:
        """At 80x24: every class's leader, the three poles and the title statement."""
        terminal = Terminal(tmp_path, 80, 24)
        try:
            board_on(terminal, broker, chain)

            def complete() -> bool:
                screen = terminal.screen()
                return all(p in screen for p in POLES) and TITLE in screen
            wait_for(complete, 60, "the compact board", terminal.screen)
            screen = terminal.screen()
            lines = screen.splitlines()
            assert len(lines) <= 24 and max(map(len, lines)) <= 80
            assert "FIA World Endurance Championship" in lines[0]  # the header is not cut
            for leader, car_class in zip(LEADERS, ("HYPERCAR", "LMP2", "LMGTE Am"),
                                         strict=True):
                assert any(car_class in line and f" {leader} " in f"{line} " and " 1 " in line
                           for line in lines), (leader, screen)
            assert "a taller terminal shows the full tables" in screen
        finally:
            terminal.kill()

    def test_200x60_shows_the_full_tables(self, broker: MosquittoProcess, chain: str,
                                          tmp_path: Path) -> None:
        """At 200x60: every car of the field, sectors, poles and the championship."""
        terminal = Terminal(tmp_path, 200, 60)
        try:
            board_on(terminal, broker, chain)

            def complete() -> bool:
                screen = terminal.screen()
                return all(p in screen for p in POLES) and "#88" in screen
            wait_for(complete, 60, "the full board", terminal.screen)
            screen = terminal.screen()
            assert "taller terminal" not in screen
            for car in ("#8", "#63", "#88", "#777"):  # first and last of the classes
                assert car in screen, car
            assert "S3" in screen and "134" in screen
        finally:
            terminal.kill()


def engine(**fields: Any) -> EngineStatus:
    """A whole engine status, the figures not given zero."""
    doc: dict[str, Any] = {
        "state": "running", "session_id": "keys", "epoch": 1, "last_seq": 0,
        "total_events": 0, "session_time_ms": 0, "end_ms": 0, "speed": 1.0, "lag_ms": 0,
        "events_published": 0, "batch": 1, "encoding": "json"}
    doc.update(fields)
    return EngineStatus(**doc)


class TestCommandsForKeys:
    """The replay's keys, as control commands from the status the board shows."""

    def test_each_key(self) -> None:
        """Space toggles, + and - double and halve, arrows seek ±1/±10 min within the session."""
        status = engine(state="running", speed=4.0, session_time_ms=120_000, end_ms=700_000)
        assert commands_for(b" ", status) == [{"command": "pause"}]
        assert commands_for(b" ", engine(state="paused")) == [{"command": "resume"}]
        assert commands_for(b"+-", status) == [{"command": "speed", "factor": 8.0},
                                               {"command": "speed", "factor": 4.0}]
        assert commands_for(b"\x1b[C\x1b[D", status) == [{"command": "seek", "to": 180_000},
                                                         {"command": "seek", "to": 120_000}]
        assert commands_for(b"\x1b[B", status) == [{"command": "seek", "to": 0}]
        assert commands_for(b"\x1b[A\x1b[A", status) == [{"command": "seek", "to": 700_000},
                                                         {"command": "seek", "to": 700_000}]
        assert commands_for(b"-", engine(state="running", speed="max")) == [
            {"command": "speed", "factor": 1024.0}]
        assert commands_for(b"q", status) == [QUIT]

    def test_keys_before_a_status_and_after_the_last_will(self) -> None:
        """No status yet: 1x from 0. The engine's last will: speed and clock unknown."""
        assert commands_for(b" +", None) == [{"command": "pause"},
                                             {"command": "speed", "factor": 2.0}]
        lost = EngineLost(state="lost")
        assert commands_for(b"+-\x1b[C", lost) == [{"command": "speed", "factor": 1024.0},
                                                    {"command": "seek", "to": 60_000}]


class TestBoardControl:
    """`lapcast board --control` in a terminal drives a running replay."""

    def test_space_pauses_and_resumes(self, broker: MosquittoProcess, tmp_path: Path,
                                      session_id: str) -> None:
        """Space: engine status `paused`; space again: `running`; q: the board quits."""
        replay = subprocess.Popen(
            [sys.executable, "-m", "lapcast", "replay", str(QUALIFYING), "--session-id",
             session_id, "--broker", broker.url, "--speed", "10",
             "--journal", str(tmp_path / "journal.jsonl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        terminal = Terminal(tmp_path, 100, 30)
        try:
            terminal.start(["sh", "-c", '"$0" "$@"; echo "exit status $?"; exec sleep 600',
                            sys.executable, "-m", "lapcast", "board", "--control",
                            "--session", session_id, "--broker", broker.url])
            wait_for(lambda: engine_state(broker, session_id) == "running", 30, "the replay",
                     terminal.screen)
            wait_for(lambda: "engine running" in terminal.screen(), 30, "the board",
                     terminal.screen)
            terminal("send-keys", "-t", "board", " ")
            wait_for(lambda: engine_state(broker, session_id) == "paused", 10, "paused",
                     terminal.screen)
            terminal("send-keys", "-t", "board", " ")
            wait_for(lambda: engine_state(broker, session_id) == "running", 10, "running",
                     terminal.screen)
            terminal("send-keys", "-t", "board", "q")
            wait_for(lambda: "exit status 0" in terminal.screen(), 10, "the board to quit",
                     terminal.screen)
        finally:
            terminal.kill()
            stop_process(replay)


def engine_state(broker: MosquittoProcess, session_id: str) -> str:
    """The engine's retained status, read from the broker."""
    message = paho.mqtt.subscribe.simple(topics.status(session_id), hostname="127.0.0.1",
                                         port=broker.port, retained=True)
    return str(json.loads(message.payload)["state"])
