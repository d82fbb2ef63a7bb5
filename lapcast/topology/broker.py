"""What the supervisor needs of a broker, whatever its kind.

A ``BrokerSpec`` is the data (``MosquittoSpec``, ``ExternalBroker``); ``create(workdir)``
gives the ``Broker`` that runs. A broker is started and stopped, tells its URLs (a
cluster has several; clients take the first or rotate through them all), and shows
its processes, so the supervisor can watch them, name one that died and show its log.
Adding a kind of broker is a spec and a broker class in a module of their own
(``nats.py``: ``NatsClusterSpec``, three NATS nodes); the supervisor does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lapcast.topology.mosquitto import MosquittoProcess
from lapcast.topology.process import Child

__all__ = ["Broker", "BrokerSpec", "ExternalBroker", "MosquittoSpec"]


class Broker(Protocol):
    """A running broker (or one the supervisor only points its parts at)."""

    @property
    def url(self) -> str:
        """The URL clients use (the first node's, for a cluster)."""
        ...

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node's URL."""
        ...

    def start(self) -> object: ...

    def stop(self, *, timeout: float = 10.0) -> None: ...

    def log_text(self) -> str: ...

    def children(self) -> Sequence[Child]:
        """Its processes (none for a broker started elsewhere)."""
        ...


class BrokerSpec(Protocol):
    def create(self, workdir: Path) -> Broker:
        """The broker, not started yet; its files go under ``workdir``."""
        ...


@dataclass(frozen=True, kw_only=True)
class MosquittoSpec:
    """A private Mosquitto from ``broker-config/CONFIG`` on free loopback ports."""

    config: str = "dev.conf"
    # Other text of the template rewritten (paths of certificates, passwords, ACL).
    replacements: Mapping[str, str] = field(default_factory=dict)
    tether: bool = True

    def create(self, workdir: Path) -> MosquittoProcess:
        return MosquittoProcess(config=self.config, replacements=dict(self.replacements),
                                workdir=workdir, tether=self.tether)


@dataclass(frozen=True)
class ExternalBroker:
    """A broker started by someone else: its URL, passed to the parts as given."""

    url: str

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url,)

    def create(self, workdir: Path) -> ExternalBroker:
        return self

    def start(self) -> ExternalBroker:
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        pass

    def log_text(self) -> str:
        return ""

    def children(self) -> Sequence[Child]:
        return ()
