"""``lapcast demo``: the whole chain under a terminal, and nothing left running afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.procs import alive, cmdline, descendants

from consumers.registry import ALL_BUILTIN

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "wec-2023-bahrain-qualifying.toml"
# What the final screen of the Bahrain qualifying must show.
POLES = ("#8  1:46.564", "#23  1:52.290", "#85  1:58.692")
# Kobayashi's lap that stands as the Hypercar pole until its LapDeleted at 1:03:20.
PROVISIONAL = re.compile(r"HYPERCAR\s+#7\s+1:46\.402\s+Kamui Kobayashi")
# The championship line: with the pole point, #8 takes the title with 3rd even if #7 wins.
CLINCH = ("#8 (Buemi / Hartley / Hirakawa) are champions", "even if #7 wins (157 vs 156)")


class Tmux:
    """A private tmux server (its own socket): one 200x60 window running one command.

    The command runs under a shell that ignores Ctrl-C itself (the command does not
    inherit that: a trapped signal is reset on exec) and prints the command's exit
    status once it ends, so the test reads it on the screen under the last frame.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"lapcast-test-{uuid.uuid4().hex[:8]}"
        self.conf = tmp_path / "tmux.conf"
        self.conf.write_text("set -g history-limit 0\nset -g default-size 200x60\n")

    def __call__(self, *args: str) -> str:
        # An explicit environment: with none, the child gets the C-level one, where
        # readline (imported under pytest) has put COLUMNS=80 and LINES=24.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        result = subprocess.run(["tmux", "-L", self.socket, "-f", str(self.conf), *args],
                                capture_output=True, text=True, check=True, timeout=10,
                                env=env)
        return result.stdout

    def start(self, command: list[str]) -> int:
        """Run ``command``; return the pid of the shell around it."""
        wrapper = 'trap : INT; "$0" "$@"; echo "exit status $?"; exec sleep 600'
        self("new-session", "-d", "-x", "200", "-y", "60", "-s", "demo", "-c", str(ROOT),
             "sh", "-c", wrapper, *command)
        return int(self("display-message", "-p", "-t", "demo", "#{pane_pid}").strip())

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "demo")

    def exit_status(self) -> int | None:
        """The command's exit status once it has ended (128 + N if a signal N killed it)."""
        match = re.search(r"^exit status (\d+)$", self.screen(), re.MULTILINE)
        return int(match.group(1)) if match else None

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    server = Tmux(tmp_path)
    try:
        yield server
    finally:
        server.kill()


def line_of(screen: str, needle: str) -> str:
    return next((line for line in screen.splitlines() if needle in line), "")


