"""A TCP proxy whose link a test breaks on purpose: cut, half-open, slow.

``tc netem`` and ``iptables`` are not there on every machine, so the network faults
of ``tests/test_network_faults.py`` come from a proxy between a client and the broker
instead. Point the client at ``proxy.port``; the proxy forwards to the broker until
the test calls one of:

* ``cut()``: every connection is closed on both sides (FIN), and new ones are closed
  as soon as they arrive, until ``restore()``: a clean cut, noticed at once.
* ``blackhole()``: every current connection goes silent: bytes are dropped both ways
  and no close is passed on, so each side only learns from its own keep-alive (a
  half-open connection: a peer gone without an RST, a firewall that forgot the flow).
  Those connections stay dead; new ones pass, as after a failover.
* ``slow(latency_s=..., rate_bytes_s=...)``: each chunk is delayed, and each direction
  throttled, on current and new connections until ``restore()``.

``accepted`` keeps the monotonic time of every connection the proxy accepted, so a
test can tell when a client noticed a dead link (it opens a new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "cut", "slow"]
_CHUNK = 65536


@dataclass
class _Shaping:
    latency_s: float = 0.0
    rate_bytes_s: float | None = None


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    shaping: _Shaping
    accepted_at: float
    dead: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # both sides closed
    eofs: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.close()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream_host:upstream_port``, faults on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, *,
                 host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.mode: Mode = "pass"
        self.accepted: list[float] = []
        self._shaping = _Shaping()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        # Closed, not cancelled: each pump then ends on its own and nothing is left
        # half-done in asyncio's stream callbacks.
        for link in list(self._links):
            link.ended.set()
            link.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while self._links:
                    await asyncio.sleep(0.01)
        for link in list(self._links):
            for task in link.tasks:
                task.cancel()

    # --- faults ---------------------------------------------------------------------

    def cut(self) -> None:
        """Close every connection, both sides, and refuse new ones until ``restore()``."""
        self.mode = "cut"
        for link in list(self._links):
            link.close()

    def blackhole(self) -> None:
        """Current connections go silent for good (half-open); new ones pass."""
        for link in self._links:
            link.dead = True

    def slow(self, *, latency_s: float, rate_bytes_s: float | None = None) -> None:
        """Delay every chunk by ``latency_s`` and throttle each direction, until restore."""
        self.mode = "slow"
        self._shaping.latency_s = latency_s
        self._shaping.rate_bytes_s = rate_bytes_s

    def restore(self) -> None:
        """Pass again (connections made dead by ``blackhole`` stay dead)."""
        self.mode = "pass"
        self._shaping.latency_s = 0.0
        self._shaping.rate_bytes_s = None

    def accepted_since(self, t: float) -> list[float]:
        """Accept times (monotonic) after ``t``."""
        return [a for a in self.accepted if a > t]

    async def next_connection(self, after: float, *, timeout: float) -> float:
        """When the first connection after ``after`` was accepted (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                later = self.accepted_since(after)
                if later:
                    return later[0]
                await asyncio.sleep(0.02)

    async def reconnected(self, after: float, *, timeout: float) -> float:
        """When a connection accepted after ``after`` and still forwarding was made."""
        async with asyncio.timeout(timeout):
            while True:
                live = [link.accepted_at for link in self._links
                        if link.accepted_at > after and not link.dead]
                if live:
                    return min(live)
                await asyncio.sleep(0.02)

    @property
    def connections(self) -> int:
        """Connections open now (dead ones included until a side closes)."""
        return len(self._links)

    # --- forwarding -----------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        if self.mode == "cut":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host,
                                                                 self.upstream_port)
        except OSError:
            writer.close()
            return
        link = _Link(client=writer, upstream=up_writer, shaping=self._shaping,
                     accepted_at=self.accepted[-1])
        self._links.add(link)
        link.tasks = [asyncio.create_task(self._pump(link, reader, up_writer)),
                      asyncio.create_task(self._pump(link, up_reader, writer))]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.close()

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """One direction: read, then deliver in order after the latency and the rate."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(link, queue, writer))
        try:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except OSError:
                    data = b""
                if not data:
                    link.eofs += 1
                    if link.dead and link.eofs < 2:
                        # A dead path carries no close either: the other side stays
                        # open until its own end gives up too.
                        await link.ended.wait()
                    link.ended.set()
                    break
                if not link.dead:
                    queue.put_nowait((time.monotonic() + link.shaping.latency_s, data))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await deliver
            if not link.dead:
                link.close()

    async def _deliver(self, link: _Link, queue: asyncio.Queue[tuple[float, bytes] | None],
                       writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # Throttled, in slices of 20 ms worth of bytes: a steady trickle, as on a
            # slow line, rather than a burst and then seconds of silence.
            while data and not link.dead:
                rate = link.shaping.rate_bytes_s
                piece = data[: max(1, int(rate / 50))] if rate else data
                data = data[len(piece):]
                if rate:
                    # A piece arrives once the line has had the time to carry it.
                    await asyncio.sleep(len(piece) / rate)
                try:
                    writer.write(piece)
                    await writer.drain()
                except OSError:
                    return
