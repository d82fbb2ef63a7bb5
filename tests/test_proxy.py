"""The fault proxy itself, against an echo server: pass, cut, half-open, slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from lapcast.testing.proxy import FaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, FaultProxy("127.0.0.1", port) as p:
        yield p


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     data: bytes = b"ping", timeout: float = 2.0) -> bytes:
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(timeout):
        return await reader.readexactly(len(data))


class TestFaultProxy:
    async def test_passes_bytes_both_ways(self, proxy: FaultProxy) -> None:
        """Unbroken, the proxy is invisible: what is sent comes back."""
        reader, writer = await _connect(proxy)
        assert await _roundtrip(reader, writer) == b"ping"
        assert proxy.connections == 1 and len(proxy.accepted) == 1
        writer.close()

    async def test_cut_closes_both_sides_and_refuses_until_restored(
        self, proxy: FaultProxy
    ) -> None:
        """A cut ends the connection (EOF at once); new ones end at once until restore."""
        reader, writer = await _connect(proxy)
        await _roundtrip(reader, writer)
        proxy.cut()
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        reader2, _ = await _connect(proxy)
        async with asyncio.timeout(2):
            assert await reader2.read() == b""
        proxy.restore()
        reader3, writer3 = await _connect(proxy)
        assert await _roundtrip(reader3, writer3) == b"ping"
        writer3.close()

    async def test_blackhole_drops_bytes_and_keeps_the_socket_open(
        self, proxy: FaultProxy
    ) -> None:
        """Half-open: nothing comes back and nothing closes; a new connection passes."""
        reader, writer = await _connect(proxy)
        await _roundtrip(reader, writer)
        start = time.monotonic()
        proxy.blackhole()
        with pytest.raises(TimeoutError):
            await _roundtrip(reader, writer, timeout=0.5)
        assert not reader.at_eof()
        reader2, writer2 = await _connect(proxy)
        assert await _roundtrip(reader2, writer2) == b"ping"
        assert await proxy.reconnected(start, timeout=1) > start
        writer.close()
        writer2.close()

    async def test_slow_delays_each_chunk_until_restored(self, proxy: FaultProxy) -> None:
        """Slow: a round trip takes the latency each way; restore makes it quick again."""
        reader, writer = await _connect(proxy)
        proxy.slow(latency_s=0.2)
        began = time.monotonic()
        assert await _roundtrip(reader, writer) == b"ping"
        assert time.monotonic() - began >= 0.4
        proxy.restore()
        began = time.monotonic()
        await _roundtrip(reader, writer)
        assert time.monotonic() - began < 0.2
        writer.close()

    async def test_rate_throttles_each_direction(self, proxy: FaultProxy) -> None:
        """8 KB at 16 KB/s take at least half a second, arriving as a steady trickle."""
        reader, writer = await _connect(proxy)
        proxy.slow(latency_s=0.0, rate_bytes_s=16_000)
        began = time.monotonic()
        assert await _roundtrip(reader, writer, b"x" * 8000, timeout=5) == b"x" * 8000
        assert time.monotonic() - began >= 0.5
        writer.close()
