"""`lapcast schema`: a valid AsyncAPI 3.0 document that says what really goes on the wire.

The document is validated against the official AsyncAPI 3.0.0 JSON Schema, fetched at
test time from npm's ``@asyncapi/specs`` (cached under ``~/.cache/lapcast``, never
committed). Then a real replay (Mosquitto, ``lapcast replay`` as a process, the three
built-in consumers, a control command accepted and one rejected, a dead letter, a
consumer joining late through the catch-up service) is recorded topic by topic, and
every payload must validate against the schema of its channel's messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from consumers.catchup_client import reply_topic
from consumers.projections import view_types
from consumers.registry import BUILTIN, load_consumer
from consumers.runner import ConsumerRunner, RunnerSettings
from consumers.testing import stop_process
from lapcast.cli.schema_cmd import render
from lapcast.mosquitto import MosquittoProcess
from simulator import topics
from simulator.asyncapi import asyncapi_document
from simulator.connection import parse_broker_url
from simulator.contract import sniff_encoding
from simulator.replay.testing import Received, Recorder

REPO = Path(__file__).resolve().parents[1]
QUALIFYING = REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"
# The @asyncapi/specs release whose 3.0.0 schema the document is checked against.
SPECS_VERSION = "6.11.1"
SPEC_FILE = "3.0.0-without-$id.json"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lapcast" / f"asyncapi-specs-{SPECS_VERSION}"


@pytest.fixture(scope="session")
def asyncapi_3_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema, from ``npm pack @asyncapi/specs`` (cached)."""
    target = _cache_dir() / SPEC_FILE
    if not target.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to fetch @asyncapi/specs (the AsyncAPI schema)"
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", f"@asyncapi/specs@{SPECS_VERSION}", "--silent",
                            "--pack-destination", tmp], check=True, capture_output=True,
                           timeout=300, cwd=tmp)
            [tgz] = Path(tmp).glob("*.tgz")
            with tarfile.open(tgz) as tar:
                member = tar.extractfile(f"package/schemas/{SPEC_FILE}")
                assert member is not None, f"{tgz.name} has no schemas/{SPEC_FILE}"
                data = member.read()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(target)  # whole or not at all, even with runs in parallel
    schema: dict[str, Any] = json.loads(target.read_text())
    return schema


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document as `lapcast schema` prints it (through JSON)."""
    doc: dict[str, Any] = json.loads(render())
    return doc


def payload_validator(doc: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    """A validator of one message's payload, resolving references in the document."""
    ref = doc["components"]["messages"][message]["payload"]["$ref"]
    root = {"allOf": [{"$ref": ref}], "components": doc["components"]}
    return jsonschema.Draft7Validator(root)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


