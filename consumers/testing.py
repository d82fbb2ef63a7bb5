"""Helpers for tests and benchmarks of live consumers (real broker, real processes).

* ``consumer_process`` starts ``python -m lapcast consume ...`` as a subprocess
  (a ``lapcast.topology.ConsumerSpec`` started as one ``Child``), ``stop_process``
  stops it.
* ``TestPublisher`` speaks the engine's side of the contract over a real broker:
  events (one per message, or batches) with the ``published_at_ns`` user
  property, the retained status, raw payloads for injecting bad input, and a
  journal file the consumer can catch up from (``--journal``).
* ``wait_for`` reads a topic (retained messages included) until a JSON document
  satisfies a predicate.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lapcast.topology import Child, ConsumerSpec, stop_popen
from simulator import topics
from simulator.connection import parse_broker_url
from simulator.contract import PUBLISHED_AT, Batch, EngineState, EngineStatus, Event, encode
from simulator.mqtt.payload import payload_bytes

__all__ = [
    "TestPublisher",
    "consumer_process",
    "stop_process",
    "wait_for",
    "write_journal",
]


def consumer_process(
    name: str,
    *,
    broker_url: str,
    session_id: str,
    state_dir: Path,
    journal: Path | None = None,
    extra: Sequence[str] = (),
    pythonpath: Sequence[str | Path] = (),
    log_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``lapcast -v consume NAME`` as a child process (stderr to ``log_file``).

    ``environ`` adds variables (``LAPCAST_MQTT_*`` credentials, for example). The child
    runs in its own session, tethered to this process: start it from the main thread.
    """
    env = {**os.environ, **(environ or {})}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            [*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])]
        )
    spec = ConsumerSpec(consumer=name, session_id=session_id, state_dir=state_dir,
                        journal=journal, extra=tuple(extra), env=env, verbose=1)
    # Only stderr to the log file (stdout discarded), as ``lapcast consume`` logs there.
    return Child(spec.process(broker_url), errors=log_file).proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; the exit code."""
    return stop_popen(proc, timeout)


def write_journal(path: Path, events: Iterable[Event], *, mode: str = "ab") -> None:
    """Append events to a journal file as the engine does (JSON lines)."""
    with path.open(mode) as out:
        for event in events:
            out.write(encode(event, "json") + b"\n")
        out.flush()
        os.fsync(out.fileno())


def _client(url: str, environ: Mapping[str, str] | None = None,
            **kwargs: Any) -> aiomqtt.Client:
    settings = parse_broker_url(url, environ=dict(environ) if environ is not None else None)
    return settings.client(**kwargs)


class TestPublisher:
    """The engine's side of the contract, for tests: ``async with TestPublisher(url, s)``."""

    __test__ = False  # not a pytest class

    def __init__(self, url: str, session_id: str, *,
                 environ: Mapping[str, str] | None = None) -> None:
        self.session_id = session_id
        self.events_topic = topics.events(session_id)
        self._client = _client(url, environ)

    async def __aenter__(self) -> TestPublisher:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.__aexit__(None, None, None)

    async def raw(self, payload: bytes, *, topic: str | None = None, retain: bool = False,
                  stamp: bool = True) -> None:
        """Publish ``payload`` as is (QoS 1) on the events topic or ``topic``."""
        props = None
        if stamp:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = (PUBLISHED_AT, str(time.time_ns()))
        await self._client.publish(topic or self.events_topic, payload, qos=1, retain=retain,
                                   properties=props)

    async def events(self, events: Sequence[Event], *, batch: int = 1) -> None:
        """Publish events in the order given, ``batch`` to a message."""
        for start in range(0, len(events), batch):
            part = list(events[start:start + batch])
            await self.raw(encode(part[0] if len(part) == 1 else Batch(events=part)))

    async def status(self, *, epoch: int, last_seq: int, state: EngineState = "running",
                     total_events: int = 0, log_id: str = "") -> None:
        """An engine status as the engine writes it, the figures not given zero."""
        status = EngineStatus(
            state=state, session_id=self.session_id, epoch=epoch, last_seq=last_seq,
            total_events=total_events, session_time_ms=0, end_ms=0, speed=1.0, lag_ms=0,
            events_published=last_seq, batch=1, encoding="json", log_id=log_id)
        await self._client.publish(topics.status(self.session_id), encode(status),
                                   qos=1, retain=True)


async def wait_for(
    url: str,
    topic: str,
    predicate: Callable[[Any], bool],
    *,
    timeout: float = 30.0,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The first JSON document on ``topic`` (retained first) for which ``predicate`` holds.

    ``environ`` gives credentials (``LAPCAST_MQTT_*``). Raises ``TimeoutError`` with
    the last document seen.
    """
    last: Any = None
    client = _client(url, environ)
    try:
        async with asyncio.timeout(timeout), client:
            await client.subscribe(topic, qos=1)
            async for message in client.messages:
                payload = payload_bytes(message)
                if not payload:
                    continue
                last = msgspec.json.decode(payload)
                if predicate(last):
                    return last
    except TimeoutError:
        raise TimeoutError(f"{topic}: no matching message within {timeout} s; last: "
                           f"{str(last)[:500]}") from None
    raise TimeoutError(f"{topic}: connection ended")
