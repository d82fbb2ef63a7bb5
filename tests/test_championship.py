"""The championship projection: points as the session stands and the title stakes, computed."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import msgspec

from consumers.folding import Folder, fold_all
from consumers.projections import championship as ch
from simulator.contract import (
    ChampionshipSetup,
    Competitor,
    Entry,
    Event,
    LapDeleted,
    PointsRules,
    SessionKind,
)
from simulator.derive import Correction, Crossing, build_log

TABLE_8H = [38, 27, 23, 18, 15, 12, 9, 6, 3, 2]
BAHRAIN = [
    Competitor(car="8", name="Buemi / Hartley / Hirakawa", points=133, places=[2]),
    Competitor(car="7", name="Conway / Kobayashi / López", points=118, places=[3]),
    Competitor(car="51", name="Pier Guidi / Calado / Giovinazzi", points=102, places=[1]),
    Competitor(car="50", name="Fuoco / Molina / Nielsen", points=97, places=[0]),
]
ENTRIES = [Entry(car=c, car_class="HYPERCAR", team=f"Team {c}") for c in ("8", "7", "51", "50",
                                                                          "2")]
ENTRIES += [Entry(car="23", car_class="LMP2", team="United")]


def setup(standings: Sequence[Competitor] = BAHRAIN, table: Sequence[int] = TABLE_8H, *,
          pole_points: int = 1, rounds: int = 0, pole_car: str | None = None,
          champ_class: str = "HYPERCAR") -> ChampionshipSetup:
    return ChampionshipSetup(
        name="Hypercar drivers", standings=list(standings),
        rules=PointsRules(race_points=list(table), pole_points=pole_points,
                          championship_class=champ_class),
        rounds_remaining=rounds, pole_car=pole_car)


def log(crossings: Sequence[Crossing], corrections: Sequence[Correction] = (), *,
        kind: str = "qualifying", championship: ChampionshipSetup | None = None,
        entries: Sequence[Entry] = ENTRIES, duration_ms: int = 3_600_000) -> list[Event]:
    started: dict[str, Any] = {
        "series": "WEC", "event_name": "Test", "session_kind": SessionKind(kind),
        "scheduled_start": "2023-11-04T14:00:00+03:00", "time_zone": "Asia/Bahrain",
        "classes": ["HYPERCAR", "LMP2"], "entries": list(entries),
        "duration_ms": duration_ms, "championship": championship,
    }
    return list(build_log(session_id="t", started=started, crossings=crossings,
                          corrections=corrections))


def lap(car: str, n: int, at_s: float, lap_ms: int | None, *, valid: bool = True) -> Crossing:
    return Crossing(session_time_ms=round(at_s * 1000), car=car, driver=f"driver {car}", lap=n,
                    lap_time_ms=lap_ms, valid=valid)


def fold(events: Sequence[Event]) -> dict[str, Any] | None:
    [folder] = fold_all([ch.CONSUMER], events)
    return folder.view()


def standing(view: dict[str, Any], car: str) -> dict[str, Any]:
    return next(row for row in view["standings"] if row["car"] == car)


def contender(view: dict[str, Any], car: str) -> dict[str, Any]:
    return next(c for c in view["contenders"] if c["car"] == car)


class TestNoChampionship:
    def test_view_is_none_without_a_championship(self):
        """A session without a championship gives no view, whatever happens in it."""
        assert fold(log([lap("8", 1, 100, 100_000)])) is None
        assert ch.summary_lines(None) == []


class TestQualifyingPole:
    def test_pole_point_follows_the_live_pole(self):
        """The pole point goes to whoever holds the class pole at that moment."""
        events = log([lap("7", 1, 100, 107_053), lap("8", 1, 110, 106_564),
                      lap("7", 2, 210, 106_900)], championship=setup())
        after_first = fold(events[:2])
        assert after_first is not None and after_first["pole_car"] == "7"
        assert standing(after_first, "7")["points"] == 119
        final = fold(events)
        assert final is not None and final["pole_car"] == "8"
        assert standing(final, "8")["points"] == 134
        assert standing(final, "8")["pole_points"] == 1
        assert standing(final, "7")["points"] == 118

    def test_deleted_pole_lap_takes_the_point_away(self):
        """A LapDeleted on the pole lap hands the pole (and the point) to the next best."""
        events = log([lap("8", 1, 100, 106_564), lap("7", 1, 105, 107_053),
                      lap("7", 2, 212, 106_402), lap("7", 3, 330, 120_000)],
                     [Correction(session_time_ms=300_000, kind="lap-deleted", car="7", lap=2,
                                 reason="track limits")], championship=setup())
        cut = next(i for i, e in enumerate(events) if isinstance(e, LapDeleted))
        before = fold(events[:cut])
        assert before is not None and before["pole_car"] == "7"
        after = fold(events)
        assert after is not None and after["pole_car"] == "8"
        assert standing(after, "8")["points"] == 134 and standing(after, "7")["points"] == 118

    def test_deleting_a_lap_that_is_not_the_best_changes_nothing(self):
        """Only the deletion of a car's best lap can move the pole."""
        events = log([lap("8", 1, 100, 106_564), lap("8", 2, 210, 108_000)],
                     [Correction(session_time_ms=300_000, kind="lap-deleted", car="8", lap=2,
                                 reason="track limits")], championship=setup())
        view = fold(events)
        assert view is not None and view["pole_car"] == "8"

    def test_other_classes_and_invalid_laps_never_take_the_pole(self):
        """An LMP2 lap, however fast, and an invalid lap earn no championship pole."""
        events = log([lap("23", 1, 90, 100_000), lap("51", 1, 100, 106_000, valid=False),
                      lap("50", 1, 110, 108_000)], championship=setup())
        view = fold(events)
        assert view is not None and view["pole_car"] == "50"
        assert standing(view, "50")["points"] == 98

    def test_laps_after_the_flag_do_not_count(self):
        """The lap that ends after the flag counts; the car's next one does not."""
        events = log([lap("8", 1, 590, 107_000), lap("7", 1, 605, 106_900),
                      lap("7", 2, 700, 106_000)], championship=setup(), duration_ms=600_000)
        view = fold(events)
        assert view is not None and view["pole_car"] == "7"
        assert standing(view, "7")["points"] == 119

    def test_disqualified_pole_car_loses_the_pole(self):
        """A disqualified car keeps no lap, so no pole."""
        events = log([lap("8", 1, 100, 106_564), lap("7", 1, 110, 107_053)],
                     [Correction(session_time_ms=200_000, kind="disqualified", car="8",
                                 reason="technical")], championship=setup())
        view = fold(events)
        assert view is not None and view["pole_car"] == "7"


