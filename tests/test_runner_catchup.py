"""Catch-up sources: the journal file read by range, and reply decoding."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from consumers.catchup_client import JournalCatchup, decode_reply, reply_topic
from consumers.testing import write_journal
from simulator.contract import CatchupReply, CatchupRequest, encode
from simulator.errors import ContractError
from simulator.replay.testing import generated_events


async def _fetch(source: JournalCatchup, request: CatchupRequest) -> list[CatchupReply]:
    return [reply async for reply in source.fetch(request)]


class TestJournalCatchup:
    async def test_range_of_one_epoch_in_chunks(self, tmp_path: Path) -> None:
        """A range comes back in order, in chunks, the last one final, with the head."""
        events = generated_events("s", cars=5, laps=10)
        path = tmp_path / "j.jsonl"
        write_journal(path, events)
        replies = await _fetch(JournalCatchup(path, chunk=7),
                               CatchupRequest(epoch=1, from_seq=3, to_seq=20))
        assert [e.seq for r in replies for e in r.events] == list(range(3, 21))
        assert [r.final for r in replies] == [False, False, True]
        assert {r.last_seq for r in replies} == {len(events)}

    async def test_open_ended_request_reads_to_the_end(self, tmp_path: Path) -> None:
        """``to_seq`` None means up to the last complete line journaled."""
        events = generated_events("s", cars=2, laps=5)
        path = tmp_path / "j.jsonl"
        write_journal(path, events)
        source = JournalCatchup(path)
        replies = await _fetch(source, CatchupRequest(epoch=1, from_seq=1))
        assert [e.seq for r in replies for e in r.events] == [e.seq for e in events]
        # The engine keeps appending; a torn last line is not served until complete.
        more = generated_events("s", cars=2, laps=6)[len(events):]
        with path.open("ab") as out:
            out.write(encode(more[0]) + b"\n" + encode(more[1])[:20])
        replies = await _fetch(source, CatchupRequest(epoch=1, from_seq=len(events) + 1))
        assert [e.seq for r in replies for e in r.events] == [more[0].seq]
        assert replies[-1].last_seq == more[0].seq

    async def test_epochs_are_told_apart(self, tmp_path: Path) -> None:
        """Each epoch is its own seq range; the reply names the latest epoch journaled."""
        first = generated_events("s", cars=2, laps=4)
        second = [msgspec.structs.replace(e, epoch=2) for e in generated_events("s", cars=1,
                                                                               laps=3)]
        path = tmp_path / "j.jsonl"
        write_journal(path, first + second)
        replies = await _fetch(JournalCatchup(path), CatchupRequest(epoch=2, from_seq=1))
        assert [(e.epoch, e.seq) for r in replies for e in r.events] == [
            (2, s) for s in range(1, len(second) + 1)]
        old = await _fetch(JournalCatchup(path), CatchupRequest(epoch=1, from_seq=2, to_seq=3))
        assert old[-1].current_epoch == 2
        assert [e.seq for e in old[-1].events] == [2, 3]

    async def test_missing_journal_is_an_empty_answer(self, tmp_path: Path) -> None:
        """Before the engine wrote anything there is nothing yet, not an error."""
        replies = await _fetch(JournalCatchup(tmp_path / "none.jsonl"),
                               CatchupRequest(epoch=1, from_seq=1))
        assert len(replies) == 1 and replies[0].final and not replies[0].events


class TestReplies:
    def test_reply_decodes_json_and_msgpack(self) -> None:
        """Replies decode whatever their encoding."""
        reply = CatchupReply(epoch=1, events=generated_events("s", cars=1, laps=2), last_seq=4)
        assert decode_reply(encode(reply)) == reply
        assert decode_reply(encode(reply, "msgpack")) == reply

    def test_unknown_schema_version_is_refused(self) -> None:
        """An event of a newer schema inside a reply is a ContractError, not half understood."""
        event = msgspec.structs.replace(generated_events("s", cars=1, laps=1)[0],
                                        schema_version=9)
        with pytest.raises(ContractError, match="schema version 9"):
            decode_reply(encode(CatchupReply(epoch=1, events=[event])))

    def test_reply_topic_is_under_the_consumer_name(self) -> None:
        """The secure profile's ACL gives each consumer user catchup/reply/NAME/#."""
        assert reply_topic("s1", "running-order", "c-1") == (
            "lapcast/v1/sessions/s1/catchup/reply/running-order/c-1")


class TestPahoSpeedup:
    def test_shared_tables_build_the_same_properties(self) -> None:
        """With the shared tables installed, Properties pack exactly as paho's own."""
        from simulator.mqtt import workarounds

        assert workarounds.install_properties_speedup()
        assert workarounds.properties_speedup_matches_paho()
