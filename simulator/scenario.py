"""Scenario files (TOML): sessions that are not Al Kamel exports, written or generated.

A scenario describes a session the way a timing sheet and a press report would:
metadata, the entry list, every car's laps, the corrections, and the championship
as it stood before the round with the points rules. ``scenarios/README.md`` shows
the format; in short::

    format = 1
    [session]          series, event, kind, scheduled_start, time_zone, duration, classes
    [[session.segments]]  optional: which classes run when (class qualifying sessions)
    [[entries]]        car, class, team, manufacturer, drivers
    [[cars]]           car, driver, start, laps = [{ lap, time, sectors, in_pit, ... }]
    [[corrections]]    kind (LapDeleted | TimePenalty | Disqualified), at, car, reason
    [championship]     name, rounds_remaining, [championship.rules], [[championship.standings]]

Every table says where its values come from, ``source = "seed" | "published" |
"synthesized"``, and may list the keys it synthesized anyway (``synthesized =
["drivers"]``); a lap may override its car's ``source``. That provenance travels
on: a lap's ``synthesized`` flag is its ``source`` (the lap time and its moment),
an ``Entry`` is ``synthesized`` and a ``Competitor`` not ``published`` when any of
their values was, and ``SessionStarted.synthesized`` names each synthesized value.

Crossing moments are the running sum of a car's lap times from its ``start`` (the
moment it leaves the pit lane); a lap may pin its crossing with ``at`` instead.
Everything the file does not say (flags, the chequered flag, sectors as events,
retirements) is derived by ``simulator.derive.build_log``, as for every source.

Errors are ``SourceError`` naming the file, line and column: ``tomllib`` gives
them for syntax errors, ``simulator.tomlpos`` finds them for the rest.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FilePath
from typing import Any, Final, NoReturn

from simulator import names
from simulator.contract import (
    ChampionshipSetup,
    Competitor,
    Entry,
    Event,
    Flag,
    PointsRules,
    SessionKind,
)
from simulator.derive import Correction, Crossing, build_log
from simulator.errors import SourceError
from simulator.sources import Granularity, Source
from simulator.timefmt import format_ms, parse_ms
from simulator.tomlpos import Path, Positions, locate

__all__ = ["FORMAT_VERSION", "SOURCES", "Scenario", "load", "parse", "parse_text"]

FORMAT_VERSION: Final = 1
SOURCES: Final = ("seed", "published", "synthesized")

_CORRECTION_KINDS: Final = {
    "LapDeleted": "lap-deleted",
    "TimePenalty": "time-penalty",
    "Disqualified": "disqualified",
}
# Scenario keys -> the SessionStarted / Entry / PointsRules field they fill, where the
# names differ (for SessionStarted.synthesized, which speaks the contract's names).
_SESSION_FIELDS: Final = {"event": "event_name", "kind": "session_kind",
                          "duration": "duration_ms", "laps": "distance_laps"}
_ENTRY_FIELDS: Final = {"class": "car_class"}
_RULES_FIELDS: Final = {"class": "championship_class"}
_TOML_POSITION: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A parsed scenario: what ``build_log`` needs, checked."""

    path: str
    session_id: str
    started: dict[str, Any]
    crossings: tuple[Crossing, ...]
    corrections: tuple[Correction, ...]


def load(path: str | FilePath, *, session_id: str | None = None,
         granularity: Granularity = "lap") -> Source:
    """Load a scenario file as a ``Source`` (its whole log is built and checked now)."""
    scenario = parse(path)
    sid = session_id or scenario.session_id
    events: tuple[Event, ...] = tuple(build_log(
        session_id=sid, started=scenario.started, crossings=scenario.crossings,
        corrections=scenario.corrections, granularity=granularity, source=scenario.path,
    ))
    opener: Callable[[], Iterator[Event]] = events.__iter__
    return Source(name=FilePath(scenario.path).name, session_id=sid, open_events=opener,
                  size=len(events))


def parse(path: str | FilePath) -> Scenario:
    """Read and check a scenario file."""
    name = str(path)
    try:
        raw = FilePath(path).read_bytes()
    except OSError as exc:
        raise SourceError(name, f"cannot read the scenario: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SourceError(name, "not UTF-8 text", line=line, column=column) from exc
    return parse_text(text, path=name)


def parse_text(text: str, *, path: str = "<scenario>") -> Scenario:
    """Check a scenario given as text; ``path`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        reason = _TOML_POSITION.sub("", message).strip()
        if match is None:  # "at end of document"
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
        else:
            line, column = int(match[1]), int(match[2])
        raise SourceError(path, f"TOML syntax: {reason}", line=line, column=column) from exc
    return _Parser(path, text, data).parse()


# --- reading tables ----------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class _Table:
    """One TOML table, read key by key; keys nobody asked for are reported as unknown."""

    def __init__(self, parser: _Parser, path: Path, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            parser.fail(path, f"{what} must be a table, not {_type_name(data)}")
        self.p = parser
        self.path = path
        self.data: dict[str, Any] = data
        self.what = what
        self.seen: set[str] = set()

    def at(self, key: str) -> Path:
        return (*self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def _raw(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if required:
                self.p.fail(self.path, f"{self.what}: missing key `{key}`")
            return None
        return self.data[key]

    def _check(self, key: str, value: Any, kinds: tuple[type, ...], describe: str) -> None:
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.p.fail(self.at(key),
                        f"{self.what}: `{key}` must be {describe}, not {_type_name(value)}")

    def string(self, key: str, *, required: bool = True, default: str | None = None,
               empty: bool = False) -> Any:
        value = self._raw(key, required)
        if value is None:
            return default
        self._check(key, value, (str,), "a string")
        if not empty and not value.strip():
            self.p.fail(self.at(key), f"{self.what}: `{key}` is empty")
        return value

    def integer(self, key: str, *, required: bool = True, default: int | None = None,
                minimum: int | None = None) -> Any:
        value = self._raw(key, required)
        if value is None:
            return default
        self._check(key, value, (int,), "an integer")
        if minimum is not None and value < minimum:
            self.p.fail(self.at(key), f"{self.what}: `{key}` must be at least {minimum}, "
                                      f"not {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key, False)
        if value is None:
            return default
        self._check(key, value, (bool,), "true or false")
        return bool(value)

    def array(self, key: str, *, required: bool = True) -> list[Any] | None:
        value = self._raw(key, required)
        if value is None:
            return None
        self._check(key, value, (list,), "an array")
        return list(value)

    def strings(self, key: str, *, required: bool = True, nonempty: bool = False,
                unique: bool = True) -> list[str] | None:
        values = self.array(key, required=required)
        if values is None:
            return None
        if nonempty and not values:
            self.p.fail(self.at(key), f"{self.what}: `{key}` is empty")
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v.strip():
                self.p.fail((*self.at(key), i), f"{self.what}: `{key}` item {i + 1} must be "
                                                f"a non-empty string, not {v!r}")
            if unique and v in values[:i]:
                self.p.fail((*self.at(key), i), f"{self.what}: `{key}` lists {v!r} twice")
        return values

    def integers(self, key: str, *, required: bool = True, minimum: int = 0) -> list[int] | None:
        values = self.array(key, required=required)
        if values is None:
            return None
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                self.p.fail((*self.at(key), i), f"{self.what}: `{key}` item {i + 1} must be "
                                                f"an integer >= {minimum}, not {v!r}")
        return values

    def time(self, key: str, *, required: bool = True, what: str = "a time") -> int | None:
        value = self._raw(key, required)
        if value is None:
            return None
        self._check(key, value, (str,), f'{what} as a string, e.g. "1:46.564"')
        try:
            return parse_ms(value)
        except ValueError as exc:
            self.p.fail(self.at(key), f"{self.what}: `{key}`: {exc}")

    def choice(self, key: str, options: tuple[str, ...] | list[str], *,
               required: bool = True, default: str | None = None) -> Any:
        value = self.string(key, required=required, default=default)
        if value is not None and value not in options:
            self.p.fail(self.at(key), f"{self.what}: `{key}` is {value!r}, expected one of "
                                      f"{', '.join(repr(o) for o in options)}")
        return value

    def provenance(self, inherited: str | None = None) -> tuple[str, set[str]]:
        """This table's ``source`` and the keys it lists as ``synthesized`` anyway."""
        source = self.choice("source", SOURCES, required=inherited is None, default=inherited)
        listed = self.strings("synthesized", required=False) or []
        for i, key in enumerate(listed):
            if key not in self.data or key in ("source", "synthesized"):
                self.p.fail((*self.at("synthesized"), i),
                            f"{self.what}: `synthesized` lists {key!r}, which is not a value "
                            "of this table")
        return source, set(listed)

    def done(self) -> None:
        for key in self.data:
            if key not in self.seen:
                expected = ", ".join(sorted(self.seen))
                self.p.fail(self.at(key), f"{self.what}: unknown key `{key}` "
                                          f"(expected: {expected})", key=True)


def _is_synthesized(source: str, listed: set[str], key: str) -> bool:
    return source == "synthesized" or key in listed


@dataclass(frozen=True, slots=True)
class _Segment:
    start_ms: int
    end_ms: int
    path: Path


# --- the parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, path: str, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.text = text
        self.data = data
        self._positions: Positions | None = None
        self.synthesized: list[str] = []  # SessionStarted.synthesized

    def fail(self, where: Path, message: str, *, key: bool = False) -> NoReturn:
        if self._positions is None:
            self._positions = locate(self.text)
        line, column = self._positions.find(where, key=key)
        raise SourceError(self.path, message, line=line, column=column)

    def parse(self) -> Scenario:
        top = _Table(self, (), self.data, "the scenario")
        version = top.integer("format", required=False, default=FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.fail(("format",), f"scenario format {version} is not known "
                                   f"(this lapcast reads format {FORMAT_VERSION})")
        session = _Table(self, ("session",), top._raw("session", True), "[session]")
        started, session_id, segments = self._session(session)
        entries = self._entries(top.array("entries") or [], started["classes"])
        started["entries"] = list(entries.values())
        crossings, laps = self._cars(top.array("cars", required=False) or [], entries,
                                     segments, started["sectors"])
        corrections = self._corrections(top.array("corrections", required=False) or [],
                                        entries, laps)
        if top.has("championship"):
            started["championship"] = self._championship(
                _Table(self, ("championship",), top._raw("championship", True),
                       "[championship]"), entries, started["classes"])
        top.done()
        started["synthesized"] = self.synthesized
        return Scenario(path=self.path, session_id=session_id, started=started,
                        crossings=tuple(crossings), corrections=tuple(corrections))

    # --- [session] -----------------------------------------------------------------------

    def _session(self, t: _Table) -> tuple[dict[str, Any], str, dict[str, _Segment]]:
        source, listed = t.provenance()
        session_id = t.string("id", required=False, default="")
        if not session_id:
            session_id = names.portable_name(FilePath(self.path).stem)
        else:
            try:
                names.validate_session_id(session_id)
            except names.InvalidName as exc:
                self.fail(t.at("id"), str(exc))
        kind_text = t.choice("kind", [k.value for k in SessionKind])
        started: dict[str, Any] = {
            "series": t.string("series"),
            "event_name": t.string("event"),
            "session_kind": SessionKind(kind_text),
            "scheduled_start": t.string("scheduled_start"),
            "time_zone": t.string("time_zone"),
            "classes": t.strings("classes", nonempty=True),
            "duration_ms": t.time("duration", required=False, what="a duration"),
            "distance_laps": t.integer("laps", required=False, minimum=1),
            "sectors": t.integer("sectors", required=False, default=3, minimum=1),
            "source": f"scenario {FilePath(self.path).name}",
        }
        try:
            when = datetime.fromisoformat(started["scheduled_start"])
        except ValueError:
            when = None
        if when is None or when.utcoffset() is None:
            self.fail(t.at("scheduled_start"),
                      "[session]: `scheduled_start` must be ISO 8601 with its UTC offset, "
                      f"e.g. 2023-11-03T18:00:00+03:00, not {started['scheduled_start']!r}")
        if started["duration_ms"] is None and started["distance_laps"] is None:
            self.fail(t.path, "[session]: give `duration` (a time) or `laps` (a distance)")
        segments = self._segments(t.array("segments", required=False) or [],
                                  started["classes"], started["duration_ms"])
        for key in ("series", "event", "kind", "scheduled_start", "time_zone", "classes",
                    "duration", "laps", "sectors"):
            if t.has(key) and _is_synthesized(source, listed, key):
                self.synthesized.append(_SESSION_FIELDS.get(key, key))
        t.done()
        return started, session_id, segments

    def _segments(self, items: list[Any], classes: list[str],
                  duration_ms: int | None) -> dict[str, _Segment]:
        """Class sessions inside the session: class -> its window."""
        by_class: dict[str, _Segment] = {}
        for i, item in enumerate(items):
            path: Path = ("session", "segments", i)
            t = _Table(self, path, item, f"segment {i + 1}")
            t.provenance()
            names = t.strings("classes", nonempty=True) or []
            start = t.time("start") or 0
            length = t.time("duration", what="a duration") or 0
            segment = _Segment(start_ms=start, end_ms=start + length, path=path)
            if duration_ms is not None and segment.end_ms > duration_ms:
                self.fail(t.at("duration"), f"segment {i + 1} ends at "
                          f"{format_ms(segment.end_ms)}, after the session's "
                          f"{format_ms(duration_ms)}")
            for j, name in enumerate(names):
                if name not in classes:
                    self.fail((*t.at("classes"), j), f"segment {i + 1}: unknown class "
                              f"{name!r} (classes: {', '.join(classes)})")
                if name in by_class:
                    self.fail((*t.at("classes"), j),
                              f"segment {i + 1}: class {name!r} is already in a segment")
                by_class[name] = segment
            t.done()
        return by_class

    # --- [[entries]] ---------------------------------------------------------------------

    def _entries(self, items: list[Any], classes: list[str]) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        if not items:
            self.fail((), "the scenario has no [[entries]]")
        for i, item in enumerate(items):
            path: Path = ("entries", i)
            t = _Table(self, path, item, f"entry {i + 1}")
            car = t.string("car")
            t.what = f"entry #{car}"
            if car in entries:
                self.fail(t.at("car"), f"car {car!r} is entered twice")
            source, listed = t.provenance()
            car_class = t.string("class")
            if car_class not in classes:
                self.fail(t.at("class"), f"entry #{car}: unknown class {car_class!r} "
                                         f"(classes: {', '.join(classes)})")
            entry = Entry(car=car, car_class=car_class, team=t.string("team"),
                          manufacturer=t.string("manufacturer", required=False, default=""),
                          drivers=t.strings("drivers", required=False) or [],
                          synthesized=source == "synthesized" or bool(listed))
            if source == "synthesized":
                self.synthesized.append(f"entries.{car}")
            else:
                self.synthesized.extend(f"entries.{car}.{_ENTRY_FIELDS.get(k, k)}"
                                        for k in sorted(listed))
            t.done()
            entries[car] = entry
        return entries

    def _car(self, t: _Table, key: str, entries: dict[str, Entry]) -> str:
        car = t.string(key)
        if car not in entries:
            self.fail(t.at(key), f"{t.what}: unknown car {car!r} (not in [[entries]])")
        return str(car)

    # --- [[cars]]: the laps --------------------------------------------------------------

    def _cars(self, items: list[Any], entries: dict[str, Entry], segments: dict[str, _Segment],
              sectors: int) -> tuple[list[Crossing], dict[str, set[int]]]:
        timed: list[tuple[int, int, Crossing]] = []
        laps_of: dict[str, set[int]] = {}
        for i, item in enumerate(items):
            t = _Table(self, ("cars", i), item, f"[[cars]] {i + 1}")
            car = self._car(t, "car", entries)
            t.what = f"laps of car {car}"
            if car in laps_of:
                self.fail(t.at("car"), f"car {car!r} has its laps in two [[cars]] tables")
            entry = entries[car]
            source, _ = t.provenance()
            driver = t.string("driver", required=False)
            if driver is not None:
                self._check_driver(t, "driver", driver, entry)
            segment = segments.get(entry.car_class)
            start = t.time("start", required=False)
            if start is None:
                start = segment.start_ms if segment else 0
            if segment is not None and start < segment.start_ms:
                self.fail(t.at("start"), f"car {car} leaves at {format_ms(start)}, before "
                          f"the {entry.car_class} session starts at "
                          f"{format_ms(segment.start_ms)}")
            rows = t.array("laps") or []
            laps_of[car] = set()
            previous = start
            for j, row in enumerate(rows):
                crossing = self._lap(
                    _Table(self, (*t.path, "laps", j), row, f"car {car} lap {j + 1}"),
                    car=car, number=j + 1, previous_ms=previous, driver=driver,
                    source=source, entry=entry, segment=segment, sectors=sectors)
                previous = crossing.session_time_ms
                laps_of[car].add(crossing.lap)
                timed.append((crossing.session_time_ms, len(timed), crossing))
            t.done()
        timed.sort(key=lambda item: (item[0], item[1]))
        return [c for _, _, c in timed], laps_of

    def _check_driver(self, t: _Table, key: str, driver: str, entry: Entry) -> None:
        if entry.drivers and driver not in entry.drivers:
            self.fail(t.at(key), f"{t.what}: driver {driver!r} is not entered in car "
                                 f"{entry.car} ({', '.join(entry.drivers)})")

    def _lap(self, t: _Table, *, car: str, number: int, previous_ms: int, driver: str | None,
             source: str, entry: Entry, segment: _Segment | None, sectors: int) -> Crossing:
        lap = t.integer("lap", required=False, default=number, minimum=1)
        if lap != number:
            self.fail(t.at("lap"), f"car {car}: lap {lap} where lap {number} was expected "
                                   "(laps are numbered from 1 in order)")
        lap_source, _ = t.provenance(source)
        lap_ms = t.time("time", required=False, what="a lap time")
        at_ms = t.time("at", required=False, what="a session time")
        if at_ms is None:
            if lap_ms is None:
                self.fail(t.path, f"{t.what}: give its `time` (or the crossing's `at`)")
            at_ms = previous_ms + lap_ms
        elif at_ms <= previous_ms:
            self.fail(t.at("at"), f"{t.what}: crosses at {format_ms(at_ms, hours=True)}, not "
                                  f"after the car's previous crossing at "
                                  f"{format_ms(previous_ms, hours=True)}")
        lap_driver = t.string("driver", required=False, default=driver)
        if lap_driver is None:
            self.fail(t.path, f"{t.what}: no `driver` (give one here or for the car)")
        if t.has("driver"):
            self._check_driver(t, "driver", lap_driver, entry)
        split = self._sectors(t, sectors, lap_ms)
        flag_text = t.choice("flag", [f.value for f in Flag], required=False,
                             default=Flag.GREEN.value)
        valid = t.boolean("valid", True)
        if segment is not None and valid and previous_ms >= segment.end_ms:
            self.fail(t.path, f"{t.what} starts at {format_ms(previous_ms, hours=True)}, after "
                              f"the {entry.car_class} session ended at "
                              f"{format_ms(segment.end_ms, hours=True)}: mark it valid = false")
        crossing = Crossing(
            session_time_ms=at_ms, car=car, driver=lap_driver, lap=lap, lap_time_ms=lap_ms,
            sector_times_ms=split, in_pit=t.boolean("in_pit", False),
            pit_time_ms=t.time("pit_time", required=False, what="a pit time"),
            flag=Flag(flag_text), valid=valid, synthesized=lap_source == "synthesized",
        )
        t.done()
        return crossing

    def _sectors(self, t: _Table, count: int, lap_ms: int | None) -> tuple[int | None, ...]:
        items = t.array("sectors", required=False)
        if items is None:
            return ()
        if len(items) != count:
            self.fail(t.at("sectors"), f"{t.what}: {len(items)} sector times, the session "
                                       f"has {count} sectors")
        split: list[int | None] = []
        for i, item in enumerate(items):
            where = (*t.at("sectors"), i)
            if not isinstance(item, str):
                self.fail(where, f"{t.what}: sector {i + 1} must be a time as a string, "
                                 f"not {_type_name(item)}")
            if not item:
                split.append(None)  # not timed
                continue
            try:
                split.append(parse_ms(item))
            except ValueError as exc:
                self.fail(where, f"{t.what}: sector {i + 1}: {exc}")
        known = [s for s in split if s is not None]
        if lap_ms is not None and len(known) == count and sum(known) != lap_ms:
            self.fail(t.at("sectors"), f"{t.what}: the sectors add up to "
                                       f"{format_ms(sum(known))}, not the lap time "
                                       f"{format_ms(lap_ms)}")
        return tuple(split)

    # --- [[corrections]] -----------------------------------------------------------------

    def _corrections(self, items: list[Any], entries: dict[str, Entry],
                     laps: dict[str, set[int]]) -> list[Correction]:
        out: list[Correction] = []
        for i, item in enumerate(items):
            t = _Table(self, ("corrections", i), item, f"correction {i + 1}")
            source, _ = t.provenance()
            kind = t.choice("kind", tuple(_CORRECTION_KINDS))
            car = self._car(t, "car", entries)
            at_ms = t.time("at", what="a session time") or 0
            lap: int | None = None
            penalty_ms: int | None = None
            if kind == "LapDeleted":
                lap = t.integer("lap", minimum=1)
                if lap not in laps.get(car, set()):
                    self.fail(t.at("lap"), f"{t.what}: car {car} has no lap {lap} to delete")
            elif kind == "TimePenalty":
                penalty_ms = t.time("penalty", what="a penalty")
            out.append(Correction(session_time_ms=at_ms, kind=_CORRECTION_KINDS[kind],  # type: ignore[arg-type]
                                  car=car, reason=t.string("reason"), lap=lap,
                                  penalty_ms=penalty_ms, synthesized=source == "synthesized"))
            t.done()
        return out

    # --- [championship] ------------------------------------------------------------------

    def _championship(self, t: _Table, entries: dict[str, Entry],
                      classes: list[str]) -> ChampionshipSetup:
        source, listed = t.provenance()
        name = t.string("name")
        rounds = t.integer("rounds_remaining", required=False, default=0, minimum=0)
        pole_car = None
        if t.has("pole_car"):
            pole_car = self._car(t, "pole_car", entries)
        for key in ("name", "rounds_remaining", "pole_car"):
            if t.has(key) and _is_synthesized(source, listed, key):
                self.synthesized.append(f"championship.{key}")
        rules = self._rules(_Table(self, t.at("rules"), t._raw("rules", True),
                                   "[championship.rules]"), source, classes)
        standings: list[Competitor] = []
        seen: set[str] = set()
        for i, item in enumerate(t.array("standings") or []):
            s = _Table(self, (*t.at("standings"), i), item, f"standing {i + 1}")
            car = self._car(s, "car", entries)
            s.what = f"standing of car {car}"
            if car in seen:
                self.fail(s.at("car"), f"car {car!r} is in the standings twice")
            seen.add(car)
            s_source, s_listed = s.provenance(source)
            competitor = Competitor(
                car=car, name=s.string("name"), points=s.integer("points", minimum=0),
                places=s.integers("places", required=False) or [],
                published=s_source != "synthesized" and not s_listed)
            if s_source == "synthesized":
                self.synthesized.append(f"championship.standings.{car}")
            else:
                self.synthesized.extend(f"championship.standings.{car}.{k}"
                                        for k in sorted(s_listed))
            standings.append(competitor)
            s.done()
        if not standings:
            self.fail(t.at("standings"), "[championship]: no standings")
        t.done()
        return ChampionshipSetup(name=name, standings=standings, rules=rules,
                                 rounds_remaining=rounds, pole_car=pole_car)

    def _rules(self, t: _Table, inherited: str, classes: list[str]) -> PointsRules:
        source, listed = t.provenance(inherited)
        table = t.integers("race_points") or []
        if not table:
            self.fail(t.at("race_points"), f"{t.what}: `race_points` is empty")
        car_class = t.string("class")
        if car_class not in classes:
            self.fail(t.at("class"), f"{t.what}: unknown class {car_class!r} "
                                     f"(classes: {', '.join(classes)})")
        rules = PointsRules(race_points=table,
                            pole_points=t.integer("pole_points", required=False, default=1,
                                                  minimum=0),
                            championship_class=car_class)
        for key in ("race_points", "pole_points", "class"):
            if t.has(key) and _is_synthesized(source, listed, key):
                self.synthesized.append(f"championship.rules.{_RULES_FIELDS.get(key, key)}")
        t.done()
        return rules
