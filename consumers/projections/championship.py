"""The championship as the session stands, and what each contender needs to be champion.

State comes from ``SessionStarted.championship`` (no championship: the view is
None). Points as they stand: the standings before the round, plus the pole points
to the holder of the championship class's pole (in qualifying it is earned live:
it moves with the pole and a ``LapDeleted`` can take it away; in a race it is
``ChampionshipSetup.pole_car``), plus in a race the points of each car's current
class position (laps, then the crossing of the line, a time penalty delaying
every crossing). Ties are broken on countback: most wins, then most 2nd places...

When the round decides the title (``rounds_remaining == 0``) the view works out,
for every contender, the race finishing positions that make them champion whatever
the others do, those that can still do it and what the rivals must do then, and
puts it in words; and what the pole points changed (the counterfactual without
them). That analysis runs in ``view()``, which the runner calls coalesced, a few
times a second, not per event: a few contenders times a dozen positions, and in a
race one sort of the class (O(n log n), a millisecond for a thousand cars). So
``apply`` stays cheap: O(1) per race lap (it only records the crossing) and
O(log n) per qualifying lap that improves a car's best.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from consumers.api import Consumer
from simulator.contract import (
    ChampionshipSetup,
    ChequeredFlag,
    Disqualified,
    Event,
    LapCompleted,
    LapDeleted,
    SessionFinished,
    SessionKind,
    SessionStarted,
    TimePenalty,
)

__all__ = [
    "CONSUMER",
    "ROW",
    "VIEW",
    "ChampionshipState",
    "ChampionshipView",
    "Contender",
    "Scenario",
    "Standing",
    "apply",
    "initial",
    "summary_lines",
    "typed_view",
    "view",
]

# A finishing position in the race that follows: 1..len(points table), or None for
# "out of the points" (any lower place, or not finishing: it scores nothing).
Position = int | None


class _ClassCar:
    """A car of the championship class: its pole laps (qualifying) or its race laps."""

    __slots__ = (
        "after_flag",
        "best",
        "car",
        "crossings",
        "disqualified",
        "finished",
        "idx",
        "laps",
        "penalty_ms",
    )

    def __init__(self, car: str, idx: int) -> None:
        self.car = car
        self.idx = idx
        # Qualifying: eligible laps (valid, timed, not after the car's flag).
        self.laps: dict[int, tuple[int, int]] = {}  # lap -> (lap time, crossing ms)
        self.best: tuple[int, int, int] | None = None  # its key in ``bests``
        self.after_flag = False
        # Race: its crossings up to the one that took the flag (later laps never count,
        # and a penalty only ever moves the flag-taking crossing earlier).
        self.crossings: list[int] = []
        self.penalty_ms = 0
        self.finished = False
        self.disqualified = False


class ChampionshipState:
    """The fold's state (updated in place)."""

    __slots__ = ("bests", "cars", "chequered_ms", "finished", "kind", "last_cross_ms",
                 "last_crossers", "setup")

    def __init__(self) -> None:
        self.setup: ChampionshipSetup | None = None
        self.kind = SessionKind.QUALIFYING
        self.cars: dict[str, _ClassCar] = {}
        self.bests = SortedList()  # (lap time, crossing ms, idx): first is the pole
        self.chequered_ms: int | None = None
        self.last_cross_ms: int | None = None
        self.last_crossers: list[str] = []
        self.finished = False


def initial() -> ChampionshipState:
    return ChampionshipState()


# --- the fold ----------------------------------------------------------------------------


def _session_started(state: ChampionshipState, ev: SessionStarted) -> None:
    state.setup = ev.championship
    state.kind = ev.session_kind
    if ev.championship is None:
        return
    wanted = ev.championship.rules.championship_class
    for entry in ev.entries:
        if entry.car_class == wanted and entry.car not in state.cars:
            state.cars[entry.car] = _ClassCar(entry.car, len(state.cars))


def _rescan_best(state: ChampionshipState, car: _ClassCar) -> None:
    if car.best is not None:
        state.bests.remove(car.best)
        car.best = None
    if car.laps:
        ms, at = min(car.laps.values())
        car.best = (ms, at, car.idx)
        state.bests.add(car.best)


def _counted(car: _ClassCar, flag_ms: int | None) -> int:
    """The laps that count: once the flag is out, up to the car's first crossing at or
    after it (shifted by its penalty). O(log laps)."""
    if flag_ms is None:
        return len(car.crossings)
    return min(len(car.crossings), bisect_left(car.crossings, flag_ms - car.penalty_ms) + 1)


