"""The whole MQTT API as an AsyncAPI 3.0 document, generated from the contract.

``asyncapi_document(views)`` builds it: one channel per topic ``simulator.topics``
builds (its address with the parameters ``{session}``, ``{projection}``, ``{name}``,
``{client_id}``, its one-line description taken from the builder's docstring), the
messages on it with their JSON Schemas (``msgspec.json.schema_components`` of the
contract's Structs, never written by hand), and one operation per channel carrying
the MQTT binding: QoS and whether the message is retained. ``views`` maps a
projection's name to the types of its view and of its changed rows (the built-in
projections'); any other projection's state is described with an untyped view.

Nothing here is read back: the document is for people and code generators in other
languages (``lapcast schema``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Final

import msgspec

from simulator import contract, topics

__all__ = [
    "ASYNCAPI_VERSION",
    "Channel",
    "MessageSpec",
    "ViewTypes",
    "asyncapi_document",
    "channels",
]

ASYNCAPI_VERSION: Final = "3.0.0"
_MQTT_BINDING: Final = "0.2.0"
_REF: Final = "#/components/schemas/{name}"

_PARAMETERS: Final = {
    "session": "The session id: one topic level, without `/`, `+`, `#` or a leading `$` "
               "(`lapcast replay --session-id`).",
    "projection": "The consumer's name, as on the command line: `running-order`, "
                  "`class-poles`, `championship`, or a plug-in's.",
    "name": "The consumer's name (`lapcast consume NAME`).",
    "client_id": "The consumer's MQTT client id (`--client-id`; by default "
                 "`lapcast-NAME-SESSION`).",
}


@dataclass(frozen=True)
class ViewTypes:
    """What a projection publishes: the type of its view, and of one changed row."""

    view: Any = Any
    row: Any = Any


@dataclass(frozen=True)
class MessageSpec:
    key: str
    payload: Any
    title: str
    summary: str
    content_type: str = "application/json"
    headers: dict[str, Any] | None = None
    bindings: dict[str, Any] | None = None
    # The payload's component name when msgspec's would be unwieldy (a generic instance).
    schema_name: str | None = None


@dataclass(frozen=True)
class Channel:
    """One topic of the API: who writes it, how, and what goes on it."""

    key: str
    address: str
    # The topics builder whose docstring is the channel's one-line description.
    builder: Callable[..., str]
    messages: list[MessageSpec]
    # From lapcast's side: "send" (lapcast publishes it) or "receive" (lapcast reads it).
    action: str
    operation: str
    qos: int
    retain: bool
    summary: str
    reply: tuple[str, str] | None = None  # (channel key, runtime expression of the address)
    parameters: list[str] = field(default_factory=list)


def _doc(builder: Callable[..., str]) -> str:
    return " ".join((builder.__doc__ or "").split())


def _published_at() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "MQTT v5 user properties.",
        "properties": {
            contract.PUBLISHED_AT: {
                "type": "string", "pattern": "^[0-9]+$",
                "description": "The engine's wall clock (ns since the epoch) when it handed "
                               "the message to the broker: latency probes.",
            },
        },
        "required": [contract.PUBLISHED_AT],
    }


def _of(generic: Any, argument: Any) -> Any:
    """``generic[argument]`` for a type known only at run time."""
    return generic[argument]


def _camel(name: str) -> str:
    head, *rest = re.split(r"[^A-Za-z0-9]+", name)
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _title(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def channels(views: Mapping[str, ViewTypes]) -> list[Channel]:
    """Every channel of the API; ``views``: the typed projections, by name."""
    s = "{session}"
    reply_address = f"{topics.catchup_reply_prefix(s)}/{{name}}/{{client_id}}"
    json_and_msgpack = "JSON, or msgpack with `lapcast replay --encoding msgpack`"
    state_messages = [
        MessageSpec(f"{_camel(name)}State", _of(contract.StateDocument, types.view),
                    f"{name} state",
                    f"The state document of `{name}` (`{{projection}}` = {name}).",
                    schema_name=f"{_title(name)}State")
        for name, types in views.items()
    ] + [MessageSpec("projectionState", contract.StateDocument[Any], "any projection's state",
                     "The state document of any other projection (a plug-in): its view is "
                     "whatever it publishes.", schema_name="ProjectionState")]
    change_messages = [
        MessageSpec(f"{_camel(name)}Changes", _of(contract.StateChanges, types.row),
                    f"{name} changes", f"The changed rows of `{name}`.",
                    schema_name=f"{_title(name)}Changes")
        for name, types in views.items()
    ] + [MessageSpec("projectionChanges", contract.StateChanges[Any],
                     "any projection's changes", "The changed rows of any other projection.",
                     schema_name="ProjectionChanges")]
    correlation = {"type": "string", "contentEncoding": "binary",
                   "description": "Opaque bytes chosen by the requester (16 random bytes "
                                  "from lapcast), echoed on every reply chunk."}
    return [
        Channel(
            "events", topics.events(s), topics.events,
            [MessageSpec("events", contract.Message, "Event or Batch",
                     f"One event, or a Batch of consecutive events of one epoch; "
                     f"{json_and_msgpack}.", headers=_published_at()),
             MessageSpec("eventsMsgpack", contract.Message, "Event or Batch (msgpack)",
                     "The same, msgpack-encoded.", content_type="application/msgpack",
                     headers=_published_at()),
             MessageSpec("eventsEnveloped", contract.Enveloped, "Enveloped (MQTT 3.1.1)",
                     "Under MQTT 3.1.1 (no user properties): the publish time around the "
                     "event or batch, whose bytes `message` holds as they are (JSON or "
                     "msgpack, as the engine's --encoding).")],
            "send", "publishEvents", 1, False,
            "The engine publishes the log; a resend after a reconnection may duplicate: "
            "consumers dedupe by (epoch, seq) and fetch gaps by catch-up.",
        ),
        Channel(
            "meta", topics.meta(s), topics.meta,
            [MessageSpec("meta", contract.SessionStarted, "SessionStarted",
                     f"The current epoch's first event; {json_and_msgpack}."),
             MessageSpec("metaMsgpack", contract.SessionStarted, "SessionStarted (msgpack)",
                     "The same, msgpack-encoded.", content_type="application/msgpack")],
            "send", "publishMeta", 1, True, "The engine keeps the session's metadata.",
        ),
        Channel(
            "status", topics.status(s), topics.status,
            [MessageSpec("engineStatus", contract.EngineStatus, "EngineStatus",
                     "Where the replay stands, and the answer to a control command."),
             MessageSpec("engineLost", contract.EngineLost, "EngineLost",
                     "The engine's last will, published by the broker when its connection "
                     "dies.")],
            "send", "publishStatus", 1, True, "The engine reports its state.",
        ),
        Channel(
            "control", topics.control(s), topics.control,
            [MessageSpec("control", contract.ControlCommand, "ControlCommand",
                     "A command; rejected on status (`rejected`) with the reason when it "
                     "cannot be carried out, echoed (`accepted`) when it was. A retained "
                     "command is ignored.")],
            "receive", "receiveControl", 1, False,
            "The engine obeys control commands from anyone the broker lets write here.",
        ),
        Channel(
            "catchupRequest", topics.catchup_request(s), topics.catchup_request,
            [MessageSpec("catchupRequest", contract.CatchupRequest, "CatchupRequest",
                     "Events from_seq..to_seq of an epoch, JSON or msgpack.",
                     bindings={"mqtt": {
                         "responseTopic": {
                             "type": "string",
                             "pattern": "^lapcast/v1/sessions/[^/+#]+/catchup/reply/[^+#]+$",
                             "description": "Where to answer: below the session's "
                                            "catchup/reply/ (anything else is ignored).",
                         },
                         "correlationData": correlation,
                         "bindingVersion": _MQTT_BINDING,
                     }})],
            "receive", "answerCatchup", 1, False,
            "The engine answers each request from its journal, on the request's ResponseTopic.",
            reply=("catchupReply", "$message.header#/ResponseTopic"),
        ),
        Channel(
            "catchupReply", reply_address, topics.catchup_reply_prefix,
            [MessageSpec("catchupReply", contract.CatchupReply, "CatchupReply",
                     "One chunk of up to 1,000 events (JSON always); `final` on the last; "
                     "`error` and no events when the request was refused.",
                     bindings={"mqtt": {"correlationData": correlation,
                                        "bindingVersion": _MQTT_BINDING}})],
            "send", "sendCatchupReply", 1, False,
            "The engine's answer to one catch-up request, in seq order.",
        ),
        Channel(
            "state", topics.state(s, "{projection}"), topics.state, state_messages,
            "send", "publishState", 1, True,
            "A consumer publishes its whole view, coalesced (every 100 ms at most by default).",
        ),
        Channel(
            "stateChanges", topics.state_changes(s, "{projection}"), topics.state_changes,
            change_messages, "send", "publishStateChanges", 1, False,
            "A consumer publishes what changed with each state it publishes.",
        ),
        Channel(
            "deadLetter", topics.dead_letter(s), topics.dead_letter,
            [MessageSpec("deadLetter", contract.DeadLetter, "DeadLetter",
                     "A refused message: undecodable, invalid, or refused by defence in "
                     "depth (retained or oversized events, another session's id).")],
            "send", "publishDeadLetter", 1, False,
            "Bad input is data: a consumer publishes what it refused and carries on.",
        ),
        Channel(
            "consumerStatus", topics.consumer_status(s, "{name}"), topics.consumer_status,
            [MessageSpec("consumerHealth", contract.ConsumerHealth, "ConsumerHealth",
                     "A consumer's health, on every publication and every second."),
             MessageSpec("consumerLost", contract.ConsumerLost, "ConsumerLost",
                     "A consumer's last will, published by the broker when its connection "
                     "dies.")],
            "send", "publishConsumerHealth", 1, True, "A consumer reports its health.",
        ),
    ]


def _schemas(chans: list[Channel]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """Each message's payload schema (a reference) and the schemas they refer to."""
    specs = {m.payload: m for c in chans for m in c.messages}
    types = list(specs)
    found, components = msgspec.json.schema_components(types, ref_template=_REF)
    refs: dict[Any, dict[str, Any]] = {}
    renames: dict[str, str] = {}
    for type_, schema in zip(types, found, strict=True):
        wanted = specs[type_].schema_name
        ref = schema.get("$ref")
        if ref is not None and set(schema) == {"$ref"}:
            refs[type_] = schema
            if wanted is not None:
                renames[ref.rsplit("/", 1)[1]] = wanted
        else:  # a union (Message, ControlCommand): named in the components too
            name = wanted or _union_name(type_)
            components[name] = schema
            refs[type_] = {"$ref": _REF.format(name=name)}
    for name in components:
        renames.setdefault(name, re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_"))
    if len(set(renames.values())) != len(renames):
        raise ValueError(f"two schemas under one name: {sorted(renames.values())}")
    fixed = _rewrite(components, renames)
    for old, new in renames.items():
        if new in {m.schema_name for m in specs.values()}:
            fixed[old]["title"] = new  # not msgspec's "StateDocument[pkg.module.Type]"
    return ({t: _rewrite(r, renames) for t, r in refs.items()},
            {renames[k]: v for k, v in fixed.items()})


def _union_name(type_: Any) -> str:
    for name in ("Message", "ControlCommand"):
        if type_ == getattr(contract, name):
            return name
    raise ValueError(f"no component name for {type_!r}")


def _rewrite(node: Any, renames: Mapping[str, str]) -> Any:
    """References renamed; msgspec's OpenAPI-style ``discriminator`` object becomes the
    property name AsyncAPI's Schema Object takes."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                prefix, name = value.rsplit("/", 1)
                out[key] = f"{prefix}/{renames.get(name, name)}"
            elif key == "discriminator" and isinstance(value, dict):
                out[key] = value["propertyName"]
            else:
                out[key] = _rewrite(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite(item, renames) for item in node]
    return node


def _version() -> str:
    try:
        return metadata.version("lapcast")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "0"


def asyncapi_document(views: Mapping[str, ViewTypes] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of lapcast's MQTT API (a JSON-ready dict)."""
    chans = channels(views or {})
    refs, schemas = _schemas(chans)
    messages: dict[str, Any] = {}
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for chan in chans:
        params = re.findall(r"{(\w+)}", chan.address)
        chan_messages: dict[str, Any] = {}
        for m in chan.messages:
            message: dict[str, Any] = {
                "name": m.key, "title": m.title, "summary": m.summary,
                "contentType": m.content_type, "payload": refs[m.payload],
            }
            if m.headers is not None:
                message["headers"] = m.headers
            if m.bindings is not None:
                message["bindings"] = m.bindings
            messages[m.key] = message
            chan_messages[m.key] = {"$ref": f"#/components/messages/{m.key}"}
        retained = " Retained." if chan.retain else ""
        doc_channels[chan.key] = {
            "address": chan.address,
            "title": _title(chan.key),
            "summary": _doc(chan.builder),
            "description": f"{chan.summary} QoS {chan.qos}.{retained}",
            "messages": chan_messages,
            "parameters": {p: {"$ref": f"#/components/parameters/{p}"} for p in params},
        }
        operation: dict[str, Any] = {
            "action": chan.action,
            "channel": {"$ref": f"#/channels/{chan.key}"},
            "summary": chan.summary,
            "messages": [{"$ref": f"#/channels/{chan.key}/messages/{m.key}"}
                         for m in chan.messages],
            "bindings": {"mqtt": {"qos": chan.qos, "retain": chan.retain,
                                  "bindingVersion": _MQTT_BINDING}},
        }
        if chan.reply is not None:
            target, location = chan.reply
            operation["reply"] = {
                "address": {"location": location,
                            "description": "The request's MQTT v5 ResponseTopic."},
                "channel": {"$ref": f"#/channels/{target}"},
            }
        operations[chan.operation] = operation
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:lapcast:mqtt:v1",
        "info": {
            "title": "lapcast MQTT API",
            "version": _version(),
            "description": (
                "The topics of lapcast, an event-sourced live timing simulator: the replay "
                "engine publishes a session's log of events, consumers fold it into "
                "projections and publish their states. Every topic is under "
                f"`{topics.PREFIX}/{{session}}/`. Events carry their schema version; a "
                "reader refuses a newer one and ignores fields it does not know. "
                "Generated from simulator/contract.py by `lapcast schema`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5",
                "description": "A local Mosquitto (`broker-config/dev.conf`); "
                               "`mqtts` for the secure profile.",
            },
        },
        "channels": doc_channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": {p: {"description": d} for p, d in _PARAMETERS.items()},
        },
    }
