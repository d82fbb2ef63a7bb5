"""Race times as text <-> integer milliseconds, exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.timefmt import format_gap, format_ms, parse_duration, parse_ms


class TestParse:
    @pytest.mark.parametrize(("text", "ms"), [
        ("1:50.492", 110_492),
        ("2:01.914", 121_914),
        ("35.849", 35_849),
        ("1:05.123", 65_123),
        ("0:01:16.688", 76_688),
        ("8:01:25.839", 28_885_839),
        ("2:03:04.5", 7_384_500),
        ("59.9", 59_900),
        ("7", 7_000),
        (" 1:50.492 ", 110_492),
        ("23:59:59.999", 86_399_999),
    ])
    def test_exact(self, text: str, ms: int) -> None:
        """Every export format parses to the exact integer, never through a float."""
        value = parse_ms(text)
        assert value == ms and type(value) is int

    @pytest.mark.parametrize("text", ["", "abc", "1:60.000", "1:00:60", "1:60:00", "-1",
                                      "1.2345", "1::2", "1:5x.000", "1,5"])
    def test_refused(self, text: str) -> None:
        """Text that is not a time raises ValueError quoting it."""
        with pytest.raises(ValueError, match="not a time"):
            parse_ms(text)

    @pytest.mark.parametrize(("text", "ms"), [("90", 90_000), ("1.5", 1_500),
                                              ("1:30", 90_000), ("2:00:00", 7_200_000)])
    def test_duration(self, text: str, ms: int) -> None:
        """Command-line session times take H:MM:SS, M:SS or plain seconds."""
        assert parse_duration(text) == ms

    @pytest.mark.parametrize("text", ["", "x", "1.2345", "-5"])
    def test_bad_duration(self, text: str) -> None:
        """A command-line time that is not one raises ValueError."""
        with pytest.raises(ValueError, match="not a"):
            parse_duration(text)


class TestFormat:
    @pytest.mark.parametrize(("ms", "text"), [(110_492, "1:50.492"), (35_849, "0:35.849"),
                                              (28_885_839, "8:01:25.839"), (0, "0:00.000"),
                                              (-1_500, "-0:01.500"), (None, "")])
    def test_format(self, ms: int | None, text: str) -> None:
        """Milliseconds print as timing screens show them."""
        assert format_ms(ms) == text

    def test_hours(self) -> None:
        """hours=True always prints the hour."""
        assert format_ms(110_492, hours=True) == "0:01:50.492"

    @pytest.mark.parametrize(("ms", "laps", "text"), [(27_539, 0, "+27.539"),
                                                      (62_003, 0, "+1:02.003"),
                                                      (5, 1, "+1 lap"), (0, 2, "+2 laps"),
                                                      (None, 0, "")])
    def test_gap(self, ms: int | None, laps: int, text: str) -> None:
        """Gaps show seconds, minutes or laps."""
        assert format_gap(ms, laps) == text


class TestProperties:
    @given(ms=st.integers(0, 10**10), hours=st.booleans())
    def test_round_trip(self, ms: int, hours: bool) -> None:
        """Formatting then parsing gives back the same milliseconds."""
        assert parse_ms(format_ms(ms, hours=hours)) == ms

    @given(text=st.text(max_size=16))
    def test_parse_any_text(self, text: str) -> None:
        """Any text parses to a non-negative int or raises ValueError, nothing else."""
        try:
            value = parse_ms(text)
        except ValueError:
            return
        assert type(value) is int and value >= 0