def _lap_completed(state: ChampionshipState, ev: LapCompleted) -> None:
    car = state.cars.get(ev.car)
    t = ev.session_time_ms
    if car is not None:
        if state.kind is SessionKind.RACE:
            if not car.finished:
                car.crossings.append(t)
                flag = state.chequered_ms
                car.finished = flag is not None and t + car.penalty_ms >= flag
        elif state.kind is SessionKind.QUALIFYING:
            ms = ev.lap_time_ms
            if ev.valid and ms is not None and not car.after_flag:
                car.laps[ev.lap] = (ms, t)
                # Crossings only move forward: a lap is better only if strictly faster.
                if car.best is None or ms < car.best[0]:
                    if car.best is not None:
                        state.bests.remove(car.best)
                    car.best = (ms, t, car.idx)
                    state.bests.add(car.best)
            if state.chequered_ms is not None and t >= state.chequered_ms:
                car.after_flag = True
    if t != state.last_cross_ms:
        state.last_cross_ms = t
        state.last_crossers = [ev.car]
    else:
        state.last_crossers.append(ev.car)


def _lap_deleted(state: ChampionshipState, ev: LapDeleted) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        return
    deleted = car.laps.pop(ev.lap, None)
    if deleted is not None and car.best is not None and deleted == car.best[:2]:
        _rescan_best(state, car)  # it was the car's best: the next best stands


def _time_penalty(state: ChampionshipState, ev: TimePenalty) -> None:
    car = state.cars.get(ev.car)
    if car is None or state.kind is not SessionKind.RACE:
        return
    car.penalty_ms += ev.penalty_ms
    flag = state.chequered_ms
    if flag is not None and car.crossings:
        car.finished = car.finished or car.crossings[-1] + car.penalty_ms >= flag


def _disqualified(state: ChampionshipState, ev: Disqualified) -> None:
    car = state.cars.get(ev.car)
    if car is None:
        return
    car.disqualified = True
    car.laps.clear()
    _rescan_best(state, car)


def _chequered(state: ChampionshipState, ev: ChequeredFlag) -> None:
    state.chequered_ms = ev.session_time_ms
    if state.kind is SessionKind.RACE:
        # Only a penalised car can have crossed "after" the flag already.
        for car in state.cars.values():
            if car.penalty_ms and car.crossings:
                car.finished = car.crossings[-1] + car.penalty_ms >= ev.session_time_ms
    elif state.last_cross_ms is not None and state.last_cross_ms >= ev.session_time_ms:
        for car_no in state.last_crossers:  # crossed at the very moment: finished
            crosser = state.cars.get(car_no)
            if crosser is not None:
                crosser.after_flag = True


def _session_finished(state: ChampionshipState, ev: SessionFinished) -> None:
    state.finished = True


_HANDLERS: Final[dict[type, Callable[[ChampionshipState, Any], None]]] = {
    SessionStarted: _session_started,
    LapCompleted: _lap_completed,
    LapDeleted: _lap_deleted,
    TimePenalty: _time_penalty,
    Disqualified: _disqualified,
    ChequeredFlag: _chequered,
    SessionFinished: _session_finished,
}


def apply(state: ChampionshipState, event: Event) -> ChampionshipState:
    """Fold one event (in place), O(log n)."""
    if type(event) is SessionStarted:
        state = ChampionshipState()  # a session starts from nothing
    elif state.setup is None:
        return state  # no championship in this session: nothing to follow
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event)
    return state


# --- points and countback ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Contender:
    car: str
    name: str
    base: int  # points before the race, pole points included
    before: tuple[int, ...]  # places before the round (countback)

    @property
    def label(self) -> str:
        return f"#{self.car} ({self.name})" if self.name else f"#{self.car}"


def _places(before: Sequence[int], position: Position) -> tuple[int, ...]:
    places = list(before)
    if position is not None:
        if len(places) < position:
            places.extend([0] * (position - len(places)))
        places[position - 1] += 1
    return tuple(places)


def _countback_key(places: Sequence[int], width: int) -> tuple[int, ...]:
    return tuple(places) + (0,) * (width - len(places))


def _ahead(points_a: int, places_a: Sequence[int], points_b: int,
           places_b: Sequence[int]) -> bool:
    """Is A strictly ahead of B (points, then countback)? A dead heat is not ahead."""
    if points_a != points_b:
        return points_a > points_b
    width = max(len(places_a), len(places_b))
    return _countback_key(places_a, width) > _countback_key(places_b, width)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _place_noun(index: int) -> str:
    return "wins" if index == 0 else f"{_ordinal(index + 1)} places"


