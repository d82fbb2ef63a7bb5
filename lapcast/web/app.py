"""The HTTP side of ``lapcast web``: the page, its event stream and the control door.

Routes:

* ``GET /`` the page, ``GET /static/...`` its script and style (package data);
* ``GET /api/events`` a Server-Sent Events stream: ``snapshot`` first, then ``delta``s
  (``WebHub.flush``), and a ``ping`` every few seconds so that the page can tell a
  live feed from a stale one; the browser's ``EventSource`` reconnects by itself and
  each new stream starts with a fresh snapshot;
* ``GET /api/snapshot`` the same snapshot as one JSON document (scripts, tests);
* ``POST /api/control`` a replay command (``{"command": "pause"}``...), only when the
  server runs with ``--control``, only with the token printed at start (header
  ``X-Lapcast-Token``) and only from the page's own origin. The server publishes it
  with its own broker credentials; the browser never has them.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Final
from urllib.parse import urlsplit

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lapcast.web.hub import WebHub
from simulator.replay.control import Rejection, parse_command

__all__ = ["Broadcast", "WebSettings", "build_app"]

_encoder: Final = msgspec.json.Encoder()
# A page that falls this far behind is dropped; its EventSource reconnects to a snapshot.
_QUEUE_DEPTH: Final = 256
PING_S: Final = 3.0
_HEADERS: Final = {
    # Our own files only: no third-party script, style or frame.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL carries the control token
}


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    session_id: str
    host: str = "127.0.0.1"
    port: int = 8080
    control: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    # Deltas per second at most: a page redraws at this pace however fast the replay runs.
    flush_hz: float = 4.0


class Broadcast:
    """The open event streams: one bounded queue of encoded deltas each."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[bytes | None]] = set()

    def __len__(self) -> int:
        return len(self._queues)

    def open(self) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_DEPTH)
        self._queues.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._queues.discard(queue)

    def send(self, message: bytes) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stuck page: end its stream, it reconnects
                self._queues.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def end(self) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._queues.clear()


def sse(event: str, data: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def build_app(
    hub: WebHub,
    settings: WebSettings,
    broadcast: Broadcast,
    publish_control: Callable[[bytes], Awaitable[str | None]],
) -> Starlette:
    """The ASGI app. ``publish_control(payload)`` returns None once sent, or why not."""
    page = (files("lapcast.web") / "static" / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=_HEADERS)

    def snapshot_doc() -> bytes:
        return _encoder.encode({**hub.snapshot(), "control": settings.control})

    async def snapshot(request: Request) -> Response:
        return Response(snapshot_doc(), media_type="application/json", headers=_HEADERS)

    async def events(request: Request) -> Response:
        # The snapshot and the queue are taken together (no await between them): the
        # deltas that follow apply to exactly this snapshot.
        first = snapshot_doc()
        queue = broadcast.open()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\n\n" + sse("snapshot", first)
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), PING_S)
                    except TimeoutError:
                        yield sse("ping", b"{}")
                        continue
                    if message is None:
                        return
                    yield message
            finally:
                broadcast.close(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def control(request: Request) -> Response:
        if not settings.control:
            return _refuse(403, "this board is read-only (lapcast web was started without "
                                "--control)")
        token = request.headers.get("x-lapcast-token", "")
        if not secrets.compare_digest(token.encode(), settings.token.encode()):
            return _refuse(403, "a control request needs the token of the page's URL")
        origin = request.headers.get("origin", "")
        if not origin or urlsplit(origin).netloc != request.headers.get("host", ""):
            return _refuse(403, f"control requests come from the page itself, not from "
                                f"{origin or 'an unknown origin'}")
        payload = await request.body()
        if len(payload) > 4096:
            return _refuse(413, "a control command is a small JSON object")
        command = parse_command(payload)
        if isinstance(command, Rejection):
            return _refuse(400, command.reason)
        problem = await publish_control(payload)
        if problem is not None:
            return _refuse(503, problem)
        return JSONResponse({"sent": msgspec.json.decode(payload)}, status_code=202)

    static = StaticFiles(packages=[("lapcast.web", "static")])
    return Starlette(routes=[
        Route("/", index),
        Route("/api/snapshot", snapshot),
        Route("/api/events", events),
        Route("/api/control", control, methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ])


def _refuse(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)
