"""One child process: started from a ``ProcessSpec``, watched, stopped, reaped with its cost.

A child runs in a session (and process group) of its own, so that a terminal's Ctrl-C
reaches only the supervisor, which stops its children in order; it is tethered
(``lapcast.topology.tether``), so that it gets SIGTERM even when the supervisor dies
by SIGKILL. Its output goes to a log file.

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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from lapcast.topology.spec import ProcessSpec
from lapcast.topology.tether import tethered

__all__ = ["Child", "Usage", "ended", "stop_all", "stop_popen", "vm_hwm_mb"]

log = structlog.get_logger()

_POLL_S = 0.02


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


def ended(name: str, code: int) -> str:
    """``NAME exited with N`` or ``NAME was killed by SIGX``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{name} was killed by {signal.Signals(-code).name}"
    return f"{name} exited with {code}"


class Child:
    """One child process, the leader of its own process group, reaped with its usage.

    Output goes to ``log`` (errors too, unless ``errors`` names another file); with
    neither, it is discarded. Reap it through this object only (``poll``, ``wait``,
    ``stop``), not through ``proc``: ``wait4`` is what reports its cost.
    """

    def __init__(self, spec: ProcessSpec, *, log: Path | None = None,
                 errors: Path | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.log = log
        self.errors = errors
        argv = list(spec.argv)
        with _opened(log) as out, _opened(errors) as err:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                # Tethered: a supervisor killed with SIGKILL still takes its children along.
                tethered(argv) if spec.tether else argv,
                stdin=subprocess.DEVNULL, stdout=out,
                stderr=err if errors is not None else
                (subprocess.STDOUT if log is not None else subprocess.DEVNULL),
                # Its own session and process group: the terminal's Ctrl-C reaches only
                # the supervisor, which stops the children in order.
                start_new_session=True, env=None if spec.env is None else dict(spec.env),
                cwd=spec.cwd,
            )
        self.pid = self.proc.pid
        self.usage: Usage | None = None

    # --- state ------------------------------------------------------------------------------

    def poll(self, *, block: bool = False) -> Usage | None:
        """The usage once the child has exited (reaping it), else None; ``block``: wait."""
        if self.usage is None:
            try:
                pid, status, rusage = os.wait4(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:  # reaped through ``proc`` after all: no usage known
                code = self.proc.wait() if block else self.proc.poll()
                if code is not None:
                    self.usage = Usage(peak_rss_mb=0.0, cpu_s=0.0, returncode=code)
                return self.usage
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = code  # Popen must not wait for it again
                self.usage = Usage(peak_rss_mb=rusage.ru_maxrss / 1024,
                                   cpu_s=rusage.ru_utime + rusage.ru_stime, returncode=code)
        return self.usage

    @property
    def running(self) -> bool:
        return self.poll() is None

    @property
    def returncode(self) -> int | None:
        usage = self.poll()
        return None if usage is None else usage.returncode

    def failed(self) -> bool:
        """Exited, and not with the 0 a child that ``may_finish`` is allowed."""
        code = self.returncode
        return code is not None and not (code == 0 and self.spec.may_finish)

    def peak_so_far_mb(self) -> float | None:
        return self.usage.peak_rss_mb if self.usage else vm_hwm_mb(self.pid)

    # --- stopping ---------------------------------------------------------------------------

    def wait(self, timeout: float) -> Usage | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(_POLL_S)
        return self.usage

    def send(self, sig: int) -> None:
        """``sig`` to the child's process group (its own session), or to the child alone."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0, *, sig: int = signal.SIGTERM) -> Usage:
        """SIGTERM (a clean stop: last publication, checkpoint), then SIGKILL."""
        return stop_all([self], timeout, sig=sig)[self.name]

    # --- its log ----------------------------------------------------------------------------

    def log_text(self) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 2000) -> str:
        """The last ``chars`` characters of its log."""
        return self.log_text()[-chars:]

    def last_lines(self, lines: int = 8) -> str:
        return "\n".join(self.log_text().strip().splitlines()[-lines:])


def stop_all(children: Iterable[Child], grace_s: float, *,
             sig: int = signal.SIGTERM) -> dict[str, Usage]:
    """Stop children together: ``sig`` to each group, ``grace_s`` to exit, then SIGKILL.

    The SIGKILL goes to each group even when its leader has exited, for any grandchild
    left in it. Returns each child's usage by name.
    """
    children = list(children)
    for child in children:
        if child.poll() is None:
            child.send(sig)
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.wait(max(deadline - time.monotonic(), 0)) is None:
            log.warning("child ignored the stop signal; killing it", child=child.name,
                           pid=child.pid)
    for child in children:
        child.send(signal.SIGKILL)
    usages: dict[str, Usage] = {}
    for child in children:
        usage = child.poll(block=True)
        assert usage is not None
        usages[child.name] = usage
    return usages


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; the exit code.

    For a process started some other way; to its group if it leads one of its own.
    """
    if proc.poll() is None:
        _send(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _send(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _send(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


@contextlib.contextmanager
def _opened(path: Path | None) -> Any:
    if path is None:
        yield subprocess.DEVNULL
        return
    out: IO[bytes]
    with path.open("ab") as out:
        yield out
