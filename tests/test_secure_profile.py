"""The secure profile: scripts, secure.conf and acl.conf, and what a real Mosquitto refuses.

Every broker here is a private Mosquitto 2 started from ``broker-config/secure.conf``
on a free port, with certificates and users made by the repository's own scripts.
What Mosquitto 2.0.11 does, as these tests pin it down: a bad password or no
credentials get CONNACK 0x87 (not authorized; 2.0.11 does not use 0x86); a publish
the ACL forbids gets PUBACK 0x87 at QoS 1 and the client stays connected; a
subscription the ACL forbids is *granted* (SUBACK 0x01) and then nothing is delivered.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from lapcast.mosquitto import CONFIG_DIR, MosquittoProcess
from simulator import topics
from simulator.connection import BrokerSettings, parse_broker_url
from simulator.errors import BrokerError

REPO = Path(__file__).resolve().parents[1]
MAKE_CERTS = REPO / "scripts" / "make-certs.sh"
MAKE_USERS = REPO / "scripts" / "make-users.sh"
CONSUMERS = ("running-order", "class-poles", "championship")

Env = Callable[[str], dict[str, str]]


def login(broker: MosquittoProcess, env: Env, user: str) -> BrokerSettings:
    return parse_broker_url(broker.url, environ=env(user))


async def retained(settings: BrokerSettings, topic: str, wait: float = 0.5) -> bytes | None:
    """The retained payload on ``topic`` as ``settings``' user sees it (None: nothing)."""
    async with settings.client() as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


