"""A topology as data: which broker, which consumers, which engine, which boards.

Nothing here starts anything; ``Supervisor`` does, in its one order (broker, then
consumers, then the engine; boards any time). A part that speaks to the broker is
described without the broker's URL, which is known only once the broker runs:
``process(url)`` gives its command line then.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lapcast.topology.broker import BrokerSpec

__all__ = [
    "BoardSpec",
    "ConsumerSpec",
    "EngineSpec",
    "PartSpec",
    "ProcessSpec",
    "Topology",
    "WebSpec",
    "lapcast_argv",
]


def lapcast_argv(*args: str) -> list[str]:
    """The command line of a lapcast subcommand, with this very interpreter."""
    return [sys.executable, "-m", "lapcast", *args]


@dataclass(frozen=True, kw_only=True)
class ProcessSpec:
    """Any program as a child: its name (in logs and messages) and its command line."""

    name: str
    argv: tuple[str, ...]
    # The whole environment of the child; None: this process's own.
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    # An exit with status 0 is normal for this child (it may finish on its own).
    may_finish: bool = False
    # SIGTERM when this process dies, even by SIGKILL (lapcast.topology.tether); start
    # it from the main thread then.
    tether: bool = True


class PartSpec(Protocol):
    """A lapcast process that talks to the broker."""

    @property
    def name(self) -> str: ...

    def process(self, broker_url: str) -> ProcessSpec: ...


def _verbosity(verbose: int) -> tuple[str, ...]:
    return ("-" + "v" * verbose,) if verbose else ()


@dataclass(frozen=True, kw_only=True)
class ConsumerSpec:
    """``lapcast consume CONSUMER --session ... --state-dir ...``."""

    consumer: str
    session_id: str
    state_dir: Path
    journal: Path | None = None  # catch-up from the journal file instead of over MQTT
    extra: tuple[str, ...] = ()  # more ``lapcast consume`` options
    env: Mapping[str, str] | None = None
    verbose: int = 0
    label: str | None = None  # its name, if not the consumer's

    @property
    def name(self) -> str:
        return self.label or self.consumer

    def process(self, broker_url: str) -> ProcessSpec:
        args = ["consume", self.consumer, "--broker", broker_url, "--session", self.session_id,
                "--state-dir", str(self.state_dir)]
        if self.journal is not None:
            args += ["--journal", str(self.journal)]
        return ProcessSpec(name=self.name, argv=(*lapcast_argv(*_verbosity(self.verbose), *args,
                                                               *self.extra),), env=self.env)


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """``lapcast replay SOURCE --journal ... --speed ...``."""

    source: str
    journal: Path
    speed: str = "1"  # a factor above 0, or "max"
    session_id: str | None = None  # None: the source's own
    extra: tuple[str, ...] = ()  # more ``lapcast replay`` options
    env: Mapping[str, str] | None = None
    verbose: int = 0
    label: str = "engine"
    # The engine keeps serving catch-up once the session is over, but an exit with 0
    # is not a failure.
    may_finish: bool = True

    @property
    def name(self) -> str:
        return self.label

    def process(self, broker_url: str) -> ProcessSpec:
        args = ["replay", self.source, "--broker", broker_url]
        if self.session_id is not None:
            args += ["--session-id", self.session_id]
        args += ["--speed", self.speed, "--journal", str(self.journal)]
        return ProcessSpec(name=self.name, argv=(*lapcast_argv(*_verbosity(self.verbose), *args,
                                                               *self.extra),),
                           env=self.env, may_finish=self.may_finish)


@dataclass(frozen=True, kw_only=True)
class BoardSpec:
    """``lapcast board --session ...`` as a process of its own."""

    session_id: str
    extra: tuple[str, ...] = ()  # more ``lapcast board`` options (--exit-when-done)
    env: Mapping[str, str] | None = None
    verbose: int = 0
    label: str = "board"
    may_finish: bool = True

    @property
    def name(self) -> str:
        return self.label

    def process(self, broker_url: str) -> ProcessSpec:
        args = ["board", "--broker", broker_url, "--session", self.session_id]
        return ProcessSpec(name=self.name, argv=(*lapcast_argv(*_verbosity(self.verbose), *args,
                                                               *self.extra),),
                           env=self.env, may_finish=self.may_finish)


@dataclass(frozen=True, kw_only=True)
class WebSpec:
    """``lapcast web --session ... --port ...``: the live timing page, a board of its own.

    Its first line of output is the page's URL (with the control token, with
    ``control``): read it from the child's log.
    """

    session_id: str
    port: int = 0  # 0: any free port (the URL printed says which)
    host: str = "127.0.0.1"
    control: bool = False
    extra: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    verbose: int = 0
    label: str = "web"
    may_finish: bool = False

    @property
    def name(self) -> str:
        return self.label

    def process(self, broker_url: str) -> ProcessSpec:
        args = ["web", "--broker", broker_url, "--session", self.session_id,
                "--host", self.host, "--port", str(self.port)]
        if self.control:
            args.append("--control")
        return ProcessSpec(name=self.name, argv=(*lapcast_argv(*_verbosity(self.verbose), *args,
                                                               *self.extra),),
                           env=self.env, may_finish=self.may_finish)


@dataclass(frozen=True, kw_only=True)
class Topology:
    """The broker and the lapcast processes of one run."""

    broker: BrokerSpec
    consumers: tuple[ConsumerSpec, ...] = ()
    engine: EngineSpec | None = None
    boards: tuple[BoardSpec | WebSpec, ...] = ()

    def __post_init__(self) -> None:
        parts: list[PartSpec] = [*self.consumers, *self.boards]
        if self.engine is not None:
            parts.append(self.engine)
        names = [p.name for p in parts]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise ValueError(f"two parts of the topology are named {', '.join(doubles)}")
