"""The 2023 Bahrain qualifying scenario folded: published values, the correction, the stakes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consumers.folding import fold_all
from consumers.registry import BUILTIN, load_consumer
from simulator.contract import Event, LapCompleted, LapDeleted, SessionStarted
from simulator.sources import load_source

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "wec-2023-bahrain-qualifying.toml"

# Best laps FACTS gives as exact times (seed or published): (car, ms, driver).
PUBLISHED_BESTS = {
    ("8", 106_564, "Brendon Hartley"), ("7", 107_053, "Kamui Kobayashi"),
    ("2", 107_265, "Alex Lynn"), ("6", 107_712, "Kévin Estre"),
    ("23", 112_290, "Tom Blomqvist"), ("36", 112_561, "Charles Milesi"),
    ("85", 118_692, "Sarah Bovy"),
}
CLINCH = ("#8 (Buemi / Hartley / Hirakawa) are champions if they finish 3rd or better, "
          "even if #7 wins (157 vs 156)")
WITHOUT_POLE = ("without the pole point: #8 3rd and #7 1st would tie on 156 and #7 would take "
                "the title on countback (3 wins to 2")


def fold_views(events: list[Event]) -> dict[str, Any]:
    folders = fold_all([load_consumer(name) for name in BUILTIN], events)
    return {f.consumer.json_key: f.view() for f in folders}


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(load_source(str(SCENARIO)).events())


@pytest.fixture(scope="module")
def final(events: list[Event]) -> dict[str, Any]:
    return fold_views(events)


@pytest.fixture(scope="module")
def before_deletion(events: list[Event]) -> dict[str, Any]:
    cut = next(i for i, e in enumerate(events) if isinstance(e, LapDeleted))
    return fold_views(events[:cut])


def class_order(views: dict[str, Any], car_class: str) -> list[str]:
    rows = [r for r in views["running_order"]["rows"] if r["class"] == car_class]
    rows.sort(key=lambda r: r["class_position"])
    return [r["car"] for r in rows]


def gaps(views: dict[str, Any], car_class: str) -> dict[str, int]:
    return {c["car"]: c["gap_ms"] for c in views["class_poles"][car_class]["cars"]}


class TestEntryList:
    def test_every_car_of_the_three_classes(self, events: list[Event]):
        """12 Hypercars, 11 LMP2 and 14 LMGTE Am, each with team and drivers."""
        started = events[0]
        assert isinstance(started, SessionStarted)
        counts = {c: sum(e.car_class == c for e in started.entries) for c in started.classes}
        assert counts == {"HYPERCAR": 12, "LMP2": 11, "LMGTE Am": 14}
        assert all(e.team and len(e.drivers) == 3 for e in started.entries)
        assert started.scheduled_start == "2023-11-03T17:10:00+03:00"

    def test_published_and_synthesized_are_told_apart(self, events: list[Event]):
        """Only the published best laps are unsynthesized; the deletion is synthesized."""
        laps = [e for e in events if isinstance(e, LapCompleted)]
        published = {(e.car, e.lap_time_ms, e.driver) for e in laps if not e.synthesized}
        assert published == PUBLISHED_BESTS
        [deleted] = [e for e in events if isinstance(e, LapDeleted)]
        assert deleted.synthesized and deleted.car == "7"
        started = events[0]
        assert isinstance(started, SessionStarted)
        assert "entries.54" in started.synthesized
        assert "championship.standings.51.places" in started.synthesized
        assert "championship.standings.8" not in " ".join(started.synthesized)


class TestPublishedResult:
    def test_class_poles(self, final: dict[str, Any]):
        """Poles: #8 1:46.564 (Hartley), #23 1:52.290 (Blomqvist), #85 1:58.692 (Bovy)."""
        poles = final["class_poles"]
        assert {c: (p["car"], p["lap_time_ms"], p["driver"]) for c, p in poles.items()} == {
            "HYPERCAR": ("8", 106_564, "Brendon Hartley"),
            "LMP2": ("23", 112_290, "Tom Blomqvist"),
            "LMGTE Am": ("85", 118_692, "Sarah Bovy"),
        }

    def test_hypercar_order_and_gaps(self, final: dict[str, Any]):
        """#8, #7 +0.489, #2 +0.701, #6 +1.148, the Ferraris, three Porsches, Peugeots, Vanwall."""
        order = class_order(final, "HYPERCAR")
        assert order[:6] == ["8", "7", "2", "6", "50", "51"]
        assert set(order[6:9]) == {"5", "38", "99"} and order[7] == "99"
        assert order[9:] == ["93", "94", "4"]
        gap = gaps(final, "HYPERCAR")
        assert (gap["7"], gap["2"], gap["6"]) == (489, 701, 1148)
        assert gap["4"] > 4000

    def test_only_one_lap_under_1_47_stands(self, events: list[Event]):
        """Hartley's is the only valid lap under 1:47 once #7's is deleted."""
        fast = {(e.car, e.lap) for e in events
                if isinstance(e, LapCompleted) and e.valid and (e.lap_time_ms or 10**9) < 107_000}
        deleted = {(e.car, e.lap) for e in events if isinstance(e, LapDeleted)}
        assert fast - deleted == {("8", 3)}

    def test_cadillac_opened_fastest(self, final: dict[str, Any]):
        """#2 set the first fast time (1:47.265) before the Toyotas went 1-2."""
        history = [h for h in final["class_poles"]["HYPERCAR"]["history"]
                   if h["lap_time_ms"] < 110_000]
        assert (history[0]["car"], history[0]["lap_time_ms"]) == ("2", 107_265)
        assert [h["car"] for h in history[1:3]] == ["7", "8"]

    def test_lmp2_order_and_gaps(self, final: dict[str, Any]):
        """#23, #36 +0.271, #31, #10, #22, #9 about a tenth off P3; #41 10th of 11."""
        order = class_order(final, "LMP2")
        assert order[:6] == ["23", "36", "31", "10", "22", "9"]
        assert len(order) == 11 and order[9] == "41"
        gap = gaps(final, "LMP2")
        assert gap["36"] == 271
        assert abs((gap["9"] - gap["31"]) - 100) <= 50

    def test_gte_order_and_gaps(self, final: dict[str, Any]):
        """#85, #777 about three tenths behind, #25 and #57, then the champions #33 5th."""
        order = class_order(final, "LMGTE Am")
        assert order[:2] == ["85", "777"]
        assert set(order[2:4]) == {"25", "57"} and order[4] == "33"
        assert len(order) == 14
        assert abs(gaps(final, "LMGTE Am")["777"] - 300) <= 50


