"""Portable names: session ids and client ids every broker accepts in a topic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from consumers.settings import RunnerSettings, default_client_id
from simulator import names, scenario
from simulator.errors import LapcastError, SourceError

LAPCAST = [sys.executable, "-m", "lapcast"]
REPO = Path(__file__).resolve().parents[1]


class TestValidateName:
    @pytest.mark.parametrize("name", ["a.b", "a b", "a+b", "a#", "a/b", "", "a\tb", "é", "$SYS"])
    def test_refuses_what_some_broker_refuses(self, name: str) -> None:
        """`.`, space, `+`, `#`, `/`, any other non-portable character and empty are refused."""
        with pytest.raises(names.InvalidName) as caught:
            names.validate_session_id(name)
        assert "invalid session id" in str(caught.value)

    def test_the_error_names_the_characters_and_a_portable_spelling(self) -> None:
        """The message says which characters are wrong and what would be accepted."""
        with pytest.raises(names.InvalidName, match=r"'\.', a space are not allowed.*'a-b-c'"):
            names.validate_session_id("a.b c")

    def test_is_a_lapcast_error_and_a_value_error(self) -> None:
        """The CLI turns it into exit 2; older callers catching ValueError still do."""
        assert issubclass(names.InvalidName, LapcastError)
        assert issubclass(names.InvalidName, ValueError)

    @pytest.mark.parametrize("name", ["s1", "wec-2024_bahrain", "t-0123abcd", "A-Z_09"])
    def test_accepts_portable_names(self, name: str) -> None:
        """Letters, digits, `-` and `_` pass unchanged."""
        assert names.validate_session_id(name) == name
        assert names.validate_client_id(name) == name

    def test_bounds_the_length(self) -> None:
        """A name beyond 200 characters is refused."""
        with pytest.raises(names.InvalidName, match="longer than"):
            names.validate_client_id("x" * 201)


class TestPortableName:
    def test_the_shared_race_file_name(self) -> None:
        """The shared race's file name becomes `wec-2024-bahrain-8h-race-analysis`."""
        assert (names.portable_name("wec-2024-bahrain-8h-race.analysis")
                == "wec-2024-bahrain-8h-race-analysis")

    def test_every_unportable_character_becomes_a_dash(self) -> None:
        """Each character outside the set maps to one `-`; the result validates."""
        name = names.portable_name("my race+2 #1/b.é")
        assert name == "my-race-2--1-b--"
        assert names.validate_session_id(name) == name

    def test_default_client_id_of_a_dotted_consumer_is_portable(self) -> None:
        """A consumer given as `module.path:attr` still gets a portable default client id."""
        client = default_client_id("pkg.mod:obj", "s1")
        assert client == "lapcast-pkg-mod-obj-s1"
        names.validate_client_id(client)


class TestWhereIdsComeFrom:
    def test_runner_settings_refuse_a_dotted_client_id(self) -> None:
        """An explicit client id with `.` is refused before anything connects."""
        with pytest.raises(names.InvalidName, match=r"client id 'a\.b'"):
            RunnerSettings(session_id="s1", client_id="a.b")

    def test_scenario_id_is_checked_where_it_is_written(self, tmp_path: Path) -> None:
        """A scenario's `id = "a.b"` is a SourceError naming the file and line."""
        source = (REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml").read_text()
        lines = source.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("id = "))
        lines[at] = 'id = "bad.id"'
        path = tmp_path / "bad.toml"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(SourceError) as caught:
            scenario.load(path)
        assert caught.value.path == str(path)
        assert caught.value.line == at + 1
        assert "'.' is not allowed" in str(caught.value)

    def test_scenario_without_id_takes_a_portable_file_name(self, tmp_path: Path) -> None:
        """A scenario without `id` named `my.race.toml` runs as session `my-race`."""
        source = (REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml").read_text()
        lines = [line for line in source.splitlines() if not line.startswith("id ")]
        path = tmp_path / "my.race.toml"
        path.write_text("\n".join(lines) + "\n")
        assert scenario.load(path).session_id == "my-race"


class TestCommandLine:
    @pytest.mark.parametrize("argv", [
        ["replay", "synth", "--session-id", "a.b"],
        ["fold", "synth", "--session-id", "a b"],
        ["synth", "--session-id", "a+b"],
        ["consume", "running-order", "--session", "a#"],
        ["consume", "running-order", "--session", "s1", "--client-id", "x/y"],
        ["board", "--session", "a.b"],
    ])
    def test_a_bad_id_exits_2_before_connecting(self, argv: list[str]) -> None:
        """Every command refuses an unportable id with exit 2 and one clear line, no
        traceback, and never connects (the default broker port need not be open)."""
        done = subprocess.run([*LAPCAST, *argv], capture_output=True, timeout=60, text=True)
        assert done.returncode == 2
        assert "not allowed" in done.stderr
        assert "Traceback" not in done.stderr

    def test_a_journal_of_an_unportable_session_exits_2(self, tmp_path: Path) -> None:
        """Replaying an old journal whose session id has a `.` fails clearly, exit 2."""
        journal = tmp_path / "old.jsonl"
        made = subprocess.run([*LAPCAST, "synth", "--cars", "2", "--laps", "2", "--out",
                               str(journal), "--no-progress"], capture_output=True, timeout=60)
        assert made.returncode == 0, made.stderr
        text = journal.read_text().replace('"session_id":"synth-race-2-s0"',
                                           '"session_id":"old.session"')
        assert "old.session" in text
        journal.write_text(text)
        done = subprocess.run([*LAPCAST, "replay", str(journal), "--journal",
                               str(tmp_path / "out.jsonl"), "--broker", "mqtt://127.0.0.1:9"],
                              capture_output=True, timeout=60, text=True)
        assert done.returncode == 2, done.stderr
        assert "invalid session id 'old.session'" in done.stderr
        assert "Traceback" not in done.stderr
