"""The live consumer runtime: the MQTT edge around one pure fold.

One ``ConsumerRunner`` runs one consumer for one session. It wires the jobs,
each in its own module, and runs them over one connection after another:

* **the connection** (here): a stable client id, MQTT v5 ``clean_start=False`` on
  every connect (aiomqtt 2.x would otherwise start clean on a reconnect) and a
  SessionExpiryInterval, so the broker queues events while the consumer is away; a
  lost connection is retried by ``simulator.mqtt.Reconnector`` with backoff;
* **the hot path** (``inbound.py``): receive, decode, guard, sequence, fold;
* **latency stamps** (``stamps.py``): the engine's publish time of what a state reflects;
* **catch-up** (``catchup_loop.py``): broker acknowledgements are not progress (paho
  acknowledges on receipt), so every (re)connect and every gap fetches what lies
  beyond the last applied seq, from the engine or the journal;
* **dead letters** (``dead_letter.py``): bad input is data, counted and published;
* **publications and health** (``publisher.py``, ``health.py``): at most one every
  N ms, the retained state stamped with ``(epoch, seq)``, the changes, the
  ``on_changes`` hook, and the retained health (with a last will saying ``lost``);
* **checkpoints** (``checkpoint_schedule.py``): every K events or T ms, and on a
  clean stop; a restart resumes from the checkpoint and catches up the rest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from consumers import checkpoint
from consumers.api import Consumer
from consumers.catchup_client import reply_topic
from consumers.catchup_loop import CatchupLoop
from consumers.checkpoint_schedule import CHECKPOINT_BUDGET, CheckpointSchedule
from consumers.dead_letter import DeadLetterOutbox
from consumers.folding import Folder
from consumers.health import Counters, Health
from consumers.identity import UNKNOWN_CHECKPOINT, LogIdentity
from consumers.inbound import ConsumerFailed, Inbound
from consumers.publisher import RENDER_BUDGET, Publisher
from consumers.sequencer import Sequencer
from consumers.settings import RunnerSettings, default_client_id, default_state_dir
from consumers.stamps import PUBLISHED_AT, Stamps
from simulator import topics
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.reconnect import Reconnector
from simulator.mqtt.settings import BrokerSettings
from simulator.mqtt.workarounds import Inbox, install_properties_speedup, run_until

__all__ = [
    "CHECKPOINT_BUDGET",
    "PUBLISHED_AT",
    "RENDER_BUDGET",
    "ConsumerFailed",
    "ConsumerRunner",
    "Counters",
    "RunnerSettings",
    "default_client_id",
    "default_state_dir",
]

log = structlog.get_logger()

# Every incoming MQTT v5 message builds a paho Properties: make that cheap.
install_properties_speedup()


class ConsumerRunner:
    """Runs ``consumer`` live for one session until ``stop()`` (SIGTERM, SIGINT)."""

    def __init__(
        self, consumer: Consumer[Any], broker: BrokerSettings, settings: RunnerSettings
    ) -> None:
        self.consumer = consumer
        self.broker = broker
        self.settings = settings
        name = consumer.name
        session = self.session_id = settings.session_id
        self.client_id = settings.client_id or default_client_id(name, session)
        self.events_topic = topics.events(session)
        self.status_topic = topics.status(session)
        self.state_topic = topics.state(session, name)
        self.health_topic = topics.consumer_status(session, name)
        self.reply_topic = reply_topic(session, name, self.client_id)

        self.checkpoint_file = checkpoint.checkpoint_path(settings.state_dir, session, name)
        saved = checkpoint.load(self.checkpoint_file, session_id=session, consumer=name)
        reset = None
        if saved is not None and saved.log_id is None:
            # Written before log ids: the state of an unknown log, never resumed.
            reset = UNKNOWN_CHECKPOINT
            log.warning("checkpoint of an unknown log: folding from the start",
                        consumer=name, path=str(self.checkpoint_file), epoch=saved.epoch,
                        seq=saved.seq)
            saved = None
        folder = saved.folder(consumer) if saved else Folder(consumer)
        self.sequencer = Sequencer(folder, max_pending=settings.max_pending)
        self.resumed_from = (folder.epoch, folder.seq) if saved else None
        self.stamps = Stamps(published_at_ns=saved.published_at_ns if saved else 0,
                             session_time_ms=saved.session_time_ms if saved else 0)

        self.counters = Counters()
        self._stop = asyncio.Event()
        self.health_report = Health(consumer=name, session_id=session,
                                    client_id=self.client_id, sequencer=self.sequencer,
                                    counters=self.counters)
        self.publisher = Publisher(
            consumer=consumer, session_id=session, sequencer=self.sequencer,
            stamps=self.stamps, health=self.health_report, state_topic=self.state_topic,
            changes_topic=topics.state_changes(session, name), health_topic=self.health_topic,
            publish_ms=settings.publish_ms, health_ms=settings.health_ms)
        dirty = self.publisher.dirty
        self.identity = LogIdentity(consumer=name, sequencer=self.sequencer,
                                    stamps=self.stamps, dirty=dirty, reset=reset)
        self.health_report.identity = self.identity
        self.outbox = DeadLetterOutbox(consumer=name, topic=topics.dead_letter(session),
                                       counters=self.counters, dirty=dirty)
        self.checkpoints = CheckpointSchedule(
            path=self.checkpoint_file, session_id=session, consumer=name,
            sequencer=self.sequencer, stamps=self.stamps, counters=self.counters,
            every_events=settings.checkpoint_events, every_ms=settings.checkpoint_ms)
        self.catchup = CatchupLoop(
            consumer=name, session_id=session, reply_topic=self.reply_topic,
            journal=settings.journal, timeout_s=settings.catchup_timeout_s,
            retry_max_s=settings.reconnect_max_s, sequencer=self.sequencer,
            counters=self.counters, health=self.health_report, outbox=self.outbox,
            dirty=dirty)
        self.inbound = Inbound(
            consumer=name, session_id=session, events_topic=self.events_topic,
            status_topic=self.status_topic, reply_topic=self.reply_topic,
            state_topic=self.state_topic, max_payload_bytes=settings.max_payload_bytes,
            sequencer=self.sequencer, stamps=self.stamps, counters=self.counters,
            health=self.health_report, publisher=self.publisher, outbox=self.outbox,
            checkpoints=self.checkpoints, catchup=self.catchup, identity=self.identity)
        # Caught-up events take the same fold step as live ones.
        self.catchup.offer = self.inbound.offer
        self.catchup.names_log = self.inbound.engine_names_log
        self.catchup.epoch_refused = self.identity.epoch_refused
        self._reconnector = Reconnector(
            what=f"consumer {name}", stop=self._stop, on_lost=self._lost,
            backoff=Backoff(min_s=settings.reconnect_min_s, max_s=settings.reconnect_max_s))

    @property
    def folder(self) -> Folder[Any]:
        return self.sequencer.folder

    def health(self) -> dict[str, Any]:
        """The consumer's health, as published on ``.../consumers/{name}/status``."""
        return self.health_report.document()

    def health_payload(self) -> bytes:
        return self.health_report.payload()

    # --- lifecycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to stop cleanly: publish, checkpoint, disconnect."""
        self._stop.set()

    async def run(self) -> None:
        """Run until stopped; reconnect (with backoff) whenever the broker goes away.

        Refusals (bad credentials, untrusted certificate, a publish or subscription
        the ACL forbids) are ``BrokerError`` and end the run.
        """
        log.info("consumer starting", consumer=self.consumer.name, session=self.session_id,
                 client_id=self.client_id, broker=self.broker.describe(),
                 resumed_from=self.resumed_from)
        try:
            await self._reconnector.run(self._connection)
        finally:
            self.health_report.stopping = True
            await self.checkpoints.final()
        log.info("consumer stopped", consumer=self.consumer.name, epoch=self.folder.epoch,
                 seq=self.folder.seq)

    def _lost(self, exc: aiomqtt.MqttError, delay_s: float) -> None:
        self.counters.reconnects += 1

    async def _connection(self) -> None:
        """One connection: subscribe, run the jobs until stop or disconnection."""
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.settings.session_expiry_s
        will = aiomqtt.Will(topic=self.health_topic, payload=self.health_report.lost_payload(),
                            qos=1, retain=True)
        inbox = Inbox()
        client = self.broker.client(
            identifier=self.client_id,
            clean_start=False,  # on every connect, not only the first
            properties=connect,
            will=will,
            keepalive=self.settings.keepalive_s,
            queue_type=inbox,
        )
        async with client:
            self._reconnector.connected()
            self.catchup.connected(client)
            self.inbound.connected(v311=client.mqtt_v311)
            await self._subscribe(client)
            log.info("consumer connected", consumer=self.consumer.name,
                     broker=self.broker.describe())
            # Whatever was acknowledged but not applied before is fetched again.
            self.sequencer.request_sync()
            self.catchup.wake.set()
            self.publisher.dirty.set()
            try:
                await run_until(self._stop, [
                    self.inbound.receive(client, inbox.queue),
                    self.catchup.run(),
                    self.publisher.run(client),
                    self.outbox.run(client),
                    self.publisher.heartbeat(),
                    self.checkpoints.run(),
                ])
            finally:
                self.catchup.disconnected()
            # A clean stop: the last state and a health saying "stopped", still connected.
            self.health_report.stopping = True
            await self.checkpoints.final()
            try:
                await self.publisher.publish(client)
            except aiomqtt.MqttError as exc:
                log.warning("final publication failed", error=str(exc))

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        wanted = [
            # Retain-as-published: a retained (forged) event shows its flag, so it is refused.
            (self.events_topic, SubscribeOptions(qos=1, retainAsPublished=True)),
            (self.status_topic, SubscribeOptions(qos=1)),
            (self.reply_topic, SubscribeOptions(qos=1)),
            # Our own retained state, to check it and overwrite anything we did not write.
            (self.state_topic, SubscribeOptions(qos=1, noLocal=True)),
        ]
        # A refused filter raises BrokerError naming it (CheckedClient).
        await client.subscribe(wanted)