# --- what each contender needs -----------------------------------------------------------


class _Stakes:
    """The title maths for one points table and a set of contenders (pure)."""

    def __init__(self, contenders: list[_Contender], table: Sequence[int]) -> None:
        self.contenders = contenders
        self.table = list(table)
        self.positions: list[Position] = [*range(1, len(self.table) + 1), None]
        # view() asks the same questions several times (statements, counterfactuals).
        self._scores: dict[tuple[str, Position], tuple[int, tuple[int, ...]]] = {}
        self._needs: dict[tuple[str, Position], dict[str, Position] | None] = {}

    def score(self, c: _Contender, p: Position) -> tuple[int, tuple[int, ...]]:
        key = (c.car, p)
        found = self._scores.get(key)
        if found is None:
            race = self.table[p - 1] if p is not None else 0
            found = self._scores[key] = (c.base + race, _places(c.before, p))
        return found

    def beats(self, c: _Contender, p: Position, r: _Contender, q: Position) -> bool:
        return _ahead(*self.score(c, p), *self.score(r, q))

    def rival_floor(self, c: _Contender, p: Position, r: _Contender) -> tuple[bool, Position]:
        """(possible, the best place ``r`` may take with ``c`` at ``p`` still champion).

        The places ``r`` may take form a tail (worse is never better for ``r``), so the
        best one says it all; (True, 1) or (True, 2 with c 1st) means no condition.
        """
        for q in self.positions:
            if q is not None and q == p:
                continue
            if self.beats(c, p, r, q):
                return True, q
        return False, None

    def needs(self, c: _Contender, p: Position) -> dict[str, Position] | None:
        """Rival -> best place it may take; None if ``c`` cannot be champion at ``p``."""
        key = (c.car, p)
        if key not in self._needs:
            self._needs[key] = self._work_out_needs(c, p)
        return self._needs[key]

    def _work_out_needs(self, c: _Contender, p: Position) -> dict[str, Position] | None:
        out: dict[str, Position] = {}
        for r in self.contenders:
            if r is c:
                continue
            ok, floor = self.rival_floor(c, p, r)
            if not ok:
                return None
            free = 2 if p == 1 else 1
            if floor != free:
                out[r.car] = floor
        return out

    def guaranteed(self, c: _Contender) -> list[Position]:
        return [p for p in self.positions if self.needs(c, p) == {}]

    def threat(self, c: _Contender, p: Position) -> tuple[_Contender, Position] | None:
        """The rival who would come closest (or go ahead) with ``c`` at ``p``: its best
        free place, the highest score."""
        best: tuple[_Contender, Position] | None = None
        best_score: tuple[int, tuple[int, ...]] | None = None
        q: Position = 2 if p == 1 else 1
        for r in self.contenders:
            if r is c:
                continue
            score = self.score(r, q)
            if best_score is None or _ahead(*score, *best_score):
                best, best_score = (r, q), score
        return best


def _finish_words(p: Position) -> str:
    """The contender's place, after "if they ...": "win", "finish 3rd"."""
    if p is None:
        return "score no points"
    return "win" if p == 1 else f"finish {_ordinal(p)}"


def _rival_does(car: str, q: Position, *, or_worse: bool) -> str:
    if q is None:
        return f"#{car} scores no points"
    if q == 1 and not or_worse:
        return f"#{car} wins"
    return f"#{car} finishes {_ordinal(q)}" + (" or worse" if or_worse else "")


def _rival_floor_words(car: str, q: Position) -> str:
    return f"#{car} out of the points" if q is None else f"#{car} {_ordinal(q)} or worse"


def _guaranteed_statement(stakes: _Stakes, c: _Contender, sure: list[Position]) -> str:
    if None in sure:
        return f"{c.label} are champions whatever happens in the race"
    worst = max(p for p in sure if p is not None)
    reach = "if they win" if worst == 1 else f"if they finish {_ordinal(worst)} or better"
    threat = stakes.threat(c, worst)
    if threat is None:
        return f"{c.label} are champions {reach}"
    r, q = threat
    mine, theirs = stakes.score(c, worst)[0], stakes.score(r, q)[0]
    return (f"{c.label} are champions {reach}, even if "
            f"{_rival_does(r.car, q, or_worse=False)} ({mine} vs {theirs})")