class TestDocument:
    def test_valid_asyncapi_3(self, document: dict[str, Any],
                              asyncapi_3_schema: dict[str, Any]) -> None:
        """The document validates against the official AsyncAPI 3.0.0 JSON Schema."""
        validator = jsonschema.Draft7Validator(asyncapi_3_schema)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                  for e in validator.iter_errors(document)]
        assert errors == []
        assert document["asyncapi"] == "3.0.0"

    def test_the_official_schema_catches_mistakes(self, document: dict[str, Any],
                                                   asyncapi_3_schema: dict[str, Any]) -> None:
        """A QoS of 3 or msgspec's OpenAPI-style discriminator would not pass: the check bites."""
        validator = jsonschema.Draft7Validator(asyncapi_3_schema)
        bad = json.loads(json.dumps(document))
        bad["operations"]["publishEvents"]["bindings"]["mqtt"]["qos"] = 3
        assert not validator.is_valid(bad)
        bad = json.loads(json.dumps(document))
        bad["components"]["schemas"]["Message"]["discriminator"] = {"propertyName": "type"}
        assert not validator.is_valid(bad)

    def test_every_topic_is_a_channel(self, document: dict[str, Any]) -> None:
        """Each topic simulator.topics builds is a channel, with its parameters."""
        addresses = {c["address"] for c in document["channels"].values()}
        s = "{session}"
        built = {topics.events(s), topics.meta(s), topics.status(s), topics.control(s),
                 topics.catchup_request(s), topics.state(s, "{projection}"),
                 topics.state_changes(s, "{projection}"), topics.dead_letter(s),
                 topics.consumer_status(s, "{name}"), reply_topic(s, "{name}", "{client_id}")}
        assert addresses == built
        builders = {n for n in topics.__all__ if n not in ("PREFIX", "validate_session_id")}
        # The two prefixes are not topics of their own: the reply channel lives below one.
        assert builders - {"session_root", "catchup_reply_prefix"} == {
            "events", "meta", "status", "control", "catchup_request", "state",
            "state_changes", "dead_letter", "consumer_status"}
        for key, channel in document["channels"].items():
            assert set(channel["parameters"]) == set(re.findall(r"{(\w+)}", channel["address"]))
            assert channel["summary"], key
            for param in channel["parameters"]:
                assert document["components"]["parameters"][param]["description"]

    def test_qos_retain_and_descriptions(self, document: dict[str, Any]) -> None:
        """Every channel has one operation with its QoS and retain flag; four are retained."""
        operations = list(document["operations"].values())
        by_channel = Counter(op["channel"]["$ref"].rsplit("/", 1)[1] for op in operations)
        assert by_channel == Counter(list(document["channels"]))
        retained = {op["channel"]["$ref"].rsplit("/", 1)[1] for op in operations
                    if op["bindings"]["mqtt"]["retain"]}
        assert retained == {"meta", "status", "state", "consumerStatus"}
        assert {op["bindings"]["mqtt"]["qos"] for op in operations} == {1}
        assert document["operations"]["answerCatchup"]["reply"]["channel"] == {
            "$ref": "#/channels/catchupReply"}

    def test_no_schema_says_nothing(self, document: dict[str, Any]) -> None:
        """Every message's payload is an object (or objects) with required properties."""
        for key, message in document["components"]["messages"].items():
            schema = resolve(document, message["payload"])
            branches = [resolve(document, b) for b in schema.get("anyOf", [schema])]
            for branch in branches:
                assert branch.get("type") == "object", key
                assert branch.get("properties") and branch.get("required"), key
        messages = document["components"]["messages"]
        typed = resolve(document, messages["runningOrderState"]["payload"])
        assert typed["properties"]["state"] == {"$ref": "#/components/schemas/RunningOrderView"}

    def test_the_command(self, tmp_path: Path) -> None:
        """`lapcast schema` prints the generated document; `--out` writes it to a file."""
        def lapcast(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "lapcast", "schema", *args],
                                  capture_output=True, text=True, timeout=60)

        printed = lapcast()
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout) == json.loads(json.dumps(
            asyncapi_document(view_types())))
        out = tmp_path / "api.json"
        assert lapcast("--out", str(out)).returncode == 0
        assert out.read_text() == printed.stdout
        failed = lapcast("--out", str(tmp_path / "missing" / "api.json"))
        assert failed.returncode == 2
        assert failed.stderr.startswith("lapcast schema: cannot write ")
        assert "Traceback" not in failed.stderr


class Channels:
    """Recorded topics matched to the document's channels."""

    def __init__(self, doc: dict[str, Any], session_id: str) -> None:
        self.doc = doc
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for key, channel in doc["channels"].items():
            address = channel["address"].replace("{session}", session_id)
            regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(address))
            self.patterns.append((key, re.compile(f"^{regex}$")))
        self.validators: dict[str, jsonschema.Draft7Validator] = {}

    def match(self, topic: str) -> tuple[str, dict[str, str]]:
        found = [(key, m.groupdict()) for key, p in self.patterns if (m := p.match(topic))]
        assert len(found) == 1, f"{topic}: {len(found)} channels match"
        return found[0]

    def candidates(self, key: str, params: dict[str, str], encoding: str) -> list[str]:
        """The messages a payload of this channel may be (for a state: its projection's)."""
        messages = self.doc["channels"][key]["messages"]
        names = [n for n in messages
                 if self.doc["components"]["messages"][n]["contentType"].endswith(encoding)]
        projection = params.get("projection")
        if projection is not None:
            typed = [n for n in names if n.lower().startswith(projection.replace("-", ""))]
            names = typed or [n for n in names if n.startswith("projection")]
        return names

    def errors(self, message: Received) -> tuple[str, list[str], list[str]]:
        key, params = self.match(message.topic)
        encoding = sniff_encoding(message.payload)
        try:
            instance = (json.loads(message.payload) if encoding == "json"
                        else msgspec.msgpack.decode(message.payload))
        except (ValueError, msgspec.DecodeError) as exc:
            return key, [], [f"not {encoding}: {exc}"]
        names = self.candidates(key, params, encoding)
        assert names, f"{message.topic}: no {encoding} message on channel {key}"
        problems = []
        for name in names:
            validator = self.validators.get(name)
            if validator is None:
                validator = self.validators[name] = payload_validator(self.doc, name)
            found = [e.message[:200] for e in validator.iter_errors(instance)]
            if not found:
                return key, [name], []
            problems.extend(f"{name}: {p}" for p in found)
        return key, [], problems


