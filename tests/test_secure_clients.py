"""lapcast's side of the secure profile: broker URLs, credentials, and refusals as errors.

``simulator.connection`` parses ``mqtt[s]://`` URLs, options and environment
variables without ever showing a password, and ``CheckedClient`` turns what the
broker refuses into a ``BrokerError`` naming the topic, once, instead of a silent
success or an endless retry.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from lapcast.cli.common import add_broker_options, broker_settings
from lapcast.mosquitto import MosquittoProcess, free_port
from simulator import topics
from simulator.connection import (
    ENV_CA_FILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    check_puback,
    check_suback,
    is_final,
    parse_broker_url,
)
from simulator.errors import BrokerError, LapcastError

Env = Callable[[str], dict[str, str]]
SECRET = "s3cret-Pa55word"


def reason(packet: int, name: str) -> ReasonCode:
    return ReasonCode(packet, name)


class TestSecureBrokerUrl:
    def test_secure_options_override_url_and_environment(self) -> None:
        """Options win over the URL, the URL over LAPCAST_MQTT_* variables."""
        env = {ENV_USERNAME: "env-user", ENV_PASSWORD: "env-pw", ENV_CA_FILE: "/env/ca.pem"}
        from_env = parse_broker_url("mqtts://broker.example", environ=env)
        assert (from_env.username, from_env.password, from_env.ca_file, from_env.port) == (
            "env-user", "env-pw", "/env/ca.pem", 8883)
        from_url = parse_broker_url("mqtts://url-user:url%40pw@broker.example:9999", environ=env)
        assert (from_url.username, from_url.password, from_url.port) == (
            "url-user", "url@pw", 9999)
        from_options = parse_broker_url("mqtts://url-user:url-pw@broker.example", environ=env,
                                        username="opt-user", password="opt-pw",
                                        ca_file="/opt/ca.pem")
        assert (from_options.username, from_options.password, from_options.ca_file) == (
            "opt-user", "opt-pw", "/opt/ca.pem")

    def test_secure_password_never_shown(self) -> None:
        """repr, str, describe() and URL errors mask the password."""
        settings = parse_broker_url(f"mqtts://engine:{SECRET}@127.0.0.1:8883", environ={})
        for text in (repr(settings), str(settings), settings.describe(), f"{settings}"):
            assert SECRET not in text
            assert "engine:***@127.0.0.1:8883" in text
        with pytest.raises(LapcastError) as caught:
            parse_broker_url(f"http://engine:{SECRET}@host", environ={})
        assert SECRET not in str(caught.value) and "***" in str(caught.value)

    def test_secure_ca_file_option_needs_mqtts(self) -> None:
        """--ca-file with a plain mqtt:// URL is a slip that would send passwords in clear."""
        with pytest.raises(LapcastError, match="use mqtts://"):
            parse_broker_url("mqtt://127.0.0.1:1883", ca_file="ca.crt", environ={})

    def test_secure_environment_ca_file_ignored_for_plain_url(self) -> None:
        """A CA file from the environment does not stop a plain dev broker URL from working."""
        settings = parse_broker_url("mqtt://127.0.0.1:1883", environ={ENV_CA_FILE: "ca.crt"})
        assert settings.ca_file is None and not settings.tls
        assert "tls_context" not in settings.client_kwargs()

    def test_secure_password_without_username_refused(self) -> None:
        """A password alone is refused with a message naming the username option."""
        with pytest.raises(LapcastError, match=r"--username or \$LAPCAST_MQTT_USERNAME"):
            parse_broker_url("mqtts://127.0.0.1", environ={ENV_PASSWORD: SECRET})

    def test_secure_missing_ca_file_named(self, tmp_path: Path) -> None:
        """A CA file that does not exist, or is not PEM, is named in the error."""
        missing = tmp_path / "nope.crt"
        with pytest.raises(LapcastError, match=re.escape(str(missing)) + ": not found"):
            parse_broker_url("mqtts://127.0.0.1", ca_file=str(missing), environ={}).client()
        garbage = tmp_path / "garbage.crt"
        garbage.write_text("not a certificate\n")
        with pytest.raises(LapcastError, match=re.escape(str(garbage)) + ": not a PEM"):
            parse_broker_url("mqtts://127.0.0.1", ca_file=str(garbage), environ={}).client()

    def test_secure_cli_options_and_environment(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Every networked command's --broker/--username/--password/--ca-file and env vars."""
        parser = argparse.ArgumentParser()
        add_broker_options(parser)
        monkeypatch.setenv(ENV_USERNAME, "board")
        monkeypatch.setenv(ENV_PASSWORD, SECRET)
        monkeypatch.setenv(ENV_CA_FILE, str(tmp_path / "ca.crt"))
        settings = broker_settings(parser.parse_args(["--broker", "mqtts://localhost:18883"]))
        assert (settings.tls, settings.host, settings.port) == (True, "localhost", 18883)
        assert (settings.username, settings.password) == ("board", SECRET)
        assert settings.ca_file == str(tmp_path / "ca.crt")
        settings = broker_settings(parser.parse_args([
            "--broker", "mqtts://localhost", "--username", "engine", "--password", "x",
            "--ca-file", "/etc/ca.pem"]))
        assert (settings.username, settings.password, settings.ca_file) == (
            "engine", "x", "/etc/ca.pem")


class TestSecureRefusalChecks:
    def test_secure_puback_successes_pass(self) -> None:
        """Reason codes below 0x80 (0x10 no matching subscribers included) are successes."""
        check_puback("a/b", reason(PacketTypes.PUBACK, "Success"))
        check_puback("a/b", reason(PacketTypes.PUBACK, "No matching subscribers"))
        check_puback("a/b", None)

    def test_secure_puback_refusal_names_topic_and_code(self) -> None:
        """A refused PUBACK becomes a BrokerError naming the topic and the code."""
        with pytest.raises(BrokerError, match=r"publish to a/b: not authorized \(reason code "
                                              r"0x87\)"):
            check_puback("a/b", reason(PacketTypes.PUBACK, "Not authorized"))
        with pytest.raises(BrokerError, match="0x97"):
            check_puback("a/b", reason(PacketTypes.PUBACK, "Quota exceeded"))

    def test_secure_suback_refusal_names_each_refused_topic(self) -> None:
        """Only the refused filters of a SUBACK are named (v5 codes and v3 0x80)."""
        granted = reason(PacketTypes.SUBACK, "Granted QoS 1")
        refused = reason(PacketTypes.SUBACK, "Not authorized")
        check_suback(["x/1", "x/2"], [granted, granted])
        with pytest.raises(BrokerError) as caught:
            check_suback(["x/1", "x/2", "x/3"], [granted, refused, refused])
        assert "x/2 (not authorized, reason code 0x87)" in str(caught.value)
        assert "x/3" in str(caught.value) and "x/1" not in str(caught.value)
        with pytest.raises(BrokerError, match="x/9"):
            check_suback(["x/9"], (0x80,))

    def test_secure_refusals_are_final_and_disconnections_are_not(self) -> None:
        """Reconnect loops stop on BrokerError and retry aiomqtt.MqttError."""
        assert is_final(BrokerError("refused"))
        assert not is_final(aiomqtt.MqttError("connection lost"))


class TestSecureCheckedClient:
    async def test_secure_concurrent_publishes_each_report_their_own_refusal(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """Pipelined publishes: each refused one raises naming its topic, the others succeed."""
        settings = parse_broker_url(secure_broker.url, environ=secure_env("class-poles"))
        allowed = topics.state(session_id, "class-poles")
        refused = [topics.events(session_id), topics.meta(session_id),
                   topics.state(session_id, "running-order")]
        targets = [allowed if i % 2 else refused[i // 2 % 3] for i in range(60)]
        async with settings.client() as client:
            results = await asyncio.gather(
                *(client.publish(t, b"{}", qos=1) for t in targets), return_exceptions=True)
        for topic, result in zip(targets, results, strict=True):
            if topic == allowed:
                assert result is None
            else:
                assert isinstance(result, BrokerError)
                assert f"publish to {topic}:" in str(result)

    async def test_secure_refusal_is_reported_at_once_and_the_client_carries_on(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """A refused publish fails fast (no retry) and the same connection keeps working."""
        settings = parse_broker_url(secure_broker.url, environ=secure_env("board"))
        async with settings.client() as client:
            started = time.monotonic()
            with pytest.raises(BrokerError):
                await client.publish(topics.control(session_id), b"{}", qos=1)
            assert time.monotonic() - started < 1.0
            await client.subscribe(topics.state(session_id, "running-order"), qos=1)

    async def test_secure_tls_client_on_a_plain_listener_gets_a_hint(
        self, broker: MosquittoProcess
    ) -> None:
        """mqtts:// against a plain listener fails at the handshake, hinting at the URL."""
        settings = parse_broker_url(broker.url.replace("mqtt://", "mqtts://"), environ={})
        with pytest.raises(aiomqtt.MqttError, match=r"TLS listener \(mqtts://\)\?"):
            async with settings.client():
                pass

    async def test_secure_handshake_cut_short_is_worth_retrying(self) -> None:
        """A listener that hangs up mid-handshake (a broker stopping) is not final."""

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)  # the ClientHello has begun: now go away
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            settings = parse_broker_url(f"mqtts://127.0.0.1:{port}", environ={})
            with pytest.raises(aiomqtt.MqttError) as caught:
                async with settings.client(timeout=5):
                    pass
        assert not is_final(caught.value)

    async def test_secure_unreachable_broker_is_worth_retrying(self) -> None:
        """Nobody listening is an aiomqtt.MqttError (retry), not a final BrokerError."""
        settings = parse_broker_url(f"mqtts://127.0.0.1:{free_port()}", environ={})
        with pytest.raises(aiomqtt.MqttError) as caught:
            async with settings.client():
                pass
        assert not is_final(caught.value)


class TestSecureCommandLine:
    def test_secure_consume_with_a_wrong_password_exits_naming_the_broker(
        self, secure_broker: MosquittoProcess, secure_env: Env, tmp_path: Path
    ) -> None:
        """`lapcast consume` refused at CONNECT exits 2 at once; no log line shows the password."""
        env = secure_env("running-order")
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "lapcast", "-vv", "consume", "running-order",
             "--broker", secure_broker.url, "--username", "running-order",
             "--password", SECRET, "--ca-file", env["LAPCAST_MQTT_CA_FILE"],
             "--session", "s1", "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert time.monotonic() - started < 20
        assert "refused the connection" in result.stderr
        assert "running-order:***@127.0.0.1" in result.stderr
        assert SECRET not in result.stderr + result.stdout

    def test_secure_consume_without_the_ca_exits_naming_the_certificate(
        self, secure_broker: MosquittoProcess, secure_env: Env, tmp_path: Path
    ) -> None:
        """`lapcast consume` without the CA refuses the broker and says why."""
        env = {k: v for k, v in secure_env("running-order").items()
               if k != "LAPCAST_MQTT_CA_FILE"}
        result = subprocess.run(
            [sys.executable, "-m", "lapcast", "consume", "running-order",
             "--broker", secure_broker.url, "--session", "s1", "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert result.returncode == 2, result.stderr
        assert re.search(r"certificate", result.stderr, re.IGNORECASE)
        assert env["LAPCAST_MQTT_PASSWORD"] not in result.stderr