def _places_words(group: list[Position]) -> str:
    """"winning", "3rd", "8th or 9th", "4th to 6th", "9th or lower", "out of the points"."""
    first, last = group[0], group[-1]
    if len(group) == 1:
        if first is None:
            return "out of the points"
        return "winning" if first == 1 else _ordinal(first)
    assert first is not None
    if last is None:
        return f"{_ordinal(first)} or lower"
    if len(group) == 2:
        return f"{_ordinal(first)} or {_ordinal(last)}"
    return f"{_ordinal(first)} to {_ordinal(last)}"


def _conditions(stakes: _Stakes, c: _Contender, sure: list[Position]) -> list[dict[str, Any]]:
    """The places that can still do it but not alone, grouped where the rivals' needs are
    the same: what the rivals must do then."""
    groups: list[tuple[list[Position], dict[str, Position]]] = []
    adjacent = False  # did the place just above join a group?
    for p in stakes.positions:  # best first; neighbours in this list are neighbours
        needs = None if p in sure else stakes.needs(c, p)
        if needs is not None:
            if adjacent and groups[-1][1] == needs:
                groups[-1][0].append(p)
            else:
                groups.append(([p], needs))
        adjacent = needs is not None
    out: list[dict[str, Any]] = []
    for places, needs in groups:
        words = " and ".join(_rival_floor_words(car, q) for car, q in needs.items())
        out.append({"positions": places, "needs": dict(needs),
                    "words": f"{_places_words(places)}, with {words}"})
    return out


def _contender_view(stakes: _Stakes, c: _Contender) -> dict[str, Any]:
    sure = stakes.guaranteed(c)
    scenarios = _conditions(stakes, c, sure)
    possible = [p for p in stakes.positions
                if p in sure or any(p in s["positions"] for s in scenarios)]
    if sure:
        statement = _guaranteed_statement(stakes, c, sure)
    elif scenarios:
        statement = (f"{c.label} can still be champions: "
                     + "; ".join(s["words"] for s in scenarios))
    else:
        best = c.base + (stakes.table[0] if stakes.table else 0)
        statement = f"{c.label} can no longer be champions ({best} points at most)"
    return {"car": c.car, "name": c.name, "champion_if": sure, "can_win_if": possible,
            "scenarios": scenarios, "statement": statement}


def _tie_words(stakes: _Stakes, winner: _Contender, wp: Position, loser: _Contender,
               lp: Position) -> str:
    """Why the winner of a tie on points wins it: the countback, in counts."""
    after_w, after_l = stakes.score(winner, wp)[1], stakes.score(loser, lp)[1]
    width = max(len(after_w), len(after_l))
    after_w, after_l = _countback_key(after_w, width), _countback_key(after_l, width)
    i = next(i for i in range(width) if after_w[i] != after_l[i])
    before_w = _countback_key(winner.before, width)[i]
    before_l = _countback_key(loser.before, width)[i]
    noun = _place_noun(i)
    if (before_w, before_l) == (after_w[i], after_l[i]):
        return f"{after_w[i]} {noun} to {after_l[i]}"
    return (f"{before_w} {noun} to {before_l} before the race, "
            f"{after_w[i]} to {after_l[i]} with it")


def _outcome_words(stakes: _Stakes, c: _Contender, p: Position, r: _Contender,
                   q: Position) -> str:
    """"#8 3rd and #7 1st would tie on 156 and #7 would take the title on countback"."""
    place_c = "out of the points" if p is None else _ordinal(p)
    place_r = "out of the points" if q is None else _ordinal(q)
    pc, pr = stakes.score(c, p)[0], stakes.score(r, q)[0]
    pair = f"#{c.car} {place_c} and #{r.car} {place_r}"
    if pc == pr:
        if stakes.beats(c, p, r, q):
            winner, wp, loser, lp = c, p, r, q
        elif stakes.beats(r, q, c, p):
            winner, wp, loser, lp = r, q, c, p
        else:
            return f"{pair} would tie on {pc}, even on countback"
        return (f"{pair} would tie on {pc} and #{winner.car} would take the title on "
                f"countback ({_tie_words(stakes, winner, wp, loser, lp)})")
    winner = c if pc > pr else r
    return f"{pair} would give #{winner.car} the title ({max(pc, pr)} vs {min(pc, pr)})"