def wait_for(predicate, timeout: float, what: str, on_fail=lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{on_fail()}")


@pytest.mark.broker
class TestDemoInTerminal:
    def test_bahrain_demo_final_screen_and_ctrl_c(self, tmux: Tmux) -> None:
        """At 200x the board ends on the class poles and the title line; Ctrl-C leaves nothing."""
        assert SCENARIO.exists(), f"the Bahrain scenario is missing: {SCENARIO}"
        shell = tmux.start([sys.executable, "-m", "lapcast", "demo", "--speed", "200"])
        started: set[int] = set()
        provisional: list[str] = []

        def final_screen() -> bool:
            started.update(descendants(shell))
            screen = tmux.screen()
            if PROVISIONAL.search(screen):
                provisional.append(screen)
            return (all(pole in screen for pole in POLES) and "engine finished" in screen
                    and "board behind 0 events" in screen)

        wait_for(final_screen, 90, "the final board", tmux.screen)
        screen = tmux.screen()
        # Both moments of the correction: #7's lap on provisional pole, then deleted.
        assert provisional, "the board never showed #7 on provisional pole"
        assert "#7 1:46.402 deleted at 1:03:20.000" in screen
        assert all(part in screen for part in CLINCH), screen
        assert "134" in line_of(screen, "Buemi / Hartley / Hirakawa")  # 133 + the pole point
        # The engine keeps serving catch-up after the session: the demo keeps the board.
        time.sleep(1.0)
        assert tmux.exit_status() is None
        names = [cmdline(pid) for pid in started if alive(pid)]
        assert sum("lapcast demo" in n for n in names) == 1, names
        assert sum("mosquitto" in n for n in names) == 1, names
        assert sum("lapcast replay" in n for n in names) == 1, names
        # One consumer per built-in projection (the lap chart too).
        assert sum("lapcast consume" in n for n in names) == len(ALL_BUILTIN), names

        tmux("send-keys", "-t", "demo", "C-c")
        wait_for(lambda: tmux.exit_status() is not None, 20, "the demo to exit", tmux.screen)
        assert tmux.exit_status() == 0
        left = [f"{pid}: {cmdline(pid)}" for pid in started if alive(pid)]
        assert not left, left
        # The last frame stays on the terminal.
        assert all(pole in tmux.screen() for pole in POLES)


@pytest.mark.broker
class TestDemoCommand:
    def _run(self, *args: str, timeout: float = 90,
             act: Callable[[subprocess.Popen[str], set[int]], None] | None = None,
             ) -> tuple[int, str, str, set[int]]:
        """Run ``lapcast demo`` without a terminal; also collect every process it started.

        ``act`` is called once, when the broker, the engine and the three consumers run.
        """
        env = {**os.environ, "COLUMNS": "200", "LINES": "60"}
        proc = subprocess.Popen([sys.executable, "-m", "lapcast", "demo", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        started: set[int] = set()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            started |= descendants(proc.pid)
            if act is not None and len([p for p in started if alive(p)]) >= 5:
                time.sleep(1.0)  # let them connect: the demo is running, not starting
                act(proc, started)
                act = None
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        return proc.returncode, out, err, started

    def test_exit_when_done(self) -> None:
        """With --exit-when-done the demo prints the final board, stops everything, exits 0."""
        code, out, err, started = self._run("--speed", "max", "--exit-when-done")
        assert code == 0, err
        assert all(pole in out for pole in POLES), out
        assert all(part in out for part in CLINCH), out
        assert len(started) >= 6  # mosquitto, the engine, four consumers
        assert not [pid for pid in started if alive(pid)]

    def test_failing_child_stops_everything(self, tmp_path: Path) -> None:
        """A part that fails (the engine, on a broken scenario) is named; nothing is left."""
        broken = tmp_path / "broken.toml"
        broken.write_text("[session\nseries = 'x'\n")
        code, _, err, started = self._run("--source", str(broken), timeout=60)
        assert code == 2
        assert "replay exited with" in err and "broken.toml" in err
        assert not [pid for pid in started if alive(pid)]

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
    def test_stop_signal_stops_everything(self, sig: signal.Signals) -> None:
        """SIGTERM, SIGHUP (the terminal closed) and SIGINT stop the demo cleanly, exit 0."""
        code, out, err, started = self._run(
            "--speed", "1", act=lambda proc, _: proc.send_signal(sig), timeout=60)
        assert code == 0, err
        assert "clock " in out  # the board's last frame
        assert len(started) >= 5
        assert not [pid for pid in started if alive(pid)]

    def test_sigkill_of_the_demo_still_stops_its_children(self) -> None:
        """SIGKILL cannot be caught: the children, tethered (lapcast.tether), get SIGTERM
        from the kernel when the demo dies, and nothing is left running."""
        code, _, _, started = self._run("--speed", "1", act=lambda proc, _: proc.kill(),
                                        timeout=60)
        assert code == -signal.SIGKILL
        assert len(started) >= 5
        deadline = time.monotonic() + 15
        while [pid for pid in started if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [f"{pid}: {cmdline(pid)}" for pid in started if alive(pid)]

    def test_dead_consumer_is_named_and_the_rest_stopped(self) -> None:
        """A consumer killed under the demo ends it, named, and takes nothing else down late."""
        def kill_championship(proc: subprocess.Popen[str], started: set[int]) -> None:
            [victim] = [p for p in started if "consume championship" in cmdline(p)]
            os.kill(victim, signal.SIGKILL)

        code, _, err, started = self._run("--speed", "1", act=kill_championship, timeout=60)
        assert code == 2
        assert "championship was killed by SIGKILL" in err
        assert not [pid for pid in started if alive(pid)]

    def test_bad_arguments(self) -> None:
        """A speed of 0 or a missing source is refused before anything starts."""
        code, _, err, started = self._run("--speed", "0")
        assert code == 2 and "out of range" in err
        code, _, err, _ = self._run("--source", "no/such.toml")
        assert code == 2 and "no/such.toml: no such file" in err
        assert not started


@pytest.mark.broker
class TestDemoWeb:
    def test_web_page_is_served_with_the_chain_and_stopped_with_it(self) -> None:
        """``lapcast demo --web`` prints the page's URL (with its control token); the page
        serves the session's live states, lap chart included; Ctrl-C stops it all."""
        env = {**os.environ, "COLUMNS": "200", "LINES": "60"}
        proc = subprocess.Popen([sys.executable, "-m", "lapcast", "demo", "--web", "--speed",
                                 "max"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        started: set[int] = set()
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            started |= descendants(proc.pid)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=\S+", first)
            assert match, first
            snapshot: dict[str, object] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                started |= descendants(proc.pid)
                with urllib.request.urlopen(match.group(1) + "api/snapshot", timeout=5) as r:
                    snapshot = json.loads(r.read())
                text = json.dumps(snapshot)
                if all(pole in text for pole in ("106564", "112290", "118692")) and \
                        "lap-chart" in text:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"the page never showed the poles: {snapshot}")
            assert snapshot.get("control") is True
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert len(started) >= 7  # mosquitto, the engine, four consumers, the page
        assert not [pid for pid in started if alive(pid)]
