"""Starts a ``Topology``, watches it, and stops all of it, whatever happens.

The order lives here, once: the broker, then the consumers (subscribed before the
first event), then the engine; boards whenever asked. Each step starts the steps
before it that have not run yet, so a caller may pause between them (the stress test
waits for the consumers' health before it starts the engine) but cannot reorder them.

Every part runs in a session of its own and is tethered (``process.Child``); its
output goes to ``WORKDIR/NAME.log``. ``check()`` raises ``PartDied`` naming a part
that died, with its last log lines; ``stop()`` stops the lapcast processes together
(SIGTERM to each group, a grace period, then SIGKILL), then the broker.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import structlog

from lapcast.topology.broker import Broker
from lapcast.topology.process import Child, Usage, ended, stop_all
from lapcast.topology.spec import PartSpec, ProcessSpec, Topology
from simulator.errors import LapcastError

__all__ = ["STOP_GRACE_S", "PartDied", "Supervisor"]

log = structlog.get_logger()

# How long a child has to stop after SIGTERM before it gets SIGKILL.
STOP_GRACE_S = 5.0


class PartDied(LapcastError):
    """A part of the topology ended (names the part, its exit code and its last log lines)."""


class Supervisor:
    """Runs one ``Topology``; ``with Supervisor(...) as s`` stops it all on the way out.

    Start tethered children from the main thread (``lapcast.topology.tether``).
    """

    def __init__(self, topology: Topology, workdir: Path, *,
                 grace_s: float = STOP_GRACE_S) -> None:
        self.topology = topology
        self.workdir = workdir
        self.grace_s = grace_s
        self.broker: Broker = topology.broker.create(workdir / "broker")
        self.children: dict[str, Child] = {}
        self._broker_started = self._consumers_started = self._engine_started = False

    # --- starting, in the one order -----------------------------------------------------------

    def start(self) -> Supervisor:
        """Everything: the broker, the consumers, the engine, then the boards."""
        self.start_engine()
        self.start_boards()
        return self

    def start_broker(self) -> str:
        """The broker; its URL."""
        if not self._broker_started:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._broker_started = True
            self.broker.start()
        return self.broker.url

    def start_consumers(self) -> None:
        """The consumers (after the broker)."""
        url = self.start_broker()
        if not self._consumers_started:
            self._consumers_started = True
            for consumer in self.topology.consumers:
                self._start_part(consumer, url)

    def start_engine(self) -> None:
        """The engine (after the consumers, so they hear its first event)."""
        self.start_consumers()
        if not self._engine_started:
            self._engine_started = True
            if self.topology.engine is not None:
                self._start_part(self.topology.engine, self.broker.url)

    def start_boards(self) -> None:
        """The boards (after the broker; any time)."""
        url = self.start_broker()
        for board in self.topology.boards:
            if board.name not in self.children:
                self._start_part(board, url)

    def spawn(self, spec: ProcessSpec, *, log_path: Path | None = None,
              errors: Path | None = None) -> Child:
        """One more child, watched and stopped with the others.

        Output to ``log_path`` (default ``WORKDIR/NAME.log``), errors too unless
        ``errors`` names another file.
        """
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        child = Child(spec, log=log_path or self.workdir / f"{spec.name}.log", errors=errors)
        self.children[spec.name] = child
        log.info("started a child", child=spec.name, pid=child.pid)
        return child

    def _start_part(self, part: PartSpec, url: str) -> None:
        self.spawn(part.process(url))

    # --- watching -----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``PartDied`` if the broker or a child has died unexpectedly."""
        for node in self.broker.children():
            code = node.returncode
            if code is not None:
                raise PartDied(f"{ended(node.name, code)}: "
                               f"{node.log_text().strip()[-1000:]}")
        for child in self.children.values():
            if child.failed():
                assert child.returncode is not None
                tail = child.last_lines()
                raise PartDied(ended(child.name, child.returncode)
                               + (f":\n{tail}" if tail else ""))

    # --- stopping -----------------------------------------------------------------------------

    def stop_children(self, names: Iterable[str] | None = None,
                      grace_s: float | None = None) -> dict[str, Usage]:
        """Stop these children (default: all) together; what each cost, by name."""
        chosen = [self.children[n] for n in names] if names is not None else list(
            self.children.values())
        return stop_all(chosen, self.grace_s if grace_s is None else grace_s)

    def stop(self, grace_s: float | None = None) -> dict[str, Usage]:
        """Stop every child together, then the broker; what each child cost.

        A second Ctrl-C while this runs is ignored, so it cannot leave a child behind.
        """
        grace = self.grace_s if grace_s is None else grace_s
        with _signals_ignored():
            usages = self.stop_children(grace_s=grace)
            if self._broker_started:
                self.broker.stop(timeout=grace)
        return usages

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN)
             for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
