"""What the engine reads: control commands and catch-up requests.

``Requests.read`` is the reader loop of a connection (it is also what notices a lost
connection: aiomqtt's message iterator raises). A control message is parsed, carried
out (``ReplayEngine.apply``) and answered on status, ``accepted`` or ``rejected``; a
catch-up request is answered by ``CatchupService`` in a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from simulator.replay.catchup import CatchupService
from simulator.replay.control import Command, Rejection, accepted, parse_command
from simulator.replay.status import StatusPublisher

if TYPE_CHECKING:
    from simulator.replay.engine import ReplayStats

__all__ = ["Requests"]

log = structlog.get_logger()


class Requests:
    """The reader of one engine: control and catch-up topics."""

    def __init__(self, *, control_topic: str, catchup_topic: str, catchup: CatchupService,
                 apply: Callable[[Command], Rejection | None], status: StatusPublisher,
                 spawn: Callable[[Coroutine[Any, Any, None]], object],
                 stats: ReplayStats) -> None:
        self.control_topic = control_topic
        self.catchup_topic = catchup_topic
        self.catchup = catchup
        self.apply = apply
        self.status = status
        self.spawn = spawn  # a task of the current connection
        self.stats = stats

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        # Retain-as-published (MQTT v5): a retained control message keeps its retain
        # flag when it is delivered live too, not only at subscribe time, so the
        # reader can ignore every one of them (a command acts once, when it is sent).
        control = SubscribeOptions(qos=1, retainAsPublished=True)
        return [(self.control_topic, control), (self.catchup_topic, SubscribeOptions(qos=1))]

    async def read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self.control_topic:
                if message.retain:
                    log.warning("retained control message ignored", topic=topic)
                    continue
                self.on_control(client, payload)
            elif topic == self.catchup_topic:
                self.spawn(self._serve_catchup(client, message))

    def on_control(self, client: aiomqtt.Client, payload: bytes) -> None:
        command = parse_command(payload)
        rejection = command if isinstance(command, Rejection) else self.apply(command)
        # The answer goes out from a task of its own: the reader never waits on the
        # broker, since it is what notices a lost connection.
        if rejection is not None:
            log.warning("control command rejected", command=rejection.command,
                        reason=rejection.reason)
            self.spawn(self.status.publish(client, rejected=rejection))
        else:
            assert not isinstance(command, Rejection)
            self.spawn(self.status.publish(client, accepted=accepted(command)))

    async def _serve_catchup(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        try:
            outcome = await self.catchup.handle(client, message)
        except (aiomqtt.MqttError, asyncio.CancelledError):
            raise
        except Exception:  # a bad request must not take the engine down
            log.exception("catch-up request failed")
            return
        if outcome == "no reply topic":
            self.stats.catchup_without_reply_topic += 1
        elif outcome == "reply topic refused":
            self.stats.catchup_reply_topic_refused += 1
