"""Control commands for a running replay: JSON on ``.../control``, validated.

``{"command": "pause"}``, ``{"command": "resume"}``,
``{"command": "speed", "factor": 2.0}`` (0.01 to 10,000,000, or ``"max"``),
``{"command": "seek", "to": "1:00:00"}`` (``H:MM:SS[.fff]``, seconds as text, or an
integer of milliseconds).

Any command may carry ``"issued_at"``: when it was sent, wall-clock ms since the epoch.
One older than ``MAX_AGE_MS`` is rejected as stale: MQTT 3.1.1 clears the retain flag
of a message forwarded live, so a retained command cannot always be told by its flag
(v5's retain-as-published) and is told by its age instead.

``parse_command`` turns a payload into a command or a ``Rejection`` with a reason a
person can act on. The engine checks what depends on its state (a seek past the end)
and rejects that the same way; a rejected command changes nothing.
"""

from __future__ import annotations

import time
from typing import Final, TypeAlias

import msgspec

from simulator import contract
from simulator.errors import ContractError
from simulator.replay.bounds import check_speed, shown
from simulator.timefmt import parse_duration

__all__ = [
    "COMMAND_NAMES",
    "MAX_AGE_MS",
    "Command",
    "Pause",
    "Rejection",
    "Resume",
    "Seek",
    "Speed",
    "accepted",
    "command_name",
    "describe",
    "parse_command",
    "parse_speed",
]


class _CommandBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="command",
                   forbid_unknown_fields=True):
    pass


class Pause(_CommandBase, frozen=True, kw_only=True, tag="pause"):
    pass


class Resume(_CommandBase, frozen=True, kw_only=True, tag="resume"):
    pass


class Speed(_CommandBase, frozen=True, kw_only=True, tag="speed"):
    """``factor`` None means as fast as the broker acknowledges (``"max"``)."""

    factor: float | None


class Seek(_CommandBase, frozen=True, kw_only=True, tag="seek"):
    to_ms: int


Command: TypeAlias = Pause | Resume | Speed | Seek

COMMAND_NAMES: Final = ("pause", "resume", "speed", "seek")


# Published on ``status`` as ``"rejected": {"command": ..., "reason": ...}``.
Rejection = contract.Rejection


class _Name(msgspec.Struct):
    command: object = None


_name_decoder: Final = msgspec.json.Decoder(_Name)


def parse_speed(value: float | str) -> float | None:
    """A speed factor: 0.01 to 10,000,000 (``"60"`` too), or ``"max"`` (None)."""
    if isinstance(value, str):
        if value.strip().lower() == "max":
            return None
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"speed {shown(value)} is neither a number nor \"max\"") from None
        try:
            return check_speed(number)
        except ValueError:
            raise ValueError(f"speed {shown(value)} is out of range: from 0.01 to "
                             "10,000,000, or \"max\"") from None
    return check_speed(value)


# Longer than any session time written out ("999:59:59.999" is 13 characters).
_SEEK_TEXT_MAX = 20


def _parse_seek(value: int | str) -> int:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"seek to {value} ms: session time cannot be negative")
        return value
    if len(value) > _SEEK_TEXT_MAX:
        raise ValueError(f"seek to {shown(value)}: not a session time (expected "
                         "H:MM:SS[.fff], seconds, or integer milliseconds)")
    return parse_duration(value)


def _name_of(payload: bytes) -> str | None:
    try:
        name = _name_decoder.decode(payload).command
    except msgspec.DecodeError:
        return None
    return name if isinstance(name, str) else None


# A command issued longer ago than this is stale (clocks of one site agree to well under).
MAX_AGE_MS: Final = 5_000


def parse_command(payload: bytes, *, now_ms: int | None = None) -> Command | Rejection:
    """Decode and validate one control payload (``now_ms``: the wall clock, for tests)."""
    name = _name_of(payload)
    try:
        wire = contract.decode_control(payload)
    except ContractError as error:
        # msgspec's own words, without the contract's "control command: " prefix.
        exc = error.__cause__ or error
        if name is None:
            try:
                msgspec.json.decode(payload)
            except msgspec.DecodeError:
                return Rejection(command=None, reason=f"malformed JSON: {exc}")
            return Rejection(command=None, reason="no \"command\" field (expected one of "
                             f"{', '.join(COMMAND_NAMES)})")
        if name not in COMMAND_NAMES:
            return Rejection(command=name if len(name) <= 40 else name[:37] + "...",
                             reason=f"unknown command {shown(name)} (expected one "
                             f"of {', '.join(COMMAND_NAMES)})")
        return Rejection(command=name, reason=f"invalid {name} command: {exc}")
    if wire.issued_at is not None:
        age = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) - wire.issued_at
        if age > MAX_AGE_MS:
            return Rejection(command=name, reason=f"stale: issued {age / 1000:.1f} s ago "
                             f"(a command older than {MAX_AGE_MS // 1000} s is ignored)")
    try:
        match wire:
            case contract.SpeedCommand(factor=factor):
                return Speed(factor=parse_speed(factor))
            case contract.SeekCommand(to=to):
                return Seek(to_ms=_parse_seek(to))
            case contract.PauseCommand():
                return Pause()
            case contract.ResumeCommand():
                return Resume()
    except ValueError as exc:
        return Rejection(command=name, reason=str(exc))
    raise AssertionError(f"unhandled command {wire!r}")  # pragma: no cover


def accepted(command: Command) -> contract.Accepted:
    """A command as the status topic echoes it back (``"accepted": {...}``)."""
    match command:
        case Speed(factor=factor):
            return contract.SpeedAccepted(factor="max" if factor is None else factor)
        case Seek(to_ms=to_ms):
            return contract.SeekAccepted(to_ms=to_ms)
        case Pause():
            return contract.PauseAccepted()
        case Resume():
            return contract.ResumeAccepted()
    raise AssertionError(command)  # pragma: no cover


def command_name(command: Command) -> str:
    return type(command).__struct_config__.tag  # type: ignore[return-value]


def describe(command: Command) -> dict[str, object]:
    """``accepted`` as plain data."""
    doc: dict[str, object] = msgspec.to_builtins(accepted(command))
    return doc