class TestCorrection:
    def test_seven_on_provisional_pole_before_the_deletion(self, before_deletion: dict[str, Any]):
        """Until the LapDeleted, #7's faster lap holds the pole in every projection."""
        pole = before_deletion["class_poles"]["HYPERCAR"]
        assert pole["car"] == "7" and pole["lap_time_ms"] < 106_564
        assert class_order(before_deletion, "HYPERCAR")[:2] == ["7", "8"]
        champ = before_deletion["championship"]
        assert champ["pole_car"] == "7"
        points = {r["car"]: r["points"] for r in champ["standings"]}
        assert (points["8"], points["7"]) == (133, 119)

    def test_deletion_comes_later_in_the_session(self, events: list[Event]):
        """The LapDeleted arrives after Hartley's pole lap and before the flag."""
        [deleted] = [e for e in events if isinstance(e, LapDeleted)]
        started = events[0]
        assert isinstance(started, SessionStarted) and started.duration_ms is not None
        pole_lap = next(e for e in events if isinstance(e, LapCompleted)
                        and (e.car, e.lap_time_ms) == ("8", 106_564))
        removed = next(e for e in events if isinstance(e, LapCompleted)
                       and (e.car, e.lap) == (deleted.car, deleted.lap))
        assert pole_lap.seq < removed.seq < deleted.seq
        assert deleted.session_time_ms < started.duration_ms

    def test_pole_history_shows_both_moments(self, final: dict[str, Any]):
        """The class-poles history keeps #7's provisional pole and the deletion that ended it."""
        history = final["class_poles"]["HYPERCAR"]["history"]
        assert (history[-2]["car"], history[-2]["cause"]) == ("7", "lap")
        assert (history[-1]["car"], history[-1]["cause"]) == ("8", "deleted")


class TestTitleStakes:
    def test_eight_has_134_after_the_pole_point(self, final: dict[str, Any]):
        """The pole point takes #8 to 134, 16 clear of #7."""
        rows = final["championship"]["standings"]
        assert [(r["car"], r["points"]) for r in rows] == [("8", 134), ("7", 118), ("51", 102),
                                                          ("50", 97)]

    def test_clinch_and_counterfactual(self, final: dict[str, Any]):
        """3rd is enough for #8 even if #7 wins; without the pole point #7 would win a tie."""
        champ = final["championship"]
        assert CLINCH in champ["clinch"]
        assert len(champ["counterfactuals"]) == 1
        assert champ["counterfactuals"][0].startswith(WITHOUT_POLE)


class TestGenerator:
    def test_committed_file_is_what_the_generator_writes(self):
        """The generator is deterministic and the committed TOML is its output."""
        spec = importlib.util.spec_from_file_location(
            "make_bahrain_2023", ROOT / "scenarios" / "make_bahrain_2023.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[spec.name]
        assert module.render() == SCENARIO.read_text(encoding="utf-8")


class TestFoldCommand:
    def run(self, *args: str) -> str:
        env = {**os.environ, "COLUMNS": "250"}
        done = subprocess.run([sys.executable, "-m", "lapcast", "fold", str(SCENARIO), *args],
                              capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def test_fold_prints_the_clinch_lines(self):
        """`lapcast fold` prints the stakes in words, the counterfactual included."""
        out = self.run()
        assert CLINCH in out
        assert WITHOUT_POLE in out

    def test_fold_json_has_the_championship(self):
        """`lapcast fold --json` carries the championship view with the stakes."""
        doc = json.loads(self.run("--json"))
        assert doc["class_poles"]["HYPERCAR"]["car"] == "8"
        assert CLINCH in doc["championship"]["clinch"]

    def test_sector_granularity_gives_the_same_result(self, final: dict[str, Any]):
        """Folding with sector events ends in the same poles and championship."""
        views = fold_views(list(load_source(str(SCENARIO), granularity="sector").events()))
        assert views["championship"] == final["championship"]
        for name, pole in views["class_poles"].items():
            assert pole["car"] == final["class_poles"][name]["car"]
            assert pole["lap_time_ms"] == final["class_poles"][name]["lap_time_ms"]