class TestRace:
    def race(self, crossings: Sequence[Crossing], corrections: Sequence[Correction] = (),
             **kw: Any) -> list[Event]:
        return log(crossings, corrections, kind="race",
                   championship=setup(pole_car="8", **kw), duration_ms=1_000_000)

    def laps_for(self, car: str, times_s: Sequence[float]) -> list[Crossing]:
        return [lap(car, i, t, 100_000) for i, t in enumerate(times_s, 1)]

    def field(self) -> list[Crossing]:
        crossings = (self.laps_for("7", [100, 200, 300]) + self.laps_for("8", [101, 201, 301])
                     + self.laps_for("23", [100.5, 200.5, 300.5])
                     + self.laps_for("51", [102, 202]))
        return sorted(crossings, key=lambda c: c.session_time_ms)

    def test_points_by_class_position_with_the_pole_from_the_setup(self):
        """Laps then crossing time rank the class; another class's car does not count."""
        view = fold(self.race(self.field()))
        assert view is not None and view["pole_car"] == "8"
        assert [(r["car"], r["race_position"], r["points"]) for r in view["standings"]] == [
            ("8", 2, 133 + 1 + 27), ("7", 1, 118 + 38), ("51", 3, 102 + 23), ("50", None, 97)]
        assert standing(view, "7")["places"] == [4]

    def test_time_penalty_reorders_the_class(self):
        """A penalty delays every crossing of the car, so it falls behind on equal laps."""
        view = fold(self.race(self.field(), [Correction(
            session_time_ms=250_000, kind="time-penalty", car="7", penalty_ms=5_000,
            reason="speeding")]))
        assert view is not None
        assert standing(view, "8")["race_position"] == 1
        assert standing(view, "7")["race_position"] == 2

    def test_penalty_after_the_flag_can_cost_a_lap(self):
        """Shifted by its penalty, a car can take the flag a lap earlier than on the road."""
        crossings = sorted(self.laps_for("7", [400, 800, 1000]) +
                           self.laps_for("8", [401, 801, 1001]) +
                           self.laps_for("51", [450, 850, 1010]), key=lambda c: c.session_time_ms)
        view = fold(self.race(crossings, [Correction(
            session_time_ms=1_010_000, kind="time-penalty", car="7", penalty_ms=250_000,
            reason="tyres")]))
        assert view is not None
        assert [standing(view, c)["race_position"] for c in ("8", "51", "7")] == [1, 2, 3]

    def test_finished_race_names_the_champions(self):
        """Once the race is over the clinch line states the result."""
        view = fold(self.race(self.field()))
        assert view is not None
        assert view["clinch"] == [
            "#8 (Buemi / Hartley / Hirakawa) are champions: 161 points to #7's 156"]
        assert view["contenders"] == []


