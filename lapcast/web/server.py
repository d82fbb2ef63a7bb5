"""``lapcast web``'s I/O: listen to the session's retained topics, serve the pages.

Three tasks share one ``WebHub``: ``listen`` feeds it every message of the session's
state, status, meta and consumer-health topics (reconnecting with backoff; the broker
re-sends the retained messages on every subscribe, so a late start or a reconnect
shows everything at once), ``pump`` sends every page the delta of the last tick at
``flush_hz``, and uvicorn serves HTTP. Control commands go out on the listener's own
connection, with the credentials this process was started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import suppress

import aiomqtt
import msgspec
import structlog
import uvicorn

from lapcast.web.app import Broadcast, WebSettings, build_app, sse
from lapcast.web.hub import WebHub
from simulator import topics
from simulator.connection import BrokerSettings
from simulator.errors import LapcastError
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.payload import payload_bytes
from simulator.mqtt.reconnect import Reconnector

__all__ = ["page_url", "serve"]

log = structlog.get_logger()

class _Link:
    """The current broker connection, for the control door (None while reconnecting)."""

    client: aiomqtt.Client | None = None


async def listen(broker: BrokerSettings, hub: WebHub, link: _Link) -> None:
    """Feed ``hub`` with the session's messages until cancelled; reconnect on loss."""
    filters = [(topic, 1) for topic in hub.topics()]
    store = hub.store

    def lost(exc: aiomqtt.MqttError, delay_s: float) -> None:
        link.client = None
        store.set_connection(f"broker unreachable ({exc}); retrying in {round(delay_s, 1):g} s")

    # The one reconnect loop (as the terminal board's); never stopped: the page listens
    # until it is cancelled.
    reconnector = Reconnector(what="web", stop=asyncio.Event(), on_lost=lost,
                              backoff=Backoff(min_s=0.4, max_s=5.0), log_level="info")

    async def connection() -> None:
        # A refusal (bad credentials, not authorized) raises BrokerError: not retried.
        async with broker.client() as client:
            await client.subscribe(filters)
            reconnector.connected()
            link.client = client
            store.set_connection("")
            try:
                async for message in client.messages:
                    hub.offer(str(message.topic), payload_bytes(message))
            finally:
                link.client = None

    await reconnector.run(connection)


async def pump(hub: WebHub, broadcast: Broadcast, settings: WebSettings) -> None:
    """Send each tick's delta to every page."""
    period = 1.0 / settings.flush_hz
    while True:
        delta = hub.flush()
        if delta is not None:
            broadcast.send(sse("delta", msgspec.json.encode(delta)))
        await asyncio.sleep(period)


class _Server(uvicorn.Server):
    """uvicorn's server, stopping cleanly on SIGINT/SIGTERM with exit status 0.

    uvicorn re-raises a captured signal once it has shut down (the process would die
    of it); ``lapcast web`` is one child of a supervisor among others, and a stop
    it was asked for is a clean exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def page_url(settings: WebSettings, port: int) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{port}/"
    return f"{url}?token={settings.token}" if settings.control else url


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LapcastError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(broker: BrokerSettings, settings: WebSettings, *,
                ready: Callable[[str], None] | None = None) -> None:
    """Serve the session's page until SIGINT/SIGTERM; ``ready(url)`` once listening."""
    hub = WebHub(settings.session_id)
    broadcast = Broadcast()
    link = _Link()
    control_topic = topics.control(settings.session_id)

    async def publish_control(payload: bytes) -> str | None:
        client = link.client
        if client is None:
            return "not connected to the broker right now; try again in a moment"
        try:
            await client.publish(control_topic, payload, qos=1, timeout=5)
        except aiomqtt.MqttError as exc:
            return f"the broker did not take the command: {exc}"
        log.info("control command sent", payload=payload.decode(errors="replace"))
        return None

    app = build_app(hub, settings, broadcast, publish_control)
    sock = _bind(settings.host, settings.port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1)
    server = _Server(config)
    async with asyncio.TaskGroup() as tasks:
        listener = tasks.create_task(listen(broker, hub, link))
        pumper = tasks.create_task(pump(hub, broadcast, settings))
        web = tasks.create_task(server.serve(sockets=[sock]))
        while not server.started and not web.done():
            await asyncio.sleep(0.02)
        if server.started and ready is not None:
            ready(page_url(settings, sock.getsockname()[1]))
        # Open streams would hold the shutdown: end them once uvicorn is asked to stop.
        while not web.done() and not server.should_exit:
            await asyncio.sleep(0.1)
        broadcast.end()
        with suppress(asyncio.CancelledError):
            await web
        listener.cancel()
        pumper.cancel()