# Sent to be refused: a command the engine does not know, and an event that is not one.
WARP: bytes = b'{"command":"warp"}'
GARBAGE: bytes = b"\x00 not an event"


class TestRecordedReplay:
    async def test_every_recorded_payload_fits_its_channel(
        self, document: dict[str, Any], broker: MosquittoProcess, session_id: str,
        tmp_path: Path,
    ) -> None:
        """A replay with control, a dead letter and a catch-up: every payload validates."""
        settings = parse_broker_url(broker.url)
        root = topics.session_root(session_id)
        runners: dict[str, ConsumerRunner] = {}
        tasks: list[asyncio.Task[None]] = []

        def consume(name: str) -> None:
            runner = ConsumerRunner(load_consumer(name), settings, RunnerSettings(
                session_id=session_id, state_dir=tmp_path / "state", publish_ms=50,
                health_ms=300))
            runners[name] = runner
            tasks.append(asyncio.create_task(runner.run()))

        def status_states(rec: Recorder) -> list[str]:
            return [json.loads(m.payload).get("state") for m in rec.on(topics.status(session_id))]

        async with Recorder(settings, [f"{root}/#"]) as rec:
            consume("running-order")
            consume("class-poles")
            await rec.wait_for(lambda r: all(
                r.on(topics.consumer_status(session_id, n)) for n in runners))
            engine = subprocess.Popen(
                [sys.executable, "-m", "lapcast", "replay", str(QUALIFYING), "--broker",
                 broker.url, "--session-id", session_id, "--speed", "1500", "--batch", "4",
                 "--granularity", "sector", "--journal", str(tmp_path / "journal.jsonl")],
                stdout=subprocess.DEVNULL, stderr=(tmp_path / "replay.log").open("wb"))
            try:
                await rec.wait_for(lambda r: "running" in status_states(r), timeout=30)
                async with settings.client(identifier=f"operator-{session_id}") as operator:
                    for command in (b'{"command":"pause"}', WARP,
                                    b'{"command":"speed","factor":"max"}',
                                    b'{"command":"resume"}'):
                        await operator.publish(topics.control(session_id), command, qos=1)
                    await operator.publish(topics.events(session_id), GARBAGE, qos=1)
                await rec.wait_for(lambda r: "finished" in status_states(r), timeout=60)
                # A consumer that joins now has the whole log to fetch by catch-up.
                consume("championship")
                last = json.loads(rec.on(topics.status(session_id))[-1].payload)["last_seq"]
                await rec.wait_for(lambda r: all(
                    any(json.loads(m.payload)["seq"] == last
                        for m in r.on(topics.state(session_id, n))) for n in BUILTIN),
                    timeout=60)
                for runner in runners.values():
                    runner.stop()
                await asyncio.gather(*tasks)
            finally:
                for runner in runners.values():
                    runner.stop()
                before = len(rec.on(topics.status(session_id)))
                assert stop_process(engine) == 0
            # Its last word (a finished run says "finished" again as it stops).
            await rec.wait_for(lambda r: len(r.on(topics.status(session_id))) > before)
            recorded = list(rec.messages)

        channels = Channels(document, session_id)
        seen: Counter[str] = Counter()
        messages_used: Counter[str] = Counter()
        failures = []
        for message in recorded:
            key, used, problems = channels.errors(message)
            if message.payload in (WARP, GARBAGE):
                # What the test sent to be refused: the schema refuses it too.
                assert problems and not used, message.payload
                continue
            seen[key] += 1
            messages_used.update(used)
            if problems:
                failures.append(f"{message.topic}: {message.payload[:120]!r}: {problems[:3]}")
        assert failures == []
        # Every channel carried something, and each typed state was checked as typed.
        assert set(seen) == set(document["channels"]), seen
        for name in ("runningOrderState", "classPolesState", "championshipState",
                     "runningOrderChanges", "classPolesChanges", "engineStatus",
                     "consumerHealth", "deadLetter", "catchupRequest", "catchupReply",
                     "control", "events", "meta"):
            assert messages_used[name] > 0, name
        statuses = [json.loads(m.payload) for m in recorded
                    if m.topic == topics.status(session_id)]
        assert any("accepted" in s for s in statuses) and any("rejected" in s for s in statuses)

        # And the schemas say something: a wrong value deep in a state is caught.
        state = next(m for m in recorded if m.topic == topics.state(session_id, "running-order"))
        doc = json.loads(state.payload)
        doc["state"]["rows"][0]["laps"] = "many"
        assert not payload_validator(document, "runningOrderState").is_valid(doc)
