"""Defence in depth: what a consumer accepts from the broker, checked before anything else.

The broker's ACL decides who may publish where; these checks assume it can fail
(a leaked password, a misconfigured broker, a buggy engine) and keep a consumer's
projection to the session's log regardless. Each check is pure: it returns what
is usable or a ``Refusal`` with its reason, and the runner dead-letters and
counts the refusals.

* Events come only from the session's events topic, never retained (the engine
  never retains them), within a size limit, decodable, of a known schema version,
  and stamped with the topic's session id.
* The engine's status moves the consumer's idea of where the log ends only if it
  is this session's engine status (not, say, a catch-up reply steered there).
* The consumer's own retained state is never loaded; one it did not write is
  checked for a stamp and always replaced by the consumer's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from simulator import contract
from simulator.contract import Event, decode_message, events_of
from simulator.errors import ContractError

__all__ = [
    "ENGINE_STATES",
    "MAX_META_BYTES",
    "EngineLost",
    "EngineStatus",
    "Refusal",
    "check_events",
    "check_own_state",
    "check_status",
]

# The states of a status that says where the engine's log ends.
ENGINE_STATES: Final = frozenset({"running", "paused", "finished", "stopped", "error"})

# The status types, as the contract has them (this module's names before).
EngineStatus = contract.EngineStatus
EngineLost = contract.EngineLost

# The engine's SessionStarted carries the whole entry list (~170 bytes a car: 3.4 MB at
# the 20,000 cars `lapcast synth` accepts at most). A message that opens with it (alone,
# or first of a batch) may be this big, the dev broker's max_packet_size; the ordinary
# --max-payload-bytes is for everything else. Forged, it costs one bounded decode.
MAX_META_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a message was not used. ``forged`` is defence in depth's (counted as refused),
    as opposed to input that merely does not decode or validate."""

    reason: str
    forged: bool = True


def check_events(payload: bytes, *, retained: bool, session_id: str,
                 max_bytes: int) -> list[Event] | Refusal:
    """The events of one message on the session's events topic, or why not."""
    if retained:
        return Refusal(reason="retained message on the events topic "
                              "(the engine never retains events)")
    if len(payload) > max_bytes and not (len(payload) <= MAX_META_BYTES
                                         and b"SessionStarted" in payload[:64]):
        return Refusal(reason=f"oversized: {len(payload)} bytes, over the limit of {max_bytes}")
    try:
        events = events_of(decode_message(payload))
    except ContractError as exc:
        kind = ("unknown schema version" if "unknown schema version" in str(exc)
                else "does not decode or fails validation")
        return Refusal(reason=f"{kind}: {exc}", forged=False)
    for event in events:
        if event.session_id != session_id:
            return Refusal(reason=f"session_id {event.session_id!r} of {type(event).__name__} "
                                  f"seq {event.seq} does not match the topic's session "
                                  f"{session_id!r}")
    return events


def check_status(payload: bytes, *,
                 session_id: str) -> contract.EngineStatus | contract.EngineLost | Refusal:
    """This session's engine status (or its last will, state ``lost``), or why not.

    Only the engine's own status may move the head: anything else shaped like it
    would send the consumer after events that do not exist.
    """
    try:
        status = contract.decode_engine_status(payload)
    except ContractError as exc:
        return Refusal(reason=f"not an engine status: {exc}")
    if isinstance(status, contract.EngineLost) or status.state == "lost":
        return status
    if status.state not in ENGINE_STATES or status.session_id != session_id:
        return Refusal(reason=f"not this session's engine status (state {status.state!r}, "
                              f"session {status.session_id!r})")
    return status


def check_own_state(payload: bytes, *, projection: str, session_id: str,
                    head: tuple[int, int] | None) -> Refusal | None:
    """A retained state on the consumer's own topic that it did not write: a reason to
    refuse it, or None if it is at least well stamped (it is replaced either way).

    ``head`` is the end of the engine's log, when known: a stamp beyond it is forged.
    """
    try:
        doc = contract.decode_state(payload)
    except ContractError as exc:
        return Refusal(reason=f"retained state is not a state document: {exc}")
    if doc.projection != projection or doc.session_id != session_id:
        return Refusal(reason="retained state names another projection or session")
    stamp = (doc.epoch, doc.seq)
    if head is not None and stamp > head:
        return Refusal(reason=f"retained state stamped epoch {stamp[0]} seq {stamp[1]}, "
                              f"beyond the engine's log {head}")
    return None
