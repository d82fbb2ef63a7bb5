"""``lapcast demo``: a broker, the replay engine, three consumers and the board, together.

Every part is its own process, as in production: Mosquitto (unless ``--broker``
names one), ``lapcast replay``, one ``lapcast consume`` per projection, all on
loopback, and the live board in the foreground of this process.

Process supervision: each child runs in its own process group (its own session),
so the terminal's Ctrl-C reaches only the demo, which then stops the children in
order (consumers and engine, then the broker): SIGTERM to each group, a grace
period, then SIGKILL for what is left. The same happens on SIGTERM or SIGHUP (the
terminal closed), when a child dies, or on any error; nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from rich.console import Console

from consumers.registry import BUILTIN
from lapcast.board import BoardSettings, run_board
from lapcast.mosquitto import MosquittoProcess
from lapcast.tether import tethered
from simulator.connection import parse_broker_url
from simulator.errors import LapcastError

__all__ = [
    "DEFAULT_SOURCE",
    "Child",
    "DemoError",
    "DemoSettings",
    "Supervisor",
    "resolve_source",
    "run_demo",
]

log = structlog.get_logger()

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = "scenarios/wec-2023-bahrain-qualifying.toml"
# How long a child has to stop after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0
# How often the demo checks that its children are still alive.
WATCH_INTERVAL_S = 0.25


class DemoError(LapcastError):
    """A part of the demo failed (names the part, its exit code and its last log lines)."""


@dataclass(frozen=True, kw_only=True)
class DemoSettings:
    source: Path
    # Passed to ``lapcast replay --speed``: a factor above 0, or "max".
    speed: str = "1"
    # An existing broker; None starts a private Mosquitto on a free loopback port.
    broker: str | None = None
    session_id: str = field(default_factory=lambda: f"demo-{secrets.token_hex(3)}")
    fps: float = 8.0
    exit_when_done: bool = False


def resolve_source(spec: str) -> Path:
    """``spec`` as given, else relative to the project (the default works from anywhere)."""
    path = Path(spec)
    if path.exists():
        return path.resolve()
    beside = PROJECT_ROOT / spec
    if not path.is_absolute() and beside.exists():
        return beside
    raise LapcastError(f"{spec}: no such file")


@dataclass
class Child:
    """One supervised process, the leader of its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    # An exit with status 0 is normal for this child (it may finish on its own).
    may_finish: bool = False

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _lapcast(*args: str) -> list[str]:
    """The command line of a lapcast subcommand, with this very interpreter."""
    return [sys.executable, "-m", "lapcast", *args]


class Supervisor:
    """Starts child processes, watches them, and stops them all, whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.broker: MosquittoProcess | None = None

    def start_broker(self) -> str:
        """A private Mosquitto (``broker-config/dev.conf``) on a free port; its URL."""
        self.broker = MosquittoProcess(config="dev.conf", workdir=self.workdir / "broker",
                                       tether=True)
        self.broker.start()
        return self.broker.url

    def spawn(self, name: str, argv: Sequence[str], *, may_finish: bool = False) -> Child:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                # Tethered: a demo killed with SIGKILL still takes its children along.
                tethered(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # Its own session and process group: the terminal's Ctrl-C reaches only
                # the demo, which stops the children in order.
                start_new_session=True,
            )
        child = Child(name=name, proc=proc, log_path=log_path, may_finish=may_finish)
        self.children.append(child)
        log.info("demo started a child", child=name, pid=proc.pid)
        return child

    def check(self) -> None:
        """Raise ``DemoError`` if a child (or the broker) has died unexpectedly."""
        broker = self.broker
        if broker is not None and broker.proc is not None and broker.proc.poll() is not None:
            raise DemoError(f"{_ended('mosquitto', broker.proc.returncode)}: "
                            f"{broker.log_text().strip()[-1000:]}")
        for child in self.children:
            code = child.proc.poll()
            if code is None or (code == 0 and child.may_finish):
                continue
            tail = child.tail()
            raise DemoError(_ended(child.name, code) + (f":\n{tail}" if tail else ""))

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every child: the lapcast processes together, then the broker.

        SIGTERM to each process group, up to ``grace_s`` to exit, then SIGKILL. A
        second Ctrl-C while this runs is ignored, so it cannot leave a child behind.
        """
        with _signals_ignored():
            _stop_groups([c.proc for c in self.children], grace_s)
            if self.broker is not None:
                self.broker.stop(timeout=grace_s)
        self.children.clear()


def _ended(name: str, code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{name} was killed by {signal.Signals(-code).name}"
    return f"{name} exited with {code}"


def _stop_groups(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            log.warning("demo child ignored SIGTERM; killing it", pid=proc.pid)
    for proc in procs:
        # Also any grandchild left in the group after its leader exited.
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    saved = {sig: signal.signal(sig, signal.SIG_IGN)
             for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


async def _foreground(settings: DemoSettings, broker_url: str, supervisor: Supervisor,
                      console: Console | None) -> None:
    """The board, until it is done, a stop signal arrives, or a child dies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        while True:
            supervisor.check()
            await asyncio.sleep(WATCH_INTERVAL_S)

    board = BoardSettings(session_id=settings.session_id, fps=settings.fps,
                          exit_when_done=settings.exit_when_done)
    async with asyncio.TaskGroup() as tasks:
        shown = tasks.create_task(run_board(parse_broker_url(broker_url), board,
                                            console=console))
        watcher = tasks.create_task(watch())
        stopper = tasks.create_task(stop.wait())
        await asyncio.wait({shown, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (shown, watcher, stopper):
            task.cancel()


def run_demo(settings: DemoSettings, *, console: Console | None = None) -> int:
    """Run the whole demo in the foreground; return its exit code once all is stopped."""
    console = console or Console()
    workdir = Path(tempfile.mkdtemp(prefix="lapcast-demo-"))
    supervisor = Supervisor(workdir)
    try:
        broker_url = settings.broker or supervisor.start_broker()
        common = ("--broker", broker_url)
        # Consumers first, so that they are subscribed before the first event.
        for name in BUILTIN:
            supervisor.spawn(name, _lapcast(
                "consume", name, *common, "--session", settings.session_id,
                "--state-dir", str(workdir / "state"),
            ))
        supervisor.spawn("replay", _lapcast(
            "replay", str(settings.source), *common, "--session-id", settings.session_id,
            "--speed", settings.speed, "--journal", str(workdir / "journal.jsonl"),
            # Sector events too: the board colours each sector as it is set.
            "--granularity", "sector",
        ), may_finish=True)
        console.print(
            f"[dim]lapcast demo: {settings.source.name} at speed {settings.speed}, "
            f"broker {broker_url}, session {settings.session_id}; Ctrl-C stops it all. "
            f"Another board: lapcast board --broker {broker_url} "
            f"--session {settings.session_id}[/dim]",
            highlight=False,
        )
        try:
            asyncio.run(_foreground(settings, broker_url, supervisor, console))
        except* LapcastError as group:  # a dead child, or a refusal by the broker
            raise group.exceptions[0] from None
        supervisor.check()
        return 0
    finally:
        supervisor.stop()
        shutil.rmtree(workdir, ignore_errors=True)
