"""`lapcast fold --chart`: the gap and lap charts of a whole session, drawn offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from consumers.folding import fold_all
from consumers.projections.lap_chart import full_history
from consumers.registry import load_consumer
from simulator.sources import load_source

REPO = Path(__file__).resolve().parents[1]
QUALIFYING = REPO / "scenarios" / "wec-2023-bahrain-qualifying.toml"


def fold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lapcast", "fold", *args],
                          capture_output=True, text=True, timeout=120)


class TestFoldChart:
    """Charts for reports, from the same lap-chart fold the web page draws."""

    def test_gap_chart_of_the_race_as_svg(self, race_csv: Path, tmp_path: Path) -> None:
        """The real race's gap chart to #8: one line per HYPERCAR, in an SVG."""
        out = tmp_path / "gap.svg"
        done = fold(str(race_csv), "--chart", "gap", "--reference", "8", "--out", str(out))
        assert done.returncode == 0, done.stderr
        svg = out.read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert svg.count("<path") > 18
        assert "gap chart, 18 cars" in done.stderr  # the HYPERCAR field of 2024 Bahrain

    def test_lap_chart_of_the_qualifying_as_png(self, tmp_path: Path) -> None:
        """Every car of the qualifying on the lap chart, in a PNG."""
        out = tmp_path / "laps.png"
        done = fold(str(QUALIFYING), "--chart", "laps", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "lap chart, 37 cars" in done.stderr

    def test_bad_requests_exit_2(self, tmp_path: Path) -> None:
        """An unknown car, a file type matplotlib is not asked for, a missing --out."""
        unknown = fold(str(QUALIFYING), "--chart", "gap", "--reference", "999",
                       "--out", str(tmp_path / "x.svg"))
        assert unknown.returncode == 2 and "no car '999'" in unknown.stderr
        pdf = fold(str(QUALIFYING), "--chart", "gap", "--out", str(tmp_path / "x.pdf"))
        assert pdf.returncode == 2 and ".svg or .png" in pdf.stderr
        missing = fold(str(QUALIFYING), "--chart", "laps")
        assert missing.returncode == 2 and "--out" in missing.stderr
        assert "Traceback" not in unknown.stderr + pdf.stderr + missing.stderr

    def test_full_history_is_every_lap(self) -> None:
        """Offline charts use every lap, not the retained window."""
        source = load_source(str(QUALIFYING))
        folder = fold_all([load_consumer("lap-chart")], source.events())[0]
        history = full_history(folder.state)
        window = {row["car"]: row["laps"] for row in folder.view()["rows"]}
        assert history == window  # 37 cars x 8 laps: the window holds them all
        assert sum(len(cells) for cells in history.values()) > 200

    def test_fold_json_shows_the_lap_chart(self) -> None:
        """`lapcast fold --json` carries the lap-chart view beside the other projections."""
        done = fold(str(QUALIFYING), "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        chart = doc["lap_chart"]
        assert chart["session_kind"] == "qualifying" and len(chart["rows"]) == 37
        assert chart["columns"] == ["lap", "position", "class_position", "gap_ms",
                                    "interval_ms"]
