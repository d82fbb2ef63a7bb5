"""The processes a stress run starts, and what each cost: peak memory and CPU time.

A child's peak resident memory comes from the kernel when it is reaped (``wait4``'s
``ru_maxrss``), so a peak reached just before exit is not missed; while it runs,
``/proc/PID/status`` (``VmHWM``) shows the peak so far.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lapcast.tether import tethered

__all__ = ["Child", "Usage", "vm_hwm_mb"]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """What a finished child cost."""

    peak_rss_mb: float
    cpu_s: float
    returncode: int


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory so far of a running process (Linux), None if unknown."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class Child:
    """One child process, its output in ``log``, reaped with its resource usage."""

    def __init__(self, name: str, argv: list[str], log: Path,
                 env: dict[str, str] | None = None, *, errors: Path | None = None) -> None:
        """Output (and errors, unless ``errors`` names another file) go to ``log``."""
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("ab") as out, (errors or log).open("ab") as err:
            # Tethered: a stress run killed with SIGKILL still takes its children along.
            self.proc = subprocess.Popen(tethered(argv), stdout=out,
                                         stderr=err if errors else subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env=env)
        self.pid = self.proc.pid
        self.usage: Usage | None = None

    def poll(self) -> Usage | None:
        """The usage once the child has exited (reaping it), else None."""
        if self.usage is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = code  # Popen must not wait for it again
                self.usage = Usage(peak_rss_mb=rusage.ru_maxrss / 1024,
                                   cpu_s=rusage.ru_utime + rusage.ru_stime, returncode=code)
        return self.usage

    @property
    def running(self) -> bool:
        return self.poll() is None

    def peak_so_far_mb(self) -> float | None:
        return self.usage.peak_rss_mb if self.usage else vm_hwm_mb(self.pid)

    def wait(self, timeout: float) -> Usage | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return self.usage

    def stop(self, timeout: float = 10.0) -> Usage:
        """SIGTERM (a clean stop: last publication, checkpoint), then SIGKILL."""
        if self.poll() is None:
            self._signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self._signal(signal.SIGKILL)
                self.wait(timeout)
        assert self.usage is not None
        return self.usage

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
