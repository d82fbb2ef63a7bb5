"""The MQTT protocol profile (v5, 3.1.1, auto) and several broker endpoints."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiomqtt
import msgspec
import pytest

from lapcast.cli import build_parser
from lapcast.cli.common import broker_settings
from lapcast.topology import MosquittoProcess
from lapcast.topology.mosquitto import free_port
from lapcast.topology.nats import NatsCluster
from simulator.contract import (
    CatchupReply,
    CatchupRequest,
    LapCompleted,
    decode_catchup_reply,
    encode,
    envelope,
    unwrap_envelope,
)
from simulator.errors import BrokerError, LapcastError
from simulator.mqtt.backoff import Backoff
from simulator.mqtt.reconnect import Reconnector
from simulator.mqtt.settings import parse_broker_url, v311_kwargs
from simulator.replay.control import Pause, Rejection, parse_command

LAPCAST = [sys.executable, "-m", "lapcast"]


class TestBrokerList:
    def test_a_list_gives_every_endpoint_with_one_scheme_and_credentials(self) -> None:
        """`mqtt://u:p@a:1,mqtt://b:2,c` : three endpoints, the first URL's credentials."""
        s = parse_broker_url("mqtt://u:p@a:1,mqtt://b:2, mqtt://c", environ={})
        assert s.endpoints == (("a", 1), ("b", 2), ("c", 1883))
        assert (s.username, s.password) == ("u", "p")
        assert s.describe() == "mqtt://u:***@a:1"
        assert "p@" not in s.describe_all() and s.describe_all().count("***") == 3

    @pytest.mark.parametrize(("url", "message"), [
        ("mqtt://a:1,mqtts://b:2", "mixes mqtt:// and mqtts://"),
        ("mqtt://a:1,,mqtt://b:2", "an empty entry"),
        ("mqtt://a:1,http://b:2", "scheme must be"),
    ])
    def test_a_bad_list_is_one_clear_error(self, url: str, message: str) -> None:
        """A list mixing schemes, with an empty entry or a bad URL is refused, naming it."""
        with pytest.raises(LapcastError, match=message):
            parse_broker_url(url, environ={})

    def test_the_next_endpoint_after_a_failure_wraps_around(self) -> None:
        """A failed connection moves the next client to the next endpoint, round the list."""
        s = parse_broker_url("mqtt://a:1,mqtt://b:2", environ={})
        assert s.client_kwargs()["hostname"] == "a"
        s.route.failed = True
        assert s.client_kwargs()["hostname"] == "b"
        assert s.client_kwargs()["hostname"] == "b"  # no failure: stays
        s.route.failed = True
        assert s.client_kwargs()["port"] == 1
        assert s.route.rotations == 2

    def test_environment_and_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`LAPCAST_MQTT_BROKER` and `LAPCAST_MQTT_VERSION` apply when the options are
        absent; the options win."""
        monkeypatch.setenv("LAPCAST_MQTT_BROKER", "mqtt://x:1,mqtt://y:2")
        monkeypatch.setenv("LAPCAST_MQTT_VERSION", "3.1.1")
        args = build_parser().parse_args(["board", "--session", "s1"])
        s = broker_settings(args)
        assert s.endpoints == (("x", 1), ("y", 2)) and s.mqtt_version == "3.1.1"
        args = build_parser().parse_args(["board", "--session", "s1", "--broker",
                                          "mqtt://z:3", "--mqtt-version", "5"])
        s = broker_settings(args)
        assert s.endpoints == (("z", 3),) and s.mqtt_version == "5"

    def test_a_bad_version_exits_2(self) -> None:
        """`--mqtt-version 4` and `LAPCAST_MQTT_VERSION=4` are refused before connecting."""
        done = subprocess.run([*LAPCAST, "board", "--session", "s1", "--mqtt-version", "4"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "--mqtt-version" in done.stderr
        with pytest.raises(LapcastError, match="LAPCAST_MQTT_VERSION"):
            parse_broker_url("mqtt://a", environ={"LAPCAST_MQTT_VERSION": "4"})

    async def test_a_dead_first_node_costs_one_backoff(self, broker: MosquittoProcess) -> None:
        """With a closed port first, the reconnect loop's second attempt reaches the broker."""
        s = parse_broker_url(f"mqtt://127.0.0.1:{free_port()},{broker.url}", environ={})
        stop = asyncio.Event()
        reconnector = Reconnector(what="test", stop=stop, backoff=Backoff(min_s=0.05))
        reached: list[str] = []

        async def connection() -> None:
            async with s.client(identifier="rotating") as client:
                reconnector.connected()
                reached.append(client.broker)

        async with asyncio.timeout(10):
            await reconnector.run(connection)
        assert reached == [broker.url]
        assert reconnector.reconnects == 1 and s.route.rotations == 1


