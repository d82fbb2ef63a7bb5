"""Tethered children: SIGTERM when their parent dies, even by SIGKILL (Linux's PDEATHSIG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.procs import alive

from lapcast.tether import tethered

# A parent that starts one tethered child (which notes SIGTERM in a file), prints its
# pid and waits to be killed.
PARENT = """
import subprocess, sys, time
from lapcast.tether import tethered
child = subprocess.Popen(tethered([sys.executable, "-c", sys.argv[1]]), start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""

CHILD = """
import signal, sys, time
def stop(*_):
    open({note!r}, "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""


def test_the_command_runs_as_itself_under_the_same_pid(tmp_path: Path) -> None:
    out = subprocess.run(tethered([sys.executable, "-c", "import os; print(os.getpid())"]),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().isdigit()
    done = subprocess.run(tethered(["sh", "-c", "exit 7"]))
    assert done.returncode == 7


def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    note = tmp_path / "note"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD.format(note=str(note))],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the child has set its handler
    assert alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert note.read_text() == "SIGTERM"  # a clean stop, not a kill


def test_elsewhere_than_linux_the_command_runs_untouched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tethered(["mosquitto", "-c", "x.conf"]) == ["mosquitto", "-c", "x.conf"]