def acl_blocks(text: str) -> dict[str, list[str]]:
    """``user -> ["access topic", ...]`` of a Mosquitto ACL file."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            current = blocks.setdefault(rest, [])
        else:
            assert current is not None, f"ACL line outside a user block: {line!r}"
            assert word == "topic", f"unexpected ACL line {line!r}"
            current.append(rest)
    return blocks


def writers(blocks: dict[str, list[str]], topic: str) -> set[str]:
    """Users whose ACL grants write on exactly ``topic`` (as written in the file)."""
    return {user for user, lines in blocks.items()
            for line in lines if line.split()[0] in ("write", "readwrite")
            and line.split()[1] == topic}


class TestSecureScripts:
    def test_secure_make_certs_issues_a_server_certificate_the_ca_verifies(
        self, tmp_path: Path
    ) -> None:
        """make-certs.sh writes a CA and a server certificate for 127.0.0.1 and localhost."""
        out = tmp_path / "certs"
        subprocess.run([MAKE_CERTS, out], check=True, capture_output=True)
        for name in ("ca.crt", "ca.key", "server.crt", "server.key"):
            assert (out / name).stat().st_size > 0, name
        assert (out / "ca.key").stat().st_mode & 0o077 == 0
        assert (out / "server.key").stat().st_mode & 0o077 == 0
        text = subprocess.run(["openssl", "x509", "-in", out / "server.crt", "-noout", "-text"],
                              check=True, capture_output=True, text=True).stdout
        assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
        assert "TLS Web Server Authentication" in text
        verify = subprocess.run(["openssl", "verify", "-CAfile", out / "ca.crt",
                                 out / "server.crt"], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr

    def test_secure_make_certs_keeps_the_ca_and_adds_extra_hosts(self, tmp_path: Path) -> None:
        """A second run keeps the CA clients trust and names the extra host in the new cert."""
        out = tmp_path / "certs"
        subprocess.run([MAKE_CERTS, out], check=True, capture_output=True)
        ca = (out / "ca.crt").read_bytes()
        subprocess.run([MAKE_CERTS, out, "timing.example", "10.1.2.3"], check=True,
                       capture_output=True)
        assert (out / "ca.crt").read_bytes() == ca
        text = subprocess.run(["openssl", "x509", "-in", out / "server.crt", "-noout", "-ext",
                               "subjectAltName"], check=True, capture_output=True,
                              text=True).stdout
        assert "DNS:timing.example" in text and "IP Address:10.1.2.3" in text

    def test_secure_make_users_writes_hashed_passwords_and_env_files(
        self, secure_secrets: Path
    ) -> None:
        """Every role gets a hashed password and a mode-600 env file; no plain text remains."""
        passwd = (secure_secrets / "passwd").read_text().splitlines()
        users = {line.split(":", 1)[0] for line in passwd}
        assert users == {"engine", "operator", "board", *CONSUMERS}
        assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd)
        for user in users:
            env_file = secure_secrets / f"{user}.env"
            assert env_file.stat().st_mode & 0o077 == 0
            password = re.search(r"LAPCAST_MQTT_PASSWORD=(\S+)", env_file.read_text())
            assert password and len(password.group(1)) >= 20
            assert password.group(1) not in "\n".join(passwd)
        assert not list(secure_secrets.glob("*.tmp"))

    def test_secure_make_users_adds_a_custom_consumer_and_keeps_passwords(
        self, tmp_path: Path
    ) -> None:
        """An extra consumer gets the same ACL block as the built-in ones; others keep passwords."""
        out = tmp_path / "secrets"
        subprocess.run([MAKE_USERS, out], check=True, capture_output=True)
        before = (out / "engine.env").read_text()
        subprocess.run([MAKE_USERS, out, "stint-lengths"], check=True, capture_output=True)
        assert (out / "engine.env").read_text() == before
        blocks = acl_blocks((out / "acl.conf").read_text())
        expected = [line.replace("running-order", "stint-lengths")
                    for line in blocks["running-order"]]
        assert blocks["stint-lengths"] == expected
        # The script's consumer block and the committed ones never drift apart.
        for name in CONSUMERS:
            assert blocks[name] == [line.replace("stint-lengths", name) for line in expected]

    def test_secure_make_users_refuses_a_name_unfit_for_a_topic(self, tmp_path: Path) -> None:
        """A consumer name with a wildcard or a slash is refused, not written into the ACL."""
        for bad in ("a/b", "all+", "#", "Upper"):
            result = subprocess.run([MAKE_USERS, tmp_path / "s", bad], capture_output=True,
                                    text=True)
            assert result.returncode == 2, bad
            assert "consumer name" in result.stderr

    def test_secure_default_output_folder_is_ignored_by_git(self) -> None:
        """secrets/ (the scripts' default folder) can never be committed by accident."""
        for path in ("secrets/ca.key", "secrets/server.key", "secrets/passwd",
                     "secrets/engine.env"):
            result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
            assert result.returncode == 0, f"{path} is not ignored"


class TestSecureConfig:
    def test_secure_conf_binds_every_listener_and_requires_auth(self) -> None:
        """Each listener names its address; no anonymous access; passwords, ACL and TLS 1.2+."""
        text = (CONFIG_DIR / "secure.conf").read_text()
        options = [line.split() for line in text.splitlines()
                   if line.strip() and not line.startswith("#")]
        listeners = [words for words in options if words[0] == "listener"]
        assert listeners and all(len(words) == 3 for words in listeners)
        assert not [words for words in options if words[0] in ("port", "bind_address")]
        settings = {words[0]: words[1:] for words in options}
        assert settings["allow_anonymous"] == ["false"]
        assert settings["per_listener_settings"] == ["false"]
        assert settings["password_file"] and settings["acl_file"]
        assert settings["tls_version"] == ["tlsv1.2"]
        assert settings["certfile"] and settings["keyfile"]

    def test_secure_both_profiles_limit_the_packet_size(self) -> None:
        """dev.conf and secure.conf both set max_packet_size."""
        for name in ("dev.conf", "secure.conf"):
            text = (CONFIG_DIR / name).read_text()
            match = re.search(r"(?m)^max_packet_size\s+(\d+)", text)
            assert match and int(match.group(1)) > 0, name

    def test_secure_acl_gives_the_engine_alone_the_facts(self) -> None:
        """Only the engine may write events, meta, status and catch-up replies."""
        blocks = acl_blocks((CONFIG_DIR / "acl.conf").read_text())
        assert set(blocks) == {"engine", "operator", "board", *CONSUMERS}
        p = "lapcast/v1/sessions/+"
        for topic in (f"{p}/events", f"{p}/meta", f"{p}/status", f"{p}/catchup/reply/#"):
            assert writers(blocks, topic) == {"engine"}, topic
        assert not [line for line in blocks["board"] if not line.startswith("read ")]
        for name in CONSUMERS:
            assert writers(blocks, f"{p}/state/{name}") == {name}


class TestSecureBrokerRefusals:
    async def test_secure_anonymous_connection_refused(
        self, secure_broker: MosquittoProcess, secure_env: Env
    ) -> None:
        """A client without a username is refused at CONNECT (2.0.11: 0x87 not authorized)."""
        ca = secure_env("board")["LAPCAST_MQTT_CA_FILE"]
        settings = parse_broker_url(secure_broker.url, ca_file=ca, environ={})
        with pytest.raises(BrokerError, match=r"refused the connection: not authorized \(reason "
                                              r"code 0x87\)"):
            async with settings.client():
                pass

    async def test_secure_wrong_password_refused(
        self, secure_broker: MosquittoProcess, secure_env: Env
    ) -> None:
        """A known user with a wrong password is refused, and the password is not echoed."""
        settings = login(secure_broker, secure_env, "engine").with_credentials(
            None, "not-the-password")
        with pytest.raises(BrokerError, match="refused the connection") as caught:
            async with settings.client():
                pass
        assert "not-the-password" not in str(caught.value)
        assert "engine:***@" in str(caught.value)

    async def test_secure_client_without_the_ca_refuses_the_server(
        self, secure_broker: MosquittoProcess, secure_env: Env
    ) -> None:
        """Without the private CA, the client does not trust the broker's certificate."""
        env = {k: v for k, v in secure_env("board").items() if k != "LAPCAST_MQTT_CA_FILE"}
        settings = parse_broker_url(secure_broker.url, environ=env)
        with pytest.raises(BrokerError, match="TLS certificate is not trusted"):
            async with settings.client():
                pass

    async def test_secure_client_refuses_a_certificate_for_another_name(
        self, tmp_path: Path, secure_secrets: Path, secure_env: Env
    ) -> None:
        """A certificate signed by the trusted CA but not for this host name is refused too."""
        subprocess.run([MAKE_CERTS, tmp_path / "other", "example.invalid"], check=True,
                       capture_output=True)
        # Same CA, a server certificate issued for a name the client does not ask for.
        other = tmp_path / "other"
        (other / "ca.crt").write_bytes((secure_secrets / "ca.crt").read_bytes())
        (other / "ca.key").write_bytes((secure_secrets / "ca.key").read_bytes())
        subprocess.run(["openssl", "req", "-new", "-key", other / "server.key", "-out",
                        other / "s.csr", "-subj", "/CN=example.invalid"], check=True,
                       capture_output=True)
        (other / "s.ext").write_text("subjectAltName=DNS:example.invalid\n")
        subprocess.run(["openssl", "x509", "-req", "-in", other / "s.csr", "-CA",
                        other / "ca.crt", "-CAkey", other / "ca.key", "-CAcreateserial",
                        "-out", other / "server.crt", "-days", "1", "-extfile",
                        other / "s.ext"], check=True, capture_output=True)
        replacements = {"secrets/passwd": f"{secure_secrets}/passwd",
                        "secrets/acl.conf": f"{secure_secrets}/acl.conf",
                        "secrets/": f"{other}/"}
        with MosquittoProcess(config="secure.conf", replacements=replacements,
                              workdir=tmp_path / "broker") as broker:
            settings = parse_broker_url(broker.url, environ=secure_env("board"))
            with pytest.raises(BrokerError, match=r"not trusted.*mismatch"):
                async with settings.client():
                    pass

    def test_secure_tls_below_1_2_refused_by_the_broker(
        self, secure_broker: MosquittoProcess, secure_env: Env
    ) -> None:
        """A TLS 1.1 handshake is refused by the broker (a protocol-version alert)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.create_default_context(cafile=secure_env("board")[
                "LAPCAST_MQTT_CA_FILE"])
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let *this* side offer TLS 1.1
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", secure_broker.port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError) as caught:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
        # The alert comes from the broker; a client unable to offer 1.1 would say
        # "no protocols available" instead.
        assert "PROTOCOL_VERSION" in str(caught.value).upper()

    def test_secure_tls_1_2_accepted(
        self, secure_broker: MosquittoProcess, secure_env: Env
    ) -> None:
        """TLS 1.2, the minimum, is accepted; the default handshake gets TLS 1.3."""
        ca = secure_env("board")["LAPCAST_MQTT_CA_FILE"]
        for maximum, expected in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                  (ssl.TLSVersion.MAXIMUM_SUPPORTED, "TLSv1.3")):
            context = ssl.create_default_context(cafile=ca)
            context.maximum_version = maximum
            with socket.create_connection(("127.0.0.1", secure_broker.port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == expected

    async def test_secure_consumer_cannot_publish_an_event(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """A consumer's credentials cannot publish on the events topic: PUBACK 0x87."""
        consumer = login(secure_broker, secure_env, "running-order")
        engine = login(secure_broker, secure_env, "engine")
        async with engine.client() as listener_engine, consumer.client() as client:
            del listener_engine  # connected only to prove the broker is healthy
            with pytest.raises(BrokerError) as caught:
                await client.publish(topics.events(session_id), b'{"forged": true}', qos=1)
            assert topics.events(session_id) in str(caught.value)
            assert "not authorized (reason code 0x87)" in str(caught.value)
            # Still connected: a refusal is not a disconnect, and its own state is allowed.
            await client.publish(topics.state(session_id, "running-order"), b"{}", qos=1)

    async def test_secure_consumer_cannot_overwrite_another_projection(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """running-order cannot replace class-poles' retained state; the original stays."""
        topic = topics.state(session_id, "class-poles")
        async with login(secure_broker, secure_env, "class-poles").client() as owner:
            await owner.publish(topic, b'{"seq": 7}', qos=1, retain=True)
        async with login(secure_broker, secure_env, "running-order").client() as other:
            for target in (topic, topics.state_changes(session_id, "class-poles"),
                           topics.consumer_status(session_id, "class-poles")):
                with pytest.raises(BrokerError, match=re.escape(target)):
                    await other.publish(target, b'{"seq": 999}', qos=1, retain=True)
        board = login(secure_broker, secure_env, "board")
        assert await retained(board, topic) == b'{"seq": 7}'

    async def test_secure_consumer_may_write_what_its_job_needs(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """A consumer may publish its state, changes, health, dead letters and catch-up requests."""
        async with login(secure_broker, secure_env, "championship").client() as client:
            for topic in (topics.state(session_id, "championship"),
                          topics.state_changes(session_id, "championship"),
                          topics.consumer_status(session_id, "championship"),
                          topics.dead_letter(session_id),
                          topics.catchup_request(session_id)):
                await client.publish(topic, b"{}", qos=1)

    async def test_secure_board_cannot_publish_anything(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """The board user is refused on every topic of the tree, its own reads included."""
        s = session_id
        targets = [topics.events(s), topics.meta(s), topics.status(s), topics.control(s),
                   topics.catchup_request(s), f"{topics.catchup_reply_prefix(s)}/board/x",
                   topics.state(s, "running-order"), topics.state_changes(s, "class-poles"),
                   topics.state(s, "board"), topics.consumer_status(s, "championship"),
                   topics.dead_letter(s), "lapcast/v1/anything", "elsewhere"]
        async with login(secure_broker, secure_env, "board").client() as client:
            for topic in targets:
                with pytest.raises(BrokerError, match=re.escape(topic) + ".*0x87"):
                    await client.publish(topic, b"{}", qos=1, retain=True)

    async def test_secure_only_the_engine_reaches_the_consumers(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """An event from the engine reaches a consumer; the board is granted but sees none."""
        topic = topics.events(session_id)
        async with login(secure_broker, secure_env, "running-order").client() as consumer, \
                login(secure_broker, secure_env, "board").client() as board:
            await consumer.subscribe(topic, qos=1)
            # 2.0.11 grants a subscription the ACL does not allow, then delivers nothing.
            granted = await board.subscribe(topic, qos=1)
            assert [code.value for code in granted] == [1]  # type: ignore[union-attr]
            async with login(secure_broker, secure_env, "engine").client() as engine:
                await engine.publish(topic, b'{"seq": 1}', qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(consumer.messages))
            assert message.payload == b'{"seq": 1}'
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await anext(aiter(board.messages))

    async def test_secure_oversized_packet_disconnects_the_sender(
        self, secure_broker: MosquittoProcess, secure_env: Env, session_id: str
    ) -> None:
        """Past max_packet_size the broker drops the sender and delivers nothing."""
        settings = login(secure_broker, secure_env, "running-order")
        topic = topics.state(session_id, "running-order")
        async with settings.client() as client:
            limit = client.max_packet_size
            assert limit == 4 * 1024 * 1024  # announced in the CONNACK
            # lapcast's client refuses to send it, naming the topic and the limit...
            with pytest.raises(BrokerError, match=re.escape(topic) + ".*maximum packet size"):
                await client.publish(topic, b"x" * limit, qos=1, retain=True)
            await client.publish(topic, b"small", qos=1, retain=True)
        # ...and a client that sends it anyway (plain aiomqtt) is disconnected.
        async with aiomqtt.Client(**settings.client_kwargs(timeout=2)) as raw:
            with pytest.raises(aiomqtt.MqttError):
                await raw.publish(topic, b"y" * limit, qos=1, retain=True)
            with pytest.raises(aiomqtt.MqttError):
                await raw.publish(topic, b"after", qos=1)
        assert await retained(login(secure_broker, secure_env, "board"), topic) == b"small"