class TestStakes:
    def stakes(self, standings: Sequence[Competitor] = BAHRAIN, *, pole: str | None = "8",
               **kw: Any) -> dict[str, Any]:
        crossings = [lap(pole, 1, 100, 106_564)] if pole else []
        view = fold(log(crossings, championship=setup(standings, **kw)))
        assert view is not None
        return view

    def test_bahrain_after_the_pole_point(self):
        """#8 with the pole point: 3rd is enough even if #7 wins, and why."""
        view = self.stakes()
        assert standing(view, "8")["points"] == 134
        eight = contender(view, "8")
        assert eight["champion_if"] == [1, 2, 3]
        assert eight["statement"] == ("#8 (Buemi / Hartley / Hirakawa) are champions if they "
                                      "finish 3rd or better, even if #7 wins (157 vs 156)")
        assert view["clinch"][0] == eight["statement"]
        assert view["counterfactuals"] == [
            "without the pole point: #8 3rd and #7 1st would tie on 156 and #7 would take "
            "the title on countback (3 wins to 2 before the race, 4 to 2 with it)"]

    def test_rivals_need_results_of_others(self):
        """A contender who cannot clinch alone gets the rivals' results they need."""
        view = self.stakes()
        seven = contender(view, "7")
        assert seven["champion_if"] == []
        assert seven["can_win_if"] == [1, 2, 3, 4]
        assert seven["statement"] == (
            "#7 (Conway / Kobayashi / López) can still be champions: winning, with #8 4th or "
            "worse; 2nd, with #8 7th or worse; 3rd, with #8 8th or worse; 4th, with #8 10th "
            "or worse and #51 2nd or worse")
        fifty = contender(view, "50")
        assert fifty["scenarios"] == [{"positions": [1], "needs": {"8": None, "7": 5},
                                       "words": "winning, with #8 out of the points and "
                                                "#7 5th or worse"}]

    def test_without_the_pole_point_second_is_needed(self):
        """With no pole point yet, #8 must finish 2nd to be sure."""
        view = self.stakes(pole=None)
        assert view["pole_car"] is None
        assert contender(view, "8")["champion_if"] == [1, 2]
        assert view["counterfactuals"] == []

    def test_someone_elses_pole_point(self):
        """The counterfactual names whose pole point it was when it changes another's stakes."""
        standings = [Competitor(car="8", name="A", points=100, places=[1]),
                     Competitor(car="7", name="B", points=95, places=[1])]
        view = self.stakes(standings, table=[10, 6], pole="7")
        # #8 2nd (106) and #7 1st (96 + 10) tie; #7 wins it on countback, 2 wins to 1.
        assert contender(view, "8")["champion_if"] == [1]
        assert view["counterfactuals"] == [
            "without #7's pole point: #8 2nd and #7 1st would give #8 the title (106 vs 105)"]

    def test_countback_beyond_wins(self):
        """When wins are level the countback goes on to 2nd places, and says so."""
        standings = [Competitor(car="8", name="A", points=100, places=[1, 1]),
                     Competitor(car="7", name="B", points=96, places=[0, 3])]
        view = self.stakes(standings, table=[10, 6])
        assert contender(view, "8")["champion_if"] == [1, 2]
        assert view["counterfactuals"] == [
            "without the pole point: #8 2nd and #7 1st would tie on 106 and #7 would take "
            "the title on countback (3 2nd places to 1 before the race, 3 to 2 with it)"]

    def test_champion_whatever_happens(self):
        """A leader out of reach is champion whatever happens."""
        standings = [Competitor(car="8", name="A", points=200, places=[5]),
                     Competitor(car="7", name="B", points=100, places=[1])]
        view = self.stakes(standings)
        eight = contender(view, "8")
        assert None in eight["champion_if"]
        assert eight["statement"] == "#8 (A) are champions whatever happens in the race"
        assert contender(view, "7")["statement"] == "#7 (B) can no longer be champions " \
                                                     "(138 points at most)"

    def test_rounds_remaining(self):
        """With rounds to come, the title is not decided here and nothing is claimed."""
        view = self.stakes(rounds=2)
        assert view["contenders"] == [] and view["counterfactuals"] == []
        assert view["clinch"] == ["2 more rounds after this one: the title is not decided here"]
        assert standing(view, "8")["points"] == 134

    def test_standings_break_ties_on_countback(self):
        """Equal points: more wins ranks first, then more 2nd places."""
        standings = [Competitor(car="8", name="A", points=50, places=[1, 0]),
                     Competitor(car="7", name="B", points=50, places=[2]),
                     Competitor(car="51", name="C", points=50, places=[1, 2])]
        view = self.stakes(standings, pole=None, rounds=1)
        assert [r["car"] for r in view["standings"]] == ["7", "51", "8"]
        assert [r["position"] for r in view["standings"]] == [1, 2, 3]


