"""Defence in depth, as pure checks: what the runner accepts from the broker, and why not."""

from __future__ import annotations

import msgspec

from consumers.guard import Refusal, check_events, check_own_state, check_status
from simulator.contract import Batch, CatchupReply, encode
from simulator.replay.testing import generated_events

EVENTS = generated_events("s1", cars=2, laps=2)


def _events(payload: bytes, *, retained: bool = False, max_bytes: int = 1 << 20) -> object:
    return check_events(payload, retained=retained, session_id="s1", max_bytes=max_bytes)


class TestEvents:
    def test_an_event_and_a_batch_pass(self) -> None:
        """A well-formed event or batch of this session comes back as its events."""
        assert _events(encode(EVENTS[0])) == [EVENTS[0]]
        assert _events(encode(Batch(events=EVENTS[:3]))) == EVENTS[:3]

    def test_forgeries_are_refused_as_forged(self) -> None:
        """Retained, oversized and other-session messages are refused (counted as refused)."""
        other = msgspec.structs.replace(EVENTS[1], session_id="s2")
        for refusal, words in (
            (_events(encode(EVENTS[0]), retained=True), "retained"),
            (_events(encode(EVENTS[1]), max_bytes=10), "oversized"),
            (_events(encode(Batch(events=[EVENTS[0], other]))), "'s2'"),
        ):
            assert isinstance(refusal, Refusal) and refusal.forged
            assert words in refusal.reason

    def test_bad_input_is_refused_but_not_as_forged(self) -> None:
        """Undecodable or unknown-version payloads are dead letters, named by their field."""
        newer = msgspec.json.decode(encode(EVENTS[0]))
        newer["schema_version"] = 7
        unknown = _events(msgspec.json.encode(newer))
        assert isinstance(unknown, Refusal) and not unknown.forged
        assert unknown.reason.startswith("unknown schema version")
        garbage = _events(b'{"type": "LapCompleted", "seq": 1}')
        assert isinstance(garbage, Refusal) and not garbage.forged
        assert "$" in garbage.reason or "missing" in garbage.reason


_STATUS = {"state": "running", "session_id": "s1", "epoch": 1, "last_seq": 5,
           "total_events": 99, "session_time_ms": 0, "end_ms": 10, "speed": 1.0,
           "lag_ms": 0, "events_published": 5, "batch": 1, "encoding": "json"}


class TestStatus:
    def test_the_engine_status_and_its_will_pass(self) -> None:
        """The engine's status gives the head; its last will says lost."""
        status = check_status(msgspec.json.encode({**_STATUS, "epoch": 2, "last_seq": 40}),
                              session_id="s1")
        assert not isinstance(status, Refusal)
        assert (status.epoch, status.last_seq) == (2, 40)
        lost = check_status(b'{"state":"lost"}', session_id="s1")
        assert not isinstance(lost, Refusal) and lost.state == "lost"

    def test_lookalikes_are_refused(self) -> None:
        """A catch-up reply, another session's status or junk does not move the head."""
        for payload in (
            encode(CatchupReply(epoch=99, last_seq=0, error="unknown epoch")),
            msgspec.json.encode({**_STATUS, "session_id": "s2"}),
            msgspec.json.encode({**_STATUS, "epoch": -1}),
            msgspec.json.encode({"state": "running", "session_id": "s1", "epoch": 1,
                                 "last_seq": 5}),
            b"[1, 2]",
        ):
            assert isinstance(check_status(payload, session_id="s1"), Refusal), payload


class TestOwnState:
    def test_a_well_stamped_state_is_not_refused(self) -> None:
        """A state of this projection and session, stamped within the log, is not refused."""
        doc = {"projection": "laps", "session_id": "s1", "epoch": 1, "seq": 4,
               "session_time_ms": 0, "published_at_ns": 0, "state": {}}
        assert check_own_state(msgspec.json.encode(doc), projection="laps", session_id="s1",
                               head=(1, 10)) is None

    def test_unstamped_foreign_or_future_states_are_refused(self) -> None:
        """No stamp, another projection, or a stamp beyond the engine's log: refused."""
        base = {"projection": "laps", "session_id": "s1", "epoch": 1, "seq": 4}
        for doc in ({"state": {"1": 999}}, {**base, "projection": "other"},
                    {**base, "seq": "4"}, {**base, "seq": True}, {**base, "seq": 11}):
            refusal = check_own_state(msgspec.json.encode(doc), projection="laps",
                                      session_id="s1", head=(1, 10))
            assert isinstance(refusal, Refusal) and refusal.forged, doc
