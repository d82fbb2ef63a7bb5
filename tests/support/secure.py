"""The whole system on the secure profile: each process under its own user, over TLS.

``SecureSession`` runs ``lapcast replay``, three ``lapcast consume`` and, if asked,
``lapcast board`` against a broker from ``broker-config/secure.conf``, each with its
own ``LAPCAST_MQTT_*`` from ``scripts/make-users.sh``, and reads what they publish as
a chosen user. Used by ``test_secure_end_to_end.py`` and ``test_secure_catchup_steering.py``
(fixture ``secure_session`` in ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from consumers.folding import fold_all
from consumers.registry import load_consumer
from lapcast.topology import (
    BoardSpec,
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoProcess,
    ProcessSpec,
    Supervisor,
    Topology,
    lapcast_argv,
)
from simulator import topics
from simulator.connection import BrokerSettings, parse_broker_url
from simulator.sources import load_source

__all__ = ["PROJECTIONS", "Env", "SecureSession"]

PROJECTIONS = ("running-order", "class-poles", "championship")
Env = Callable[[str], dict[str, str]]


class SecureSession:
    """One session on the secure broker: its processes, each under its own user."""

    def __init__(self, broker: MosquittoProcess, env: Env, session_id: str,
                 tmp_path: Path) -> None:
        self.broker = broker
        self.env = env
        self.session_id = session_id
        self.tmp = tmp_path
        self.journal = tmp_path / "journal.jsonl"
        self.supervisor = Supervisor(Topology(broker=ExternalBroker(broker.url)), tmp_path)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every process started, by name."""
        return {name: child.proc for name, child in self.supervisor.children.items()}

    def settings(self, user: str) -> BrokerSettings:
        return parse_broker_url(self.broker.url, environ=self.env(user))

    def environ(self, user: str) -> dict[str, str]:
        """This process's environment with ``user``'s LAPCAST_MQTT_* only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAPCAST_MQTT_")}
        env.update(self.env(user), COLUMNS="200", LINES="80")
        return env

    def start(self, spec: ProcessSpec) -> None:
        """Its output to NAME.out, its log (stderr) to NAME.log."""
        self.supervisor.spawn(spec, log_path=self.tmp / f"{spec.name}.out",
                              errors=self.tmp / f"{spec.name}.log")

    def spawn(self, name: str, user: str, *args: str) -> None:
        """``python -m lapcast -v ARGS --broker URL`` as ``user``."""
        self.start(ProcessSpec(name=name, env=self.environ(user), argv=(
            *lapcast_argv("-v", *args, "--broker", self.broker.url),)))

    def start_consumers(self) -> None:
        for name in PROJECTIONS:
            self.start(ConsumerSpec(
                consumer=name, session_id=self.session_id, state_dir=self.tmp / "state",
                env=self.environ(name), verbose=1,
                extra=("--publish-ms", "50", "--catchup-timeout", "1"),
            ).process(self.broker.url))

    def start_engine(self, source: Path) -> None:
        self.start(EngineSpec(source=str(source), session_id=self.session_id, speed="max",
                              journal=self.journal, env=self.environ("engine"), verbose=1
                              ).process(self.broker.url))

    def start_board(self, *extra: str) -> None:
        self.start(BoardSpec(session_id=self.session_id, extra=extra, env=self.environ("board"),
                             verbose=1).process(self.broker.url))

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def output(self, name: str) -> str:
        path = self.tmp / f"{name}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, name: str, timeout: float) -> int | None:
        """The exit code of ``name`` once it ends by itself, None if it runs on."""
        usage = self.supervisor.children[name].wait(timeout)
        return None if usage is None else usage.returncode

    def stop(self, name: str) -> int:
        return self.supervisor.stop_children([name], grace_s=15)[name].returncode

    async def latest(self, user: str, filters: list[str],
                     done: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        """Newest JSON document per topic, as ``user`` reads them, once ``done`` holds."""
        seen: dict[str, Any] = {}
        try:
            async with asyncio.timeout(timeout), self.settings(user).client() as client:
                await client.subscribe([(f, 1) for f in filters])
                if done(seen):
                    return seen
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes) and payload:
                        seen[message.topic.value] = msgspec.json.decode(payload)
                    if done(seen):
                        return seen
        except TimeoutError:
            logs = {name: self.log(name)[-1500:] for name in self.procs}
            raise AssertionError(f"timed out; seen {str(seen)[:1500]}; logs {logs}") from None
        raise AssertionError("subscription ended")

    async def health(self, done: Callable[[dict[str, Any]], bool],
                     timeout: float = 90) -> dict[str, Any]:
        """Each consumer's retained health by name, read by the operator user."""
        prefix = topics.consumer_status(self.session_id, "")[: -len("/status")]

        def ready(seen: dict[str, Any]) -> bool:
            return done({t[len(prefix):].split("/")[0]: d for t, d in seen.items()})

        seen = await self.latest("operator", [topics.consumer_status(self.session_id, "+")],
                                 ready, timeout)
        return {t[len(prefix):].split("/")[0]: d for t, d in seen.items()}

    async def states(self, done: Callable[[dict[str, Any]], bool],
                     timeout: float = 90) -> dict[str, Any]:
        """Each projection's retained state by name, read by the board user."""
        wanted = {topics.state(self.session_id, name): name for name in PROJECTIONS}

        def ready(seen: dict[str, Any]) -> bool:
            return done({wanted[t]: d for t, d in seen.items() if t in wanted})

        seen = await self.latest("board", list(wanted), ready, timeout)
        return {wanted[t]: d for t, d in seen.items() if t in wanted}

    def last_seq(self) -> int:
        return sum(1 for line in self.journal.read_bytes().splitlines() if line.strip())

    def offline(self) -> dict[str, Any]:
        """``lapcast fold`` of the engine's journal: what every live state must equal."""
        events = list(load_source(str(self.journal)).events())
        folders = fold_all([load_consumer(name) for name in PROJECTIONS], events)
        return {name: msgspec.to_builtins(folder.view())
                for name, folder in zip(PROJECTIONS, folders, strict=True)}

    async def run_to_the_end(self, race_csv: Path) -> tuple[int, dict[str, Any]]:
        """Consumers first, then the engine at --speed max; every state at the last seq."""
        self.start_consumers()
        await self.health(lambda h: all(n in h and h[n].get("state") != "lost"
                                        for n in PROJECTIONS))
        self.start_engine(race_csv)
        status = await self.latest(
            "board", [topics.status(self.session_id)],
            lambda s: any(d.get("state") == "finished" for d in s.values()))
        last = next(iter(status.values()))["last_seq"]
        assert last == self.last_seq() > 7000
        states = await self.states(lambda s: len(s) == len(PROJECTIONS) and all(
            d["seq"] == last for d in s.values()))
        return last, states
