"""Every ``lapcast`` command, given paths it cannot use: one line naming the path, exit 2.

The commands are enumerated from the parser itself, so a command added later fails
``test_every_command_has_its_path_cases`` until its path cases are listed here; so
does a new path option of an existing command. Read-only means a read-only tmpfs
mount (the tests run as root, who ignores file modes); a full disk is a tiny tmpfs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lapcast.cli import COMMANDS, build_parser

# Nothing listens on the discard port: a command that connected before checking its
# paths would fail differently (or retry until the timeout).
NOWHERE = "mqtt://127.0.0.1:9"
NOWHERE_TLS = "mqtts://127.0.0.1:9"
SMALL_SYNTH = ["--cars", "3", "--laps", "2"]


@dataclass(frozen=True)
class Layout:
    """The paths the cases use, all under one temporary folder."""

    root: Path

    @property
    def missing(self) -> Path:  # a folder that does not exist
        return self.root / "missing"

    @property
    def folder(self) -> Path:  # an existing folder
        return self.root / "folder"

    @property
    def csv_folder(self) -> Path:  # a folder with a source's name
        return self.root / "race.csv"

    @property
    def file(self) -> Path:  # an existing file, where a folder is expected
        return self.root / "file.txt"

    @property
    def bad_csv(self) -> Path:  # a source in no format lapcast reads
        return self.root / "bad.csv"

    @property
    def bad_journal(self) -> Path:
        return self.root / "bad.jsonl"

    @property
    def readonly(self) -> Path:  # a read-only mount
        return self.root / "ro"

    @property
    def full(self) -> Path:  # a 64 KiB writable mount
        return self.root / "full"


@dataclass(frozen=True)
class Case:
    option: str  # the option (or SOURCE) the case is about
    label: str
    argv: Callable[[Layout], list[str]]
    path: Callable[[Layout], Path]  # the path the error line must name


# A command whose parser has no path argument at all says so here.
NO_PATHS = "no path arguments"

CASES: dict[str, list[Case] | str] = {
    "fold": [
        Case("SOURCE", "nonexistent folder", lambda t: ["fold", str(t.missing / "race.csv")],
             lambda t: t.missing / "race.csv"),
        Case("SOURCE", "a folder", lambda t: ["fold", str(t.csv_folder)], lambda t: t.csv_folder),
        Case("SOURCE", "under a file", lambda t: ["fold", str(t.file / "race.csv")],
             lambda t: t.file / "race.csv"),
        Case("SOURCE", "bad format", lambda t: ["fold", str(t.bad_csv)], lambda t: t.bad_csv),
        Case("SOURCE", "bad journal", lambda t: ["fold", str(t.bad_journal)],
             lambda t: t.bad_journal),
        Case("--out", "read-only folder",
             lambda t: ["fold", "synth:cars=2,laps=2", "--chart", "laps", "--out",
                        str(t.readonly / "c.svg")],
             lambda t: t.readonly / "c.svg"),
        Case("--out", "under a file",
             lambda t: ["fold", "synth:cars=2,laps=2", "--chart", "laps", "--out",
                        str(t.file / "c.svg")],
             lambda t: t.file / "c.svg"),
    ],
    "replay": [
        Case("SOURCE", "nonexistent folder",
             lambda t: ["replay", str(t.missing / "race.csv"), "--broker", NOWHERE],
             lambda t: t.missing / "race.csv"),
        Case("SOURCE", "a folder", lambda t: ["replay", str(t.csv_folder), "--broker", NOWHERE],
             lambda t: t.csv_folder),
        Case("SOURCE", "bad format", lambda t: ["replay", str(t.bad_csv), "--broker", NOWHERE],
             lambda t: t.bad_csv),
        Case("--journal", "read-only folder",
             lambda t: ["replay", "synth", *SMALL_SYNTH, "--broker", NOWHERE, "--journal",
                        str(t.readonly / "j.jsonl")],
             lambda t: t.readonly / "j.jsonl"),
        Case("--journal", "a folder",
             lambda t: ["replay", "synth", *SMALL_SYNTH, "--broker", NOWHERE, "--journal",
                        str(t.folder)],
             lambda t: t.folder),
        Case("--journal", "under a file",
             lambda t: ["replay", "synth", *SMALL_SYNTH, "--broker", NOWHERE, "--journal",
                        str(t.file / "j.jsonl")],
             lambda t: t.file / "j.jsonl"),
        Case("--journal", "an existing journal in a bad format",
             lambda t: ["replay", "synth", *SMALL_SYNTH, "--broker", NOWHERE, "--journal",
                        str(t.bad_journal)],
             lambda t: t.bad_journal),
        Case("--ca-file", "nonexistent",
             lambda t: ["replay", "synth", *SMALL_SYNTH, "--broker", NOWHERE_TLS, "--ca-file",
                        str(t.missing / "ca.pem"), "--journal", str(t.root / "ok.jsonl")],
             lambda t: t.missing / "ca.pem"),
    ],
    "board": [
        Case("--ca-file", "nonexistent",
             lambda t: ["board", "--session", "s", "--broker", NOWHERE_TLS, "--ca-file",
                        str(t.missing / "ca.pem")],
             lambda t: t.missing / "ca.pem"),
        Case("--ca-file", "a folder",
             lambda t: ["board", "--session", "s", "--broker", NOWHERE_TLS, "--ca-file",
                        str(t.folder)],
             lambda t: t.folder),
    ],
    "demo": [
        Case("--source", "nonexistent folder",
             lambda t: ["demo", "--source", str(t.missing / "race.csv")],
             lambda t: t.missing / "race.csv"),
        Case("--source", "a folder", lambda t: ["demo", "--source", str(t.csv_folder)],
             lambda t: t.csv_folder),
    ],
    "consume": [
        Case("--state-dir", "a file",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE,
                        "--state-dir", str(t.file)],
             lambda t: t.file),
        Case("--state-dir", "read-only folder",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE,
                        "--state-dir", str(t.readonly / "state")],
             lambda t: t.readonly / "state"),
        Case("--state-dir", "under a file",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE,
                        "--state-dir", str(t.file / "state")],
             lambda t: t.file / "state"),
        Case("--journal", "a folder",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE,
                        "--state-dir", str(t.root / "state"), "--journal", str(t.folder)],
             lambda t: t.folder),
        Case("--journal", "under a file",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE,
                        "--state-dir", str(t.root / "state"), "--journal",
                        str(t.file / "j.jsonl")],
             lambda t: t.file / "j.jsonl"),
        Case("--ca-file", "nonexistent",
             lambda t: ["consume", "running-order", "--session", "s", "--broker", NOWHERE_TLS,
                        "--state-dir", str(t.root / "state"), "--ca-file",
                        str(t.missing / "ca.pem")],
             lambda t: t.missing / "ca.pem"),
    ],
    "consumers": NO_PATHS,
    "schema": [
        Case("--out", "a folder", lambda t: ["schema", "--out", str(t.folder)],
             lambda t: t.folder),
        Case("--out", "read-only folder", lambda t: ["schema", "--out", str(t.readonly / "a.json")],
             lambda t: t.readonly / "a.json"),
        Case("--out", "under a file", lambda t: ["schema", "--out", str(t.file / "a.json")],
             lambda t: t.file / "a.json"),
    ],
    "web": [
        Case("--ca-file", "nonexistent",
             lambda t: ["web", "--session", "s", "--broker", NOWHERE_TLS, "--port", "0",
                        "--ca-file", str(t.missing / "ca.pem")],
             lambda t: t.missing / "ca.pem"),
        Case("--ca-file", "a folder",
             lambda t: ["web", "--session", "s", "--broker", NOWHERE_TLS, "--port", "0",
                        "--ca-file", str(t.folder)],
             lambda t: t.folder),
    ],
    "synth": [
        Case("--out", "a folder", lambda t: ["synth", *SMALL_SYNTH, "--out", str(t.folder)],
             lambda t: t.folder),
        Case("--out", "read-only folder",
             lambda t: ["synth", *SMALL_SYNTH, "--out", str(t.readonly / "x.jsonl")],
             lambda t: t.readonly / "x.jsonl"),
        Case("--out", "under a file",
             lambda t: ["synth", *SMALL_SYNTH, "--out", str(t.file / "x.jsonl")],
             lambda t: t.file / "x.jsonl"),
        Case("--out", "a disk that fills while writing",
             lambda t: ["synth", "--cars", "60", "--laps", "50", "--no-progress", "--out",
                        str(t.full / "x.jsonl")],
             lambda t: t.full / "x.jsonl"),
    ],
    "stress": [
        Case("--workdir", "a file", lambda t: ["stress", *SMALL_SYNTH, "--workdir", str(t.file)],
             lambda t: t.file),
        Case("--workdir", "read-only folder",
             lambda t: ["stress", *SMALL_SYNTH, "--workdir", str(t.readonly)],
             lambda t: t.readonly),
        Case("--workdir", "under a file",
             lambda t: ["stress", *SMALL_SYNTH, "--workdir", str(t.file / "run")],
             lambda t: t.file / "run"),
        Case("--ca-file", "nonexistent",
             lambda t: ["stress", *SMALL_SYNTH, "--broker", NOWHERE_TLS, "--ca-file",
                        str(t.missing / "ca.pem")],
             lambda t: t.missing / "ca.pem"),
    ],
}

# How a path argument is recognised in a parser (a new one must get its cases above).
PATH_METAVARS = {"PATH", "DIR", "FILE", "PEM", "SOURCE"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("lapcast has no subcommands")


def _path_options(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        if action.type is Path or action.metavar in PATH_METAVARS:
            found.add(action.option_strings[0] if action.option_strings
                      else str(action.metavar))
    return found


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    t = Layout(tmp_path_factory.mktemp("paths"))
    t.folder.mkdir()
    t.csv_folder.mkdir()
    t.file.write_text("a file\n")
    t.bad_csv.write_bytes(b"\x00\xff not a csv \xfe\n")
    t.bad_journal.write_text("{ not json\n")
    _mount_tmpfs(t.readonly, "ro,size=64k")
    _mount_tmpfs(t.full, "size=64k")
    try:
        yield t
    finally:
        for mount in (t.readonly, t.full):
            subprocess.run(["umount", str(mount)], check=False)


def _all_cases() -> Iterator[tuple[str, Case]]:
    for command, cases in CASES.items():
        if isinstance(cases, list):
            for case in cases:
                yield command, case


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lapcast", *argv], capture_output=True,
                          text=True, timeout=30, cwd=cwd)


class TestCoverage:
    def test_every_command_has_its_path_cases(self) -> None:
        """Each registered command, and each of its path options, has cases listed here."""
        parsers = _subparsers()
        assert set(parsers) == set(COMMANDS)
        missing = set(parsers) - set(CASES)
        assert not missing, f"no path cases for lapcast {', '.join(sorted(missing))}"
        for name, parser in parsers.items():
            options = _path_options(parser)
            cases = CASES[name]
            if cases == NO_PATHS:
                assert not options, f"lapcast {name} has path options {options}: list cases"
                continue
            assert isinstance(cases, list)
            covered = {case.option for case in cases}
            assert options <= covered, (
                f"lapcast {name}: no cases for {', '.join(sorted(options - covered))}")


class TestBadPaths:
    @pytest.mark.parametrize(("command", "case"), list(_all_cases()),
                             ids=[f"{c}-{k.option}-{k.label}" for c, k in _all_cases()])
    def test_one_line_naming_the_path_and_exit_2(self, layout: Layout, command: str,
                                                  case: Case) -> None:
        """The command exits 2 with one line on stderr that names the path; no traceback."""
        before = set(layout.root.rglob("*"))
        result = _run(case.argv(layout), cwd=layout.root)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"lapcast {command}: ")
        assert str(case.path(layout)) in lines[0], lines[0]
        # Nothing left behind: no probe file, no partial output, no empty journal.
        assert set(layout.root.rglob("*")) <= before, set(layout.root.rglob("*")) - before


class TestGoodPaths:
    def test_an_output_in_folders_that_do_not_exist_yet_is_created(self, layout: Layout
                                                                   ) -> None:
        """Checking up front refuses nothing usable: missing folders of an output are made."""
        out = layout.root / "new" / "deep" / "x.jsonl"
        result = _run(["synth", *SMALL_SYNTH, "--no-progress", "--out", str(out)],
                      cwd=layout.root)
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 0
        assert [p.name for p in out.parent.iterdir()] == ["x.jsonl"]


class TestOtherUserErrors:
    @pytest.mark.parametrize(("argv", "named"), [
        (["consume", "nosuchmodule:CONSUMER", "--session", "s", "--broker", NOWHERE],
         "nosuchmodule:CONSUMER"),
        (["consume", "os:no_such_attr", "--session", "s", "--broker", NOWHERE],
         "os:no_such_attr"),
        (["demo", "--broker", "nonsense"], "nonsense"),
    ], ids=["consume-no-module", "consume-no-attr", "demo-bad-broker-url"])
    def test_one_line_naming_what_is_wrong(self, layout: Layout, argv: list[str],
                                           named: str) -> None:
        """A consumer that does not load, a broker URL that does not parse: one line, exit 2."""
        if argv[0] == "consume":
            argv = [*argv, "--state-dir", str(layout.root / "state")]
        result = _run(argv, cwd=layout.root)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr
