"""Al Kamel Systems "analysis" CSV exports -> a ``Source``.

One row per completed lap, ``;``-separated. The quirks this loader handles (see
``../shared/data/README.md``):

* UTF-8 with a byte-order mark; header cells padded with spaces; a trailing ``;``
  on every line (so every line has one empty last cell); CRLF line ends.
* Car numbers are strings: ``007`` and ``7`` are different cars.
* Untimed laps: an empty LAP_TIME gives ``lap_time_ms=None``; empty sectors too.
* Sector times are ``ss.fff``, or ``m:ss.fff`` when a sector took a minute or more.
* ELAPSED (time since the start) is ``h:mm:ss.fff`` or ``m:ss.fff``; HOUR is the
  time of day and may pass midnight. The session's start time of day is HOUR minus
  ELAPSED (the same on every line, to the millisecond, in real exports); a line
  that disagrees by more than a second is refused, as it says one of the two is
  wrong. A line without ELAPSED is timed from HOUR (rolled over at midnight).
* ``B`` in CROSSING_FINISH_LINE_IN_PIT: the lap ends in the pit lane; PIT_TIME on
  the out-lap.
* FLAG_AT_FL: GF green, FCY full-course yellow, SF safety car, RF red flag (the
  session suspended), FF finish; any other code is refused (a flag we do not
  understand must not turn into green). What a red flag means for the laps around
  it (no best lap, the classification of a race that ends under red) is derived in
  ``simulator.derive``, the same for every source.
* Rows are grouped by car: the log is the rows sorted by crossing time, ties broken
  by car number (numerically, then as text) and lap.
* Improvement codes are final: LAP_IMPROVEMENT 2 (or 3, the overall fastest) marks
  each car's best valid lap. Lap 1 of a race is timed from the start line and is
  never valid. A later lap faster than the marked best was deleted with no column
  saying so: it is emitted as completed and a ``LapDeleted`` follows at the car's
  next crossing.

Metadata comes from the file name when it can be read there (series, year, event,
race duration ``8h``, session kind, a ``YYYY-MM-DD`` date, the circuit's time zone)
and from the rows (classes, entry list with drivers in order of appearance, start
time of day). Without a date in the name, ``scheduled_start`` is the start time of
day alone (ISO 8601 ``14:00:24.054+03:00``); pass ``scheduled_start=...`` for a full
timestamp. Any ``SessionStarted`` field can be overridden by keyword.

Errors are ``SourceError`` naming the file, the line and the 1-based column of the
offending cell. No line is ever skipped silently (blank lines carry nothing and are
ignored). The file is read once; the whole log is built at load time and replayed
from memory by ``Source.events()``.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from simulator import names
from simulator.contract import Entry, Event, Flag, SessionKind, SessionStarted
from simulator.derive import Correction, Crossing, Granularity, build_log
from simulator.errors import SourceError
from simulator.sources import Source
from simulator.timefmt import format_ms, parse_ms

__all__ = ["FLAGS", "load", "parse_file_name"]

FLAGS: Final[dict[str, Flag]] = {
    "GF": Flag.GREEN,
    "FCY": Flag.FCY,
    "SF": Flag.SAFETY_CAR,
    "RF": Flag.RED,
    "FF": Flag.CHEQUERED,
}

_DAY: Final = 86_400_000
# HOUR and ELAPSED agree to the millisecond in real exports; a second of slack keeps
# an export rounded differently loadable while catching a wrong cell.
_CLOCK_SLACK_MS: Final = 1_000
_MAX_LAP: Final = 100_000
_MAX_CAR_LEN: Final = 16

_REQUIRED: Final = ("NUMBER", "LAP_NUMBER", "LAP_TIME", "ELAPSED", "HOUR", "DRIVER_NAME",
                    "CLASS", "TEAM", "FLAG_AT_FL")
_SECTOR_COLUMN: Final = re.compile(r"^S(\d+)$")
_ENVELOPE: Final = frozenset({"schema_version", "session_id", "epoch", "seq", "session_time_ms"})
_STARTED_FIELDS: Final = frozenset(SessionStarted.__struct_fields__) - _ENVELOPE


class _CellError(Exception):
    """A bad cell: its 0-based index and what is wrong (turned into a SourceError)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


@dataclass(slots=True, kw_only=True)
class _Row:
    line: int
    car: str
    lap: int
    lap_time: int | None
    best_mark: bool
    in_pit: bool
    sectors: tuple[int | None, ...]
    elapsed: int | None
    hour: int | None
    driver: str
    pit_time: int | None
    car_class: str
    team: str
    manufacturer: str
    flag: Flag
    t: int = 0


# --- the file name ---------------------------------------------------------------------

_SERIES: Final = {
    "wec": "FIA WEC",
    "elms": "European Le Mans Series",
    "alms": "Asian Le Mans Series",
    "imsa": "IMSA",
    "lmc": "Michelin Le Mans Cup",
}
_KINDS: Final = {
    "race": SessionKind.RACE,
    "qualifying": SessionKind.QUALIFYING,
    "qualification": SessionKind.QUALIFYING,
    "quali": SessionKind.QUALIFYING,
    "hyperpole": SessionKind.QUALIFYING,
    "practice": SessionKind.PRACTICE,
    "fp1": SessionKind.PRACTICE,
    "fp2": SessionKind.PRACTICE,
    "fp3": SessionKind.PRACTICE,
    "fp4": SessionKind.PRACTICE,
    "warmup": SessionKind.PRACTICE,
}
_ZONES: Final = {
    "bahrain": "Asia/Bahrain",
    "qatar": "Asia/Qatar",
    "losail": "Asia/Qatar",
    "lusail": "Asia/Qatar",
    "imola": "Europe/Rome",
    "monza": "Europe/Rome",
    "spa": "Europe/Brussels",
    "lemans": "Europe/Paris",
    "interlagos": "America/Sao_Paulo",
    "fuji": "Asia/Tokyo",
    "austin": "America/Chicago",
    "cota": "America/Chicago",
    "sebring": "America/New_York",
    "daytona": "America/New_York",
    "portimao": "Europe/Lisbon",
    "silverstone": "Europe/London",
    "barcelona": "Europe/Madrid",
}
_NOISE: Final = frozenset({"analysis", "classification", "laps", "chart", "results"})


def parse_file_name(stem: str) -> dict[str, Any]:
    """What a name like ``wec-2024-bahrain-8h-race.analysis`` says about the session.

    Keys: ``series``, ``event_name``, ``session_kind``, ``time_zone``, ``date``
    (``datetime.date`` or None), ``race_hours`` (int or None). Unreadable parts are
    empty or None.
    """
    date: dt.date | None = None
    match = re.search(r"(\d{4})-(\d{2})-(\d{2})", stem)
    if match:
        try:
            date = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            date = None
        stem = stem.replace(match[0], " ")
    tokens = [t for t in re.split(r"[-_. ]+", stem.lower()) if t]
    if "le" in tokens and "mans" in tokens:
        i = tokens.index("le")
        if i + 1 < len(tokens) and tokens[i + 1] == "mans":
            tokens[i : i + 2] = ["lemans"]
    series = ""
    year = str(date.year) if date else ""
    kind = SessionKind.RACE
    hours: int | None = None
    place: list[str] = []
    for token in tokens:
        if token in _SERIES and not series:
            series = _SERIES[token]
        elif re.fullmatch(r"(19|20)\d\d", token) and not year:
            year = token
        elif token in _KINDS:
            kind = _KINDS[token]
        elif (m := re.fullmatch(r"(\d{1,2})h", token)) and hours is None:
            hours = int(m[1])
        elif token not in _NOISE:
            place.append(token)
    zone = next((_ZONES[t] for t in place if t in _ZONES), "")
    where = " ".join("Le Mans" if t == "lemans" else t.capitalize() for t in place)
    if hours is not None and where:
        event = f"{hours} Hours of {where}"
    elif hours is not None:
        event = f"{hours} Hours"
    else:
        event = where
    event = f"{year} {event}".strip()
    return {
        "series": series,
        "event_name": event,
        "session_kind": kind,
        "time_zone": zone,
        "date": date,
        "race_hours": hours,
    }


def _scheduled_start(start_ms: int, date: dt.date | None, zone: str, year: int) -> str:
    seconds, ms = divmod(start_ms, 1000)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    tod = dt.time(h, m, s, ms * 1000)
    tz: dt.tzinfo | None = None
    if zone:
        try:
            tz = zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = None
    if date is not None:
        return dt.datetime.combine(date, tod, tzinfo=tz).isoformat(timespec="milliseconds")
    text = tod.isoformat(timespec="milliseconds")
    if tz is not None:
        # Without a date the offset is only certain where the zone keeps one all year.
        winter = dt.datetime(year, 1, 15, tzinfo=tz).utcoffset()
        summer = dt.datetime(year, 7, 15, tzinfo=tz).utcoffset()
        if winter == summer and winter is not None:
            total = int(winter.total_seconds()) // 60
            sign = "+" if total >= 0 else "-"
            text += f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
    return text


# --- cells ------------------------------------------------------------------------------


def _time(cells: list[str], index: int, name: str) -> int | None:
    text = cells[index].strip()
    if not text:
        return None
    try:
        return parse_ms(text)
    except ValueError:
        raise _CellError(index, f"{name} {text!r} is not a time "
                                "(expected h:mm:ss.fff, m:ss.fff or ss.fff)") from None


def _text(cells: list[str], index: int | None) -> str:
    return cells[index].strip() if index is not None else ""


class _Columns:
    """Where each column is, from the header (cells stripped of their padding)."""

    def __init__(self, path: str, header: str) -> None:
        names = [c.strip() for c in header.split(";")]
        self.count = len(names)
        self.index: dict[str, int] = {}
        for i, name in enumerate(names):
            if name:
                self.index.setdefault(name, i)
        missing = [n for n in _REQUIRED if n not in self.index]
        if missing:
            raise SourceError(path, f"the header lacks the column(s) {', '.join(missing)} "
                              "(is this an Al Kamel analysis export?)", line=1)
        sectors = sorted((int(m[1]), i) for n, i in self.index.items()
                         if (m := _SECTOR_COLUMN.match(n)))
        self.sectors = [i for _, i in sectors]
        self.names = names


def _parse_row(cells: list[str], cols: _Columns, line: int) -> _Row:
    ix = cols.index
    car = cells[ix["NUMBER"]].strip()
    if not car:
        raise _CellError(ix["NUMBER"], "empty car NUMBER")
    if len(car) > _MAX_CAR_LEN:
        raise _CellError(ix["NUMBER"], f"car NUMBER {car!r} is longer than "
                                       f"{_MAX_CAR_LEN} characters")
    lap_text = cells[ix["LAP_NUMBER"]].strip()
    if not (lap_text.isascii() and lap_text.isdigit()) or not 1 <= int(lap_text) <= _MAX_LAP:
        raise _CellError(ix["LAP_NUMBER"], f"LAP_NUMBER {lap_text!r} is not a lap number "
                                           f"(1 to {_MAX_LAP})")
    mark_index = ix.get("LAP_IMPROVEMENT")
    mark = _text(cells, mark_index)
    if mark not in ("", "0", "1", "2", "3"):
        raise _CellError(mark_index or 0, f"LAP_IMPROVEMENT {mark!r} is not an improvement "
                                          "code (0, 1, 2 or 3)")
    pit_index = ix.get("CROSSING_FINISH_LINE_IN_PIT")
    pit = _text(cells, pit_index)
    if pit not in ("", "B"):
        raise _CellError(pit_index or 0, f"CROSSING_FINISH_LINE_IN_PIT {pit!r} is neither "
                                         "empty nor B")
    flag_text = cells[ix["FLAG_AT_FL"]].strip()
    flag = FLAGS.get(flag_text)
    if flag is None:
        raise _CellError(ix["FLAG_AT_FL"], f"unknown FLAG_AT_FL {flag_text!r} (known: "
                                           f"{', '.join(FLAGS)})")
    car_class = cells[ix["CLASS"]].strip()
    if not car_class:
        raise _CellError(ix["CLASS"], "empty CLASS")
    elapsed = _time(cells, ix["ELAPSED"], "ELAPSED")
    hour = _time(cells, ix["HOUR"], "HOUR")
    if hour is not None and hour >= _DAY:
        raise _CellError(ix["HOUR"], f"HOUR {cells[ix['HOUR']].strip()!r} is not a time "
                                     "of day")
    if elapsed is None and hour is None:
        raise _CellError(ix["ELAPSED"], "empty ELAPSED and HOUR: the crossing has no time")
    pit_time_index = ix.get("PIT_TIME")
    return _Row(
        line=line,
        car=car,
        lap=int(lap_text),
        lap_time=_time(cells, ix["LAP_TIME"], "LAP_TIME"),
        best_mark=mark in ("2", "3"),
        in_pit=pit == "B",
        sectors=tuple(_time(cells, i, cols.names[i]) for i in cols.sectors),
        elapsed=elapsed,
        hour=hour,
        driver=cells[ix["DRIVER_NAME"]].strip(),
        pit_time=_time(cells, pit_time_index, "PIT_TIME") if pit_time_index is not None
        else None,
        car_class=car_class,
        team=cells[ix["TEAM"]].strip(),
        manufacturer=_text(cells, ix.get("MANUFACTURER")),
        flag=flag,
    )


# --- the whole file -------------------------------------------------------------------


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.cols: _Columns | None = None

    def error(self, message: str, row: _Row | None = None, column: str | None = None,
              *, line: int | None = None) -> SourceError:
        col = None
        if column is not None and self.cols is not None:
            col = self.cols.index[column] + 1
        return SourceError(self.name, message, line=row.line if row else line, column=col)

    def read(self) -> list[_Row]:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise SourceError(self.name, f"cannot read: {exc.strerror or exc}") from exc
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(self.name, f"not UTF-8 ({exc.reason} at byte {exc.start})",
                              line=data.count(b"\n", 0, exc.start) + 1) from exc
        # Split on "\n" only: str.splitlines would also break lines at \x1c, \x85...
        lines = text.split("\n")
        if not lines[0].strip():
            raise SourceError(self.name, "empty file: no header", line=1)
        cols = self.cols = _Columns(self.name, lines[0].removesuffix("\r"))
        rows: list[_Row] = []
        for number, raw in enumerate(lines[1:], start=2):
            line = raw.removesuffix("\r")
            if not line.strip():
                continue
            cells = line.split(";")
            if len(cells) != cols.count:
                column = min(len(cells), cols.count) + 1
                raise SourceError(self.name, f"{len(cells)} cells where the header has "
                                  f"{cols.count} (a missing or extra ';')",
                                  line=number, column=column)
            try:
                rows.append(_parse_row(cells, cols, number))
            except _CellError as exc:
                raise SourceError(self.name, exc.message, line=number,
                                  column=exc.index + 1) from None
        if not rows:
            raise SourceError(self.name, "no laps: the file has a header and nothing else")
        return rows

    def start_of_day(self, rows: list[_Row]) -> int:
        """The start's time of day: HOUR minus ELAPSED, as (nearly) every line says."""
        votes = Counter((r.hour - r.elapsed) % _DAY for r in rows
                        if r.hour is not None and r.elapsed is not None)
        if not votes:
            raise self.error("no line has both ELAPSED and HOUR: cannot tell when the "
                             "session started")
        start = votes.most_common(1)[0][0]
        for r in rows:
            if r.hour is None or r.elapsed is None:
                continue
            off = ((r.hour - r.elapsed) - start) % _DAY
            off = min(off, _DAY - off)
            if off > _CLOCK_SLACK_MS:
                raise self.error(
                    f"ELAPSED {format_ms(r.elapsed, hours=True)} and HOUR "
                    f"{format_ms(r.hour, hours=True)} put the start at "
                    f"{format_ms((r.hour - r.elapsed) % _DAY, hours=True)}, but the other "
                    f"lines put it at {format_ms(start, hours=True)}: one of them is wrong",
                    r, "ELAPSED")
        return start

    def time_rows(self, rows: list[_Row], start: int) -> None:
        """Session time of every crossing: ELAPSED, or HOUR rolled over at midnight."""
        previous: dict[str, int] = {}
        for r in rows:  # file order: a car's laps in order
            if r.elapsed is not None:
                r.t = r.elapsed
            else:
                assert r.hour is not None
                t = (r.hour - start) % _DAY
                before = previous.get(r.car, 0)
                if t < before:  # HOUR passed midnight (again) since the car's last line
                    t += ((before - t) // _DAY + 1) * _DAY
                r.t = t
            previous[r.car] = r.t

    def check_car(self, car: str, laps: list[_Row]) -> None:
        """A car's rows in crossing order: class and team stay the same, laps count up."""
        for field, column in (("car_class", "CLASS"), ("team", "TEAM"),
                              ("manufacturer", "MANUFACTURER")):
            values = Counter(getattr(r, field) for r in laps)
            if len(values) > 1:
                usual = values.most_common(1)[0][0]
                odd = next(r for r in laps if getattr(r, field) != usual)
                if self.cols is None or column not in self.cols.index:
                    column = "NUMBER"  # an optional column the file lacks
                raise self.error(f"car {car} has {column} {getattr(odd, field)!r} here but "
                                 f"{usual!r} on its other lines", odd, column)
        for i in range(1, len(laps)):
            a, b = laps[i - 1], laps[i]
            if b.t == a.t:
                raise self.error(f"car {car} crosses the line twice at "
                                 f"{format_ms(b.t, hours=True)} (laps {a.lap} and {b.lap})",
                                 b, "ELAPSED")
            if b.lap <= a.lap:
                raise self._lap_order_error(car, laps, i)

    def _lap_order_error(self, car: str, laps: list[_Row], i: int) -> SourceError:
        # One wrong cell (a LAP_NUMBER, or a NUMBER that moved a line to this car)
        # breaks the order at rows i-1 and i: name the odd one, so that the error
        # points at the line to fix.
        n = len(laps)
        lap = [r.lap for r in laps]
        if i >= 2 and lap[i] <= lap[i - 2]:
            culprit = i  # too small even against the lap before
        elif i + 1 < n and lap[i + 1] <= lap[i - 1]:
            culprit = i - 1  # too big even against the lap after
        else:
            first_fits = i < 2 or lap[i - 1] == lap[i - 2] + 1
            second_fits = i + 1 >= n or lap[i] == lap[i + 1] - 1
            if first_fits != second_fits:
                culprit = i if first_fits else i - 1
            elif i >= 2 and laps[i - 1].lap_time is not None and laps[i].lap_time is not None:
                # Both fit their neighbours: a line of another car. The car's own line
                # has a LAP_TIME equal to the time since its crossing before the pair.
                before = laps[i - 2].t
                misfit = [abs(r.t - before - (r.lap_time or 0)) for r in laps[i - 1 : i + 1]]
                culprit = i - 1 if misfit[0] > misfit[1] else i
            else:
                offsets = Counter(x - k for k, x in enumerate(lap))
                usual = offsets.most_common(1)[0][0]
                culprit = i - 1 if lap[i] - i == usual and lap[i - 1] - (i - 1) != usual else i
        row = laps[culprit]
        shown = ", ".join(str(r.lap) for r in laps[max(0, i - 2) : i + 2])
        return self.error(f"car {car}: lap {row.lap} is out of order (in crossing order the "
                          f"car's laps read {shown}; LAP_NUMBER must count up)",
                          row, "LAP_NUMBER")


def _car_key(car: str) -> tuple[int, int, str]:
    # Numbers sort numerically ("7" < "12"; "007" before "7" by the text), then other
    # names: any total order on the number makes ties deterministic.
    if car.isascii() and car.isdigit():
        return (0, int(car), car)
    return (1, 0, car)


def load(path: str | Path, *, session_id: str | None = None, granularity: Granularity = "lap",
         **overrides: Any) -> Source:
    """Load an Al Kamel analysis export; ``overrides`` set ``SessionStarted`` fields."""
    path = Path(path)
    unknown = sorted(set(overrides) - _STARTED_FIELDS)
    if unknown:
        raise SourceError(str(path), f"unknown SessionStarted field(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_STARTED_FIELDS))})")
    loader = _Loader(path)
    rows = loader.read()
    start = loader.start_of_day(rows)
    loader.time_rows(rows, start)

    named = parse_file_name(path.stem)
    kind = SessionKind(overrides.get("session_kind", named["session_kind"]))
    race = kind is SessionKind.RACE

    by_car: dict[str, list[_Row]] = {}
    for r in rows:
        by_car.setdefault(r.car, []).append(r)
    corrections: list[Correction] = []
    for car, laps in by_car.items():
        laps.sort(key=lambda r: (r.t, r.lap))
        loader.check_car(car, laps)
        corrections.extend(_deleted_laps(car, laps, race))
    rows.sort(key=lambda r: (r.t, _car_key(r.car), r.lap))

    classes = list(dict.fromkeys(r.car_class for r in _first_rows(by_car)))
    entries = []
    for car, laps in by_car.items():
        first = laps[0]
        drivers = list(dict.fromkeys(r.driver for r in laps if r.driver))
        entries.append(Entry(car=car, car_class=first.car_class, team=first.team,
                             manufacturer=first.manufacturer, drivers=drivers))
    year = named["date"].year if named["date"] else 2024
    m = re.search(r"(19|20)\d\d", named["event_name"])
    if m and not named["date"]:
        year = int(m[0])
    started: dict[str, Any] = {
        "series": named["series"],
        "event_name": named["event_name"] or path.stem,
        "session_kind": kind,
        "scheduled_start": _scheduled_start(start, named["date"], named["time_zone"], year),
        "time_zone": named["time_zone"],
        "classes": classes,
        "entries": entries,
        "duration_ms": named["race_hours"] * 3_600_000 if race and named["race_hours"]
        else None,
        "sectors": max(1, len(loader.cols.sectors)) if loader.cols else 3,
        "source": f"Al Kamel analysis export {path.name}",
    }
    started.update(overrides)
    started["session_kind"] = kind

    crossings = [
        Crossing(session_time_ms=r.t, car=r.car, driver=r.driver, lap=r.lap,
                 lap_time_ms=r.lap_time, sector_times_ms=r.sectors, in_pit=r.in_pit,
                 pit_time_ms=r.pit_time, flag=r.flag, valid=not (race and r.lap == 1))
        for r in rows
    ]
    # A file name may hold characters no broker takes in a topic (the shared race's `.`).
    sid = session_id or names.portable_name(path.stem)
    events: tuple[Event, ...] = tuple(build_log(
        session_id=sid, started=started, crossings=crossings, corrections=corrections,
        granularity=granularity, source=str(path),
    ))
    opener: Callable[[], Iterator[Event]] = events.__iter__
    return Source(name=path.name, session_id=sid, open_events=opener, size=len(events))


def _first_rows(by_car: dict[str, list[_Row]]) -> list[_Row]:
    """Each car's first row in the file (the order classes are listed in)."""
    return sorted((min(laps, key=lambda r: r.line) for laps in by_car.values()),
                  key=lambda r: r.line)


def _deleted_laps(car: str, laps: list[_Row], race: bool) -> Iterator[Correction]:
    """Laps faster than the car's marked best valid lap: deleted without a column saying so."""
    marked = [r for r in laps if r.best_mark and r.lap_time is not None]
    if not marked:
        return
    best = min(marked, key=lambda r: r.lap_time or 0)
    assert best.lap_time is not None
    for i, r in enumerate(laps):
        if r.lap_time is None or r.lap_time >= best.lap_time or (race and r.lap == 1):
            continue
        at = laps[i + 1].t if i + 1 < len(laps) else r.t
        yield Correction(
            session_time_ms=at, kind="lap-deleted", car=car, lap=r.lap,
            reason=(f"lap {r.lap} ({format_ms(r.lap_time)}) is faster than the car's best "
                    f"valid lap {format_ms(best.lap_time)} (lap {best.lap}, marked by "
                    "LAP_IMPROVEMENT): the export deleted it without a column saying so"),
        )
