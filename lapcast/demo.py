"""``lapcast demo``: a broker, the replay engine, three consumers and the board, together.

Every part is its own process, as in production: Mosquitto (unless ``--broker``
names one), ``lapcast replay``, one ``lapcast consume`` per projection, all on
loopback, and the live board in the foreground of this process.

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
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from consumers.registry import BUILTIN
from lapcast.board import BoardSettings, run_board
from lapcast.topology import (
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoSpec,
    PartDied,
    Supervisor,
    Topology,
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
    """A private Mosquitto (unless ``--broker``), the three consumers, the engine."""
    return Topology(
        broker=ExternalBroker(settings.broker) if settings.broker else MosquittoSpec(),
        consumers=tuple(
            ConsumerSpec(consumer=name, session_id=settings.session_id,
                         state_dir=workdir / "state")
            for name in BUILTIN
        ),
        engine=EngineSpec(
            label="replay", source=str(settings.source), session_id=settings.session_id,
            speed=settings.speed, journal=workdir / "journal.jsonl",
            # Sector events too: the board colours each sector as it is set.
            extra=("--granularity", "sector"),
        ),
    )


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