def _counterfactuals(setup: ChampionshipSetup, contenders: list[_Contender],
                     pole_car: str | None) -> list[str]:
    """What the pole points changed: each contender whose sure places differ without them."""
    pole_points = setup.rules.pole_points
    holder = next((c for c in contenders if c.car == pole_car), None)
    if holder is None or pole_points <= 0:
        return []
    without = [_Contender(c.car, c.name, c.base - pole_points, c.before) if c is holder else c
               for c in contenders]
    with_stakes = _Stakes(contenders, setup.rules.race_points)
    without_stakes = _Stakes(without, setup.rules.race_points)
    what = "the pole point" if pole_points == 1 else f"the {pole_points} pole points"
    out: list[str] = []
    told: set[frozenset[tuple[str, Position]]] = set()
    for c, c0 in zip(contenders, without, strict=True):
        sure = set(with_stakes.guaranteed(c))
        sure0 = set(without_stakes.guaranteed(c0))
        # The worst place whose outcome the pole points decide, either way.
        changed = [p for p in with_stakes.positions if (p in sure) != (p in sure0)]
        if not changed:
            continue
        p = changed[-1]
        threat = without_stakes.threat(c0, p)
        if threat is None:
            continue
        r, q = threat
        pair = frozenset({(c.car, p), (r.car, q)})
        if pair in told:
            continue  # the same two results, already told from the other side
        told.add(pair)
        whose = what if c is holder else \
            f"#{holder.car}'s {what.removeprefix('the ')}"
        out.append(f"without {whose}: {_outcome_words(without_stakes, c0, p, r, q)}")
    return out


# --- the view ----------------------------------------------------------------------------


def _pole_car(state: ChampionshipState) -> str | None:
    assert state.setup is not None
    if state.kind is SessionKind.QUALIFYING:
        if not state.bests:
            return None
        idx = state.bests[0][2]
        return next(c.car for c in state.cars.values() if c.idx == idx)
    return state.setup.pole_car


def _race_positions(state: ChampionshipState) -> dict[str, int]:
    """Class positions in a race: laps that count, then the (penalised) crossing of the
    last of them; a car without a lap or disqualified has none. O(n log n)."""
    if state.kind is not SessionKind.RACE:
        return {}
    flag = state.chequered_ms
    keys: list[tuple[int, int, int, str]] = []
    for car in state.cars.values():
        counted = _counted(car, flag)
        if counted and not car.disqualified:
            keys.append((-counted, car.crossings[counted - 1] + car.penalty_ms, car.idx,
                         car.car))
    keys.sort()
    return {key[3]: i for i, key in enumerate(keys, 1)}


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """A contender's points as the session stands: before the round, plus the pole
    points, plus the points of its current class position in a race."""

    car: str
    name: str
    points_before: int
    pole_points: int
    race_position: int | None
    race_points: int
    points: int
    # Countback: 1st, 2nd, 3rd... places with this round as it stands.
    places: list[int]
    published: bool
    position: int


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    """Finishing places (null: out of the points) that make a contender champion if the
    rivals finish no better than ``needs`` says (car -> place)."""

    positions: list[int | None]
    needs: dict[str, int | None]
    words: str


class Contender(msgspec.Struct, frozen=True, kw_only=True):
    """What a contender needs in the race that decides the title."""

    car: str
    name: str
    # Places that make it champion whatever the others do.
    champion_if: list[int | None]
    # Places that can still do it (with the rivals' help: ``scenarios``).
    can_win_if: list[int | None]
    scenarios: list[Scenario]
    statement: str


class ChampionshipView(msgspec.Struct, frozen=True, kw_only=True):
    """The championship as published on ``.../state/championship`` (null: no championship)."""

    name: str
    car_class: str = msgspec.field(name="class")
    pole_car: str | None
    rounds_remaining: int
    session_kind: SessionKind
    standings: list[Standing]
    contenders: list[Contender]
    # The title stakes in words, one line per contender (or why it is not decided here).
    clinch: list[str]
    # What the pole points changed.
    counterfactuals: list[str]


# The type of the published view, for ``lapcast schema``.
VIEW: Final = ChampionshipView | None
# A changed "row" of it is one of its top-level fields (any type).
ROW: Final[Any] = Any


def typed_view(state: ChampionshipState) -> ChampionshipView | None:
    """Standings as the session stands and, when this round decides it, the title stakes."""
    out = _view(state)
    return None if out is None else msgspec.convert(out, ChampionshipView)


def view(state: ChampionshipState) -> dict[str, Any] | None:
    """``typed_view`` in plain builtins: what is published and ``lapcast fold`` prints."""
    plain: dict[str, Any] | None = msgspec.to_builtins(typed_view(state))
    return plain


