"""``lapcast board --control``: the replay's keys, sent as control commands.

The same keys as ``lapcast replay`` on its terminal: space pauses or resumes, ``+``
and ``-`` double and halve the speed, the arrows seek ±1 min (left/right) and
±10 min (down/up), ``q`` quits. ``commands_for(keys, status)`` is pure: it turns one
read of the keyboard into control payloads from the engine status the board shows
(its state, speed and clock); ``control_keys`` reads the keyboard (cbreak mode,
restored on exit) and publishes them on the session's control topic, with the
board's own credentials. The engine answers on its status, which the board shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import aiomqtt
import msgspec
import structlog

from lapcast.board.store import BoardStore
from simulator import topics
from simulator.connection import BrokerSettings
from simulator.contract import EngineLost, EngineStatus

__all__ = ["QUIT", "commands_for", "control_keys"]

log = structlog.get_logger()

SEEK_SMALL_MS: Final = 60_000
SEEK_LARGE_MS: Final = 600_000
SLOWEST_FROM_MAX: Final = 1024.0  # "-" at max speed goes down to this factor
QUIT: Final = {"command": "quit"}  # not a control command: the board stops
_ARROWS: Final = {b"C": SEEK_SMALL_MS, b"D": -SEEK_SMALL_MS, b"A": SEEK_LARGE_MS,
                  b"B": -SEEK_LARGE_MS}


def commands_for(data: bytes, status: EngineStatus | EngineLost | None) -> list[dict[str, Any]]:
    """The commands one read of keys asks for (``QUIT`` for ``q``).

    With no status yet the engine is taken as running at 1x from 0; after its last will
    (``EngineLost``) its speed is unknown (``-`` starts from the slowest-from-max).
    """
    out: list[dict[str, Any]] = []
    live = status if isinstance(status, EngineStatus) else None
    paused = status is not None and status.state == "paused"
    speed: float | str | None = (live.speed if live is not None
                                 else 1.0 if status is None else None)
    clock = live.session_time_ms if live is not None else 0
    end_ms = live.end_ms if live is not None else None
    i = 0
    while i < len(data):
        key = data[i:i + 1]
        if key == b" ":
            out.append({"command": "resume" if paused else "pause"})
            paused = not paused
        elif key in (b"+", b"=") and isinstance(speed, int | float):
            speed = float(speed) * 2
            out.append({"command": "speed", "factor": speed})
        elif key in (b"-", b"_"):
            speed = SLOWEST_FROM_MAX if not isinstance(speed, int | float) else float(speed) / 2
            out.append({"command": "speed", "factor": speed})
        elif key == b"\x1b" and data[i + 1:i + 2] == b"[" and data[i + 2:i + 3] in _ARROWS:
            clock = max(clock + _ARROWS[data[i + 2:i + 3]], 0)
            if end_ms is not None:
                clock = min(clock, end_ms)
            out.append({"command": "seek", "to": clock})
            i += 2
        elif key in (b"q", b"Q"):
            out.append(QUIT)
        i += 1
    return out


@contextlib.contextmanager
def _cbreak(on_keys: Callable[[bytes], None]) -> Iterator[None]:
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved: Any = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, lambda: on_keys(os.read(fd, 64)))
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def control_keys(broker: BrokerSettings, session_id: str,
                       quit_board: Callable[[], None]) -> None:
    """Send the keys' commands until cancelled; ``quit_board()`` on ``q``.

    It follows the engine's retained status on its own connection: ``+``, ``-`` and
    the arrows start from the speed and clock the board shows.
    """
    store = BoardStore(session_id)
    control, status = topics.control(session_id), topics.status(session_id)
    pending: asyncio.Queue[bytes] = asyncio.Queue()
    if not sys.stdin.isatty():
        log.warning("board --control: stdin is not a terminal, no keys to read")
        await asyncio.Event().wait()

    async def follow(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            store.offer(str(message.topic), payload)

    with _cbreak(pending.put_nowait):
        while True:
            try:
                async with broker.client() as client, asyncio.TaskGroup() as tasks:
                    await client.subscribe(status, qos=1)
                    follower = tasks.create_task(follow(client))
                    while True:
                        data = await pending.get()
                        for command in commands_for(data, store.snapshot().status):
                            if command is QUIT:
                                follower.cancel()
                                quit_board()
                                return
                            # Stamped: a command replayed later (3.1.1) is stale.
                            stamped = {**command, "issued_at": time.time_ns() // 1_000_000}
                            await client.publish(control, msgspec.json.encode(stamped), qos=1)
            except aiomqtt.MqttError as exc:
                log.info("board --control lost the broker", error=str(exc))
                await asyncio.sleep(1.0)