class TestProtocol:
    def test_v311_kwargs_say_the_same_in_3_1_1(self) -> None:
        """clean_start=False becomes clean_session=False; CONNECT properties go."""
        kwargs = v311_kwargs({"clean_start": False, "properties": object(), "hostname": "h"})
        assert kwargs["protocol"] == aiomqtt.ProtocolVersion.V311
        assert kwargs["clean_session"] is False
        assert "clean_start" not in kwargs and "properties" not in kwargs
        assert v311_kwargs({})["clean_session"] is True

    async def test_auto_is_v5_on_mosquitto_and_3_1_1_when_asked(
            self, broker: MosquittoProcess) -> None:
        """Mosquitto under auto speaks v5 (the default profile, unchanged); --mqtt-version
        3.1.1 speaks 3.1.1 to it."""
        auto = parse_broker_url(broker.url, environ={})
        async with auto.client() as client:
            assert not client.mqtt_v311
        assert auto.route.protocol == "5"
        old = parse_broker_url(broker.url, mqtt_version="3.1.1", environ={})
        async with old.client(clean_start=False, identifier="old-one") as client:
            assert client.mqtt_v311
            await client.publish("lapcast/test/x", b"1", qos=1)

    async def test_auto_falls_back_on_nats_and_5_says_what_to_do(
            self, nats_cluster: NatsCluster) -> None:
        """NATS refuses v5 with 0x84: auto connects in 3.1.1 and keeps to it; an explicit
        v5 is a BrokerError that names --mqtt-version."""
        auto = parse_broker_url(nats_cluster.url, environ={})
        async with auto.client(clean_start=False, identifier="fallback") as client:
            assert client.mqtt_v311
            await client.subscribe([("lapcast/test/#", 1)])
        assert auto.route.protocol == "3.1.1" and auto.is_v311()
        five = parse_broker_url(nats_cluster.url, mqtt_version="5", environ={})
        with pytest.raises(BrokerError, match=r"0x84.*--mqtt-version 3\.1\.1"):
            async with five.client():
                pass


class TestPayloadCarries:
    def test_envelope_keeps_the_event_bytes(self) -> None:
        """An enveloped event unwraps to the very bytes (JSON and msgpack); a bare one is
        returned as it is, without a stamp."""
        event = LapCompleted(session_id="s1", epoch=1, seq=7, session_time_ms=90_000,
                             car="8", driver="D", lap=2, lap_time_ms=100_000)
        for encoding in ("json", "msgpack"):
            body = encode(event, encoding)  # type: ignore[arg-type]
            wrapped = envelope(body, 123, encoding)  # type: ignore[arg-type]
            assert unwrap_envelope(wrapped) == (body, 123)
            assert unwrap_envelope(body) == (body, None)
        assert envelope(b"{}", 5) == b'{"type":"envelope","published_at_ns":5,"message":{}}'

    def test_catchup_request_and_reply_carry_the_correlation(self) -> None:
        """A 3.1.1 request names its reply topic and correlation; the reply repeats it."""
        request = CatchupRequest(epoch=1, from_seq=1, reply_to="a/b", correlation="ab01")
        decoded = msgspec.json.decode(encode(request), type=CatchupRequest)
        assert (decoded.reply_to, decoded.correlation) == ("a/b", "ab01")
        reply = decode_catchup_reply(encode(CatchupReply(epoch=1, correlation="ab01")))
        assert reply.correlation == "ab01"

    def test_a_stale_control_command_is_rejected(self) -> None:
        """`issued_at` older than 5 s: rejected as stale; recent or absent: accepted."""
        now = 1_800_000_000_000
        stale = parse_command(b'{"command":"pause","issued_at":%d}' % (now - 6000), now_ms=now)
        assert isinstance(stale, Rejection) and "stale" in stale.reason
        fresh = parse_command(b'{"command":"pause","issued_at":%d}' % (now - 100), now_ms=now)
        assert fresh == Pause()
        assert parse_command(b'{"command":"pause"}', now_ms=now) == Pause()