def _view(state: ChampionshipState) -> dict[str, Any] | None:
    setup = state.setup
    if setup is None:
        return None
    rules = setup.rules
    pole_car = _pole_car(state)
    positions = _race_positions(state)
    rows: list[dict[str, Any]] = []
    for comp in setup.standings:
        pole_points = rules.pole_points if comp.car == pole_car else 0
        position = positions.get(comp.car)
        race_points = (rules.race_points[position - 1]
                       if position is not None and position <= len(rules.race_points) else 0)
        rows.append({
            "car": comp.car, "name": comp.name, "points_before": comp.points,
            "pole_points": pole_points, "race_position": position, "race_points": race_points,
            "points": comp.points + pole_points + race_points,
            "places": list(_places(comp.places, position)),
            "published": comp.published,
        })
    width = max((len(r["places"]) for r in rows), default=0)
    rows.sort(key=lambda r: (-r["points"],
                             tuple(-n for n in _countback_key(r["places"], width)), r["car"]))
    for i, row in enumerate(rows, 1):
        row["position"] = i

    contenders = [_Contender(r["car"], r["name"], r["points_before"] + r["pole_points"],
                             tuple(next(c.places for c in setup.standings if c.car == r["car"])))
                  for r in rows]
    decided = state.finished and state.kind is SessionKind.RACE
    out: dict[str, Any] = {
        "name": setup.name, "class": rules.championship_class, "pole_car": pole_car,
        "rounds_remaining": setup.rounds_remaining, "session_kind": state.kind.value,
        "standings": rows, "contenders": [], "clinch": [], "counterfactuals": [],
    }
    if setup.rounds_remaining > 0:
        out["clinch"] = [f"{setup.rounds_remaining} more round"
                         f"{'s' if setup.rounds_remaining != 1 else ''} after this one: "
                         "the title is not decided here"]
        return out
    if decided:
        out["clinch"] = [_final_words(rows)]
        return out
    stakes = _Stakes(contenders, rules.race_points)
    views = [_contender_view(stakes, c) for c in contenders]
    out["contenders"] = views
    out["clinch"] = [v["statement"] for v in views]
    out["counterfactuals"] = _counterfactuals(setup, contenders, pole_car)
    return out


def _final_words(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no standings"
    first = rows[0]
    label = f"#{first['car']} ({first['name']})" if first["name"] else f"#{first['car']}"
    if len(rows) == 1:
        return f"{label} are champions with {first['points']} points"
    second = rows[1]
    if first["points"] == second["points"] and first["places"] == second["places"]:
        return (f"#{first['car']} and #{second['car']} are level on {first['points']} points, "
                "even on countback")
    return (f"{label} are champions: {first['points']} points to "
            f"#{second['car']}'s {second['points']}")


def summary_lines(view: dict[str, Any] | None) -> list[str]:
    """The championship as plain lines for ``lapcast fold`` and the board."""
    if view is None:
        return []
    pole = f"#{view['pole_car']}" if view.get("pole_car") else "none yet"
    lines = [f"{view['name']} ({view['class']}), pole: {pole}"]
    race = view.get("session_kind") == "race"
    header = f"  {'Pos':>3}  {'Car':<5} {'Crew':<34} {'Before':>6} {'Pole':>4}"
    header += f" {'Race':>4} {'Points':>6}" if race else f" {'Points':>6}"
    lines.append(header)
    for row in view["standings"]:
        line = (f"  {row['position']:>3}  #{row['car']:<4} {row['name'][:34]:<34} "
                f"{row['points_before']:>6} {row['pole_points']:>4}")
        line += f" {row['race_points']:>4} {row['points']:>6}" if race else f" {row['points']:>6}"
        lines.append(line)
    if view["clinch"]:
        lines.append("Title:")
        lines.extend(f"  {line}" for line in view["clinch"])
    leader = next((c for c in view["contenders"] if c["champion_if"]), None)
    if leader is not None and leader["scenarios"]:
        lines.append(f"  #{leader['car']} finishing lower: "
                     + "; ".join(s["words"] for s in leader["scenarios"]))
    if view["counterfactuals"]:
        lines.append("What the pole point changed:")
        lines.extend(f"  {line}" for line in view["counterfactuals"])
    return lines


CONSUMER: Final = Consumer(
    name="championship",
    description="championship standings as the session stands and the title stakes",
    initial=initial,
    apply=apply,
    view=view,
)