class TestViewAndSummary:
    def test_view_is_json(self):
        """The view encodes as JSON (it is published and printed by `fold --json`)."""
        view = fold(log([lap("8", 1, 100, 106_564)], championship=setup()))
        decoded = msgspec.json.decode(msgspec.json.encode(view))
        assert decoded == view

    def test_summary_lines(self):
        """The summary names the championship, the standings and the clinch lines."""
        view = fold(log([lap("8", 1, 100, 106_564)], championship=setup()))
        lines = ch.summary_lines(view)
        assert lines[0] == "Hypercar drivers (HYPERCAR), pole: #8"
        assert any("#8" in line and "134" in line for line in lines[2:6])
        text = "\n".join(lines)
        assert "are champions if they finish 3rd or better, even if #7 wins (157 vs 156)" in text
        assert "#8 finishing lower: 4th to 6th, with #7 2nd or worse" in text
        assert "would tie on 156 and #7 would take the title on countback" in text

    def test_checkpoint_round_trip(self):
        """A folder pickled half way and resumed gives the same view as one pass."""
        events = log([lap("7", 1, 100, 107_053), lap("8", 1, 110, 106_564),
                      lap("7", 2, 212, 106_402)],
                     [Correction(session_time_ms=300_000, kind="lap-deleted", car="7", lap=2,
                                 reason="x")], championship=setup())
        whole = Folder(ch.CONSUMER)
        for e in events:
            whole.apply(e)
        half = Folder(ch.CONSUMER)
        for e in events[:3]:
            half.apply(e)
        resumed: Folder[Any] = pickle.loads(pickle.dumps(half))
        for e in events:  # the first three again: ignored
            resumed.apply(e)
        assert resumed.view() == whole.view()

    def test_large_field(self):
        """In a 2,000-car race the contenders' class positions come out right."""
        cars = 2000
        entries = [Entry(car=str(i), car_class="HYPERCAR", team="T") for i in range(cars)]
        standings = [Competitor(car="0", name="A", points=10),
                     Competitor(car="1", name="B", points=5)]
        crossings = [lap(str(i), n, n * 100 + i * 0.01, 100_000)
                     for n in range(1, 4) for i in range(cars)]
        events = log(crossings, kind="race", entries=entries,
                     championship=setup(standings, pole_car="0"))
        view = fold(events)
        assert view is not None
        assert standing(view, "0")["race_position"] == 1
        assert standing(view, "1")["race_position"] == 2
