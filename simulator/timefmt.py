"""Race times as text <-> integer milliseconds, exactly (no floats on the way)."""

from __future__ import annotations

import re

__all__ = ["format_gap", "format_ms", "parse_duration", "parse_ms"]

# h:mm:ss.fff, m:ss.fff or ss.fff (fraction of 1 to 3 digits, optional).
_TIME = re.compile(r"^(?:(?:(\d+):)?(\d{1,2}):)?(\d{1,2})(?:\.(\d{1,3}))?$")


def parse_ms(text: str) -> int:
    """``"1:50.492"`` -> 110492; ``"2:03:04.5"`` -> 7384500; ``"59.9"`` -> 59900.

    Raises ``ValueError`` with the offending text.
    """
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"not a time: {text!r} (expected h:mm:ss.fff, m:ss.fff or ss.fff)")
    hours, minutes, seconds, fraction = match.groups()
    if hours is not None and minutes is None:  # pragma: no cover - the regex forbids it
        raise ValueError(f"not a time: {text!r}")
    ms = int((fraction or "0").ljust(3, "0"))
    total = int(seconds) * 1000 + ms
    if minutes is not None:
        if hours is not None and int(minutes) >= 60:
            raise ValueError(f"not a time: {text!r} (minutes must be below 60)")
        total += int(minutes) * 60_000
    if hours is not None:
        total += int(hours) * 3_600_000
    if (minutes is not None or hours is not None) and int(seconds) >= 60:
        raise ValueError(f"not a time: {text!r} (seconds must be below 60)")
    return total


def parse_duration(text: str) -> int:
    """A session time from the command line: ``H:MM:SS[.fff]``, ``M:SS`` or plain seconds."""
    text = text.strip()
    if ":" in text:
        return parse_ms(text)
    try:
        whole, _, fraction = text.partition(".")
        if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 3:
            raise ValueError
        return int(whole) * 1000 + int(fraction.ljust(3, "0") or "0")
    except ValueError:
        raise ValueError(
            f"not a session time: {text!r} (expected H:MM:SS[.fff] or seconds)"
        ) from None


def format_ms(ms: int | None, *, hours: bool = False) -> str:
    """110492 -> ``"1:50.492"``; with ``hours`` or past an hour -> ``"h:mm:ss.fff"``."""
    if ms is None:
        return ""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, f = divmod(rest, 1000)
    if h or hours:
        return f"{sign}{h}:{m:02d}:{s:02d}.{f:03d}"
    return f"{sign}{m}:{s:02d}.{f:03d}"


def format_gap(ms: int | None, laps: int = 0) -> str:
    """A gap as timing screens show it: ``+27.539``, ``+1:02.003`` or ``+2 laps``."""
    if laps:
        return f"+{laps} lap" + ("s" if laps != 1 else "")
    if ms is None:
        return ""
    if ms < 60_000:
        return f"+{ms // 1000}.{ms % 1000:03d}"
    return "+" + format_ms(ms)
