"""``lapcast demo``: a broker, the replay engine, the consumers and the board, together.

Every part is its own process, as in production: Mosquitto (unless ``--broker``
names one), ``lapcast replay``, one ``lapcast consume`` per built-in projection
(running order, class poles, championship, lap chart), all on loopback, the live
board in the foreground of this process and, with ``--web``, ``lapcast web``.

The parts are a ``Topology`` started by ``lapcast.topology.Supervisor``: each child
in its own process group (its own session), so the terminal's Ctrl-C reaches only
the demo, which then stops the children in order (consumers and engine, then the
broker): SIGTERM to each group, a grace period, then SIGKILL for what is left. The
same happens on SIGTERM or SIGHUP (the terminal closed), when a child dies, or on
any error; nothing is left behind.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from consumers.registry import ALL_BUILTIN
from lapcast.board import BoardSettings, run_board
from lapcast.topology import (
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoSpec,
    PartDied,
    Supervisor,
    Topology,
    WebSpec,
)
from simulator.connection import parse_broker_url
from simulator.errors import LapcastError

__all__ = [
    "DEFAULT_SOURCE",
    "DemoError",
    "DemoSettings",
    "demo_topology",
    "resolve_source",
    "run_demo",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = "scenarios/wec-2023-bahrain-qualifying.toml"
# How often the demo checks that its children are still alive.
WATCH_INTERVAL_S = 0.25
# How long ``lapcast web`` may take to say its URL.
WEB_START_S = 20.0


# A part of the demo failed (names the part, its exit code and its last log lines).
DemoError = PartDied


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
    # Also serve the live timing page (``lapcast web --control``) on this port (0: any).
    web: bool = False
    web_port: int = 0


def resolve_source(spec: str) -> Path:
    """``spec`` as given, else relative to the project (the default works from anywhere)."""
    path = Path(spec)
    if path.exists():
        return path.resolve()
    beside = PROJECT_ROOT / spec
    if not path.is_absolute() and beside.exists():
        return beside
    raise LapcastError(f"{spec}: no such file")


def demo_topology(settings: DemoSettings, workdir: Path) -> Topology:
    """A private Mosquitto (unless ``--broker``), the consumers, the engine (and the page)."""
    # The page may pause, seek and change the speed: the demo is the user's own replay,
    # and the token in the URL it prints keeps anyone else who reaches the port to watching.
    web = (WebSpec(session_id=settings.session_id, port=settings.web_port, control=True),)
    return Topology(
        broker=ExternalBroker(settings.broker) if settings.broker else MosquittoSpec(),
        consumers=tuple(
            ConsumerSpec(consumer=name, session_id=settings.session_id,
                         state_dir=workdir / "state")
            for name in ALL_BUILTIN
        ),
        engine=EngineSpec(
            label="replay", source=str(settings.source), session_id=settings.session_id,
            speed=settings.speed, journal=workdir / "journal.jsonl",
            # Sector events too: the board colours each sector as it is set.
            extra=("--granularity", "sector"),
        ),
        boards=web if settings.web else (),
    )


def web_url(supervisor: Supervisor, timeout_s: float = WEB_START_S) -> str:
    """The URL ``lapcast web`` printed as its first line (it has bound its port by then)."""
    child = supervisor.children["web"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        supervisor.check()  # a page that cannot start (port taken) is named, with its log
        assert child.log is not None
        with open(child.log, encoding="utf-8", errors="replace") as log:
            for line in log:
                if line.startswith("http"):
                    return line.strip()
        time.sleep(0.05)
    raise LapcastError(f"lapcast web said no URL in {timeout_s:g} s; its log: {child.log}")


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
    supervisor = Supervisor(demo_topology(settings, workdir), workdir)
    try:
        supervisor.start()
        broker_url = supervisor.broker.url
        if settings.web:
            console.print(f"lapcast demo: the live timing page is at {web_url(supervisor)}",
                          highlight=False, soft_wrap=True)
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
