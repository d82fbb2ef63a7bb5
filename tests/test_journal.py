"""The journal: JSON lines byte-identical to the payloads, every epoch, range reads, load()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from simulator.contract import encode
from simulator.errors import LapcastError, SourceError
from simulator.journal import JournalWriter, load, scan
from simulator.replay.testing import generated_events
from simulator.sources import load_source


def _write(path: Path, session: str, epochs: list[int]) -> list[list[bytes]]:
    """Journal ``epochs[i]`` events of the generated log as epoch i + 1; their lines."""
    written = []
    events = generated_events(session, cars=3, laps=10)
    with JournalWriter(path, session_id=session) as journal:
        for epoch, count in enumerate(epochs, start=1):
            lines = []
            for event in events[:count]:
                line = encode(msgspec.structs.replace(event, epoch=epoch))
                journal.append(epoch, event.seq, line)
                lines.append(line)
            journal.flush()
            written.append(lines)
    return written


class TestWriter:
    def test_lines_are_the_json_payloads(self, tmp_path: Path) -> None:
        """Each line is exactly encode(event, "json"), one per line, nothing else."""
        path = tmp_path / "s.jsonl"
        (lines,) = _write(path, "s", [32])
        assert path.read_bytes() == b"".join(line + b"\n" for line in lines)

    def test_range_reads_per_epoch(self, tmp_path: Path) -> None:
        """read(epoch, a, b) returns those lines of that epoch, clamped to what exists."""
        path = tmp_path / "s.jsonl"
        first, second = _write(path, "s", [20, 7])
        with JournalWriter(path, session_id="s") as journal:
            assert journal.read(1, 5, 9) == first[4:9]
            assert journal.read(2, 1, 100) == second
            assert journal.read(1, 20, 20) == first[19:]
            assert journal.read(1, 21, 30) == []
            assert journal.read(3, 1, 5) == []
            assert journal.last_epoch == 2
            assert journal.last_seq(1) == 20 and journal.last_seq(2) == 7

    def test_reads_see_what_was_just_appended(self, tmp_path: Path) -> None:
        """A range read right after an append (not yet flushed) includes it."""
        event = generated_events("s", cars=1, laps=1)[0]
        with JournalWriter(tmp_path / "s.jsonl", session_id="s") as journal:
            journal.append(1, 1, encode(event))
            assert journal.read(1, 1, 1) == [encode(event)]

    def test_reopening_continues_and_keeps_the_index(self, tmp_path: Path) -> None:
        """A new writer on an existing journal indexes it, so earlier epochs stay servable."""
        path = tmp_path / "s.jsonl"
        (lines,) = _write(path, "s", [12])
        with JournalWriter(path, session_id="s") as journal:
            assert journal.last_epoch == 1
            assert journal.read(1, 1, 12) == lines

    def test_torn_tail_is_truncated_before_appending(self, tmp_path: Path) -> None:
        """A line cut short by a crash is dropped, and the next append starts a clean line."""
        path = tmp_path / "s.jsonl"
        (lines,) = _write(path, "s", [5])
        with path.open("ab") as f:
            f.write(lines[0][:40])
        with JournalWriter(path, session_id="s") as journal:
            assert journal.last_seq(1) == 5
            journal.append(2, 1, lines[0].replace(b'"epoch":1', b'"epoch":2'))
        assert scan(path)[0].last_seq(2) == 1
        assert path.read_bytes().count(b"\n") == 6

    def test_out_of_order_appends_are_refused(self, tmp_path: Path) -> None:
        """A gap in seq, or an older epoch, never reaches the file."""
        event = generated_events("s", cars=1, laps=3)[0]
        with JournalWriter(tmp_path / "s.jsonl", session_id="s") as journal:
            journal.append(1, 1, encode(event))
            with pytest.raises(SourceError, match="seq 3 after seq 1"):
                journal.append(1, 3, encode(event))
            journal.append(2, 1, encode(event))
            with pytest.raises(SourceError, match="resumes after epoch 2"):
                journal.append(1, 2, encode(event))

    def test_a_journal_of_another_session_is_refused(self, tmp_path: Path) -> None:
        """--journal pointing at another session's journal is an error, not a mix."""
        path = tmp_path / "s.jsonl"
        _write(path, "s", [3])
        with pytest.raises(LapcastError, match="journal of session 's', not 'other'"):
            JournalWriter(path, session_id="other")


class TestLoad:
    def test_load_gives_the_latest_epoch(self, tmp_path: Path) -> None:
        """load() yields the events of the last epoch, in order, with that epoch."""
        path = tmp_path / "s.jsonl"
        _, second = _write(path, "s", [30, 11])
        source = load_source(str(path))
        events = list(source.events())
        assert [encode(e) for e in events] == second
        assert {e.epoch for e in events} == {2}
        assert source.size == 11 and source.session_id == "s"
        assert list(source.events()) == events  # a Source can be read again

    def test_session_id_override_restamps(self, tmp_path: Path) -> None:
        """load(path, session_id) stamps the events with the other session id."""
        path = tmp_path / "s.jsonl"
        _write(path, "s", [4])
        source = load(path, session_id="again")
        assert {e.session_id for e in source.events()} == {"again"}

    def test_torn_tail_is_ignored_by_readers(self, tmp_path: Path) -> None:
        """A reader skips a torn final line; the complete lines load."""
        path = tmp_path / "s.jsonl"
        _write(path, "s", [6])
        with path.open("ab") as f:
            f.write(b'{"type":"LapCompleted","sess')
        assert len(list(load(path).events())) == 6

    def test_a_bad_line_is_named_by_its_line_number(self, tmp_path: Path) -> None:
        """Garbage in the middle of a journal is a SourceError naming file and line."""
        path = tmp_path / "s.jsonl"
        (lines,) = _write(path, "s", [5])
        lines[2] = b'{"not": "an event"}'
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        with pytest.raises(SourceError, match=r"s\.jsonl:3: not a journal line"):
            load(path)

    def test_a_gap_is_named_by_its_line_number(self, tmp_path: Path) -> None:
        """A missing seq is refused at the line where it shows."""
        path = tmp_path / "s.jsonl"
        (lines,) = _write(path, "s", [5])
        del lines[1]
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        with pytest.raises(SourceError, match=r":2: epoch 1: seq 3 after seq 1"):
            load(path)

    def test_an_empty_journal_is_refused(self, tmp_path: Path) -> None:
        """Nothing to fold is an error that names the file."""
        path = tmp_path / "empty.jsonl"
        path.write_bytes(b"")
        with pytest.raises(SourceError, match=r"empty\.jsonl: empty journal"):
            load(path)

    def test_lapcast_fold_folds_the_latest_epoch(self, tmp_path: Path) -> None:
        """`lapcast fold JOURNAL` reports the latest epoch's events, not every line."""
        path = tmp_path / "s.jsonl"
        _write(path, "s", [32, 20])
        out = subprocess.run([sys.executable, "-m", "lapcast", "fold", str(path), "--json"],
                             capture_output=True, check=True, timeout=60)
        document = msgspec.json.decode(out.stdout)
        assert document["events"] == 20
