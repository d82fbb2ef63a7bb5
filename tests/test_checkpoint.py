"""Checkpoints: atomic, complete (state with its position), and refused when foreign."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from consumers import checkpoint
from consumers.api import Consumer
from consumers.checkpoint import Checkpoint
from consumers.folding import Folder, fold_all
from simulator.contract import Event, LapCompleted
from simulator.replay.testing import generated_events


def _count(laps: dict[str, int], event: Event) -> dict[str, int]:
    if isinstance(event, LapCompleted):
        laps[event.car] = laps.get(event.car, 0) + 1
    return laps


LAPS = Consumer(name="laps", description="laps per car", initial=dict, apply=_count)


def _checkpoint_of(folder: Folder[dict[str, int]], session: str = "s1") -> Checkpoint:
    return Checkpoint(session_id=session, consumer="laps", epoch=folder.epoch, seq=folder.seq,
                      state=folder.state, published_at_ns=123, session_time_ms=456)


class TestRoundTrip:
    def test_resumed_folder_continues_like_an_unbroken_fold(self, tmp_path: Path) -> None:
        """State and (epoch, seq) come back together; folding on gives the offline result."""
        events = generated_events("s1", cars=4, laps=10)
        folder = fold_all([LAPS], events[:20])[0]
        path = checkpoint.checkpoint_path(tmp_path, "s1", "laps")
        checkpoint.save(path, _checkpoint_of(folder))
        loaded = checkpoint.load(path, session_id="s1", consumer="laps")
        assert loaded is not None
        assert (loaded.epoch, loaded.seq, loaded.published_at_ns, loaded.session_time_ms) == (
            1, 20, 123, 456)
        resumed = loaded.folder(LAPS)
        for event in events:  # the first 20 again: ignored as duplicates
            resumed.apply(event)
        assert resumed.state == fold_all([LAPS], events)[0].state

    def test_no_checkpoint_is_none(self, tmp_path: Path) -> None:
        """A consumer that never checkpointed starts from scratch."""
        assert checkpoint.load(tmp_path / "none", session_id="s1", consumer="laps") is None

    def test_overwrite_leaves_no_temporary_files(self, tmp_path: Path) -> None:
        """Each save replaces the file by rename; no temporary file stays behind."""
        folder = Folder(LAPS)
        path = tmp_path / "s1" / "laps.checkpoint"
        for event in generated_events("s1", cars=2, laps=3):
            folder.apply(event)
            checkpoint.save(path, _checkpoint_of(folder))
        assert os.listdir(path.parent) == ["laps.checkpoint"]
        loaded = checkpoint.load(path, session_id="s1", consumer="laps")
        assert loaded is not None and loaded.seq == folder.seq


class TestAtomicity:
    def test_kill_during_saves_leaves_a_whole_checkpoint(self, tmp_path: Path) -> None:
        """A process killed (SIGKILL) while saving in a loop leaves a readable checkpoint."""
        path = tmp_path / "s1" / "big.checkpoint"
        script = (
            "import sys; from pathlib import Path\n"
            "from consumers import checkpoint\n"
            "path = Path(sys.argv[1]); state = {'x' * 8 + str(i): list(range(50)) "
            "for i in range(3000)}\n"
            "for seq in range(1, 10**9):\n"
            "    checkpoint.save(path, checkpoint.Checkpoint(session_id='s1', consumer='big',"
            " epoch=1, seq=seq, state=state))\n"
            "    if seq == 3: print('ready', flush=True)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.kill()
        proc.wait()
        loaded = checkpoint.load(path, session_id="s1", consumer="big")
        assert loaded is not None and loaded.seq >= 3
        assert len(loaded.state) == 3000


class TestRefusal:
    def test_checkpoint_of_another_session_is_set_aside(self, tmp_path: Path) -> None:
        """A checkpoint of another session is not used and is renamed *.unusable."""
        path = tmp_path / "laps.checkpoint"
        checkpoint.save(path, _checkpoint_of(Folder(LAPS), session="other"))
        assert checkpoint.load(path, session_id="s1", consumer="laps") is None
        assert (tmp_path / "laps.checkpoint.unusable").exists()
        assert not path.exists()

    def test_damaged_file_is_set_aside(self, tmp_path: Path) -> None:
        """Bytes that do not unpickle mean starting over, not crashing."""
        path = tmp_path / "laps.checkpoint"
        path.write_bytes(pickle.dumps({"format": 1})[:5])
        assert checkpoint.load(path, session_id="s1", consumer="laps") is None
        assert (tmp_path / "laps.checkpoint.unusable").exists()

    def test_unpicklable_state_names_the_file(self, tmp_path: Path) -> None:
        """A state that cannot be pickled is a CheckpointError naming the file."""
        path = tmp_path / "laps.checkpoint"
        bad = Checkpoint(session_id="s1", consumer="laps", epoch=1, seq=1,
                         state={"f": lambda: None})
        with pytest.raises(checkpoint.CheckpointError, match=r"laps\.checkpoint"):
            checkpoint.save(path, bad)


class TestStaleTemporaryFiles:
    def test_start_removes_the_consumers_own_temporary_files(self, tmp_path: Path) -> None:
        """Loading at start removes ``.NAME.checkpoint.*.tmp``, and nothing else."""
        folder = tmp_path / "s1"
        folder.mkdir()
        checkpoint.save(folder / "laps.checkpoint", _checkpoint_of(Folder(LAPS)))
        stale = [folder / ".laps.checkpoint.abc123.tmp", folder / ".laps.checkpoint.x_9.tmp"]
        others = [folder / ".poles.checkpoint.abc123.tmp",  # another consumer's
                  folder / "laps.checkpoint.unusable", folder / "notes.tmp",
                  folder / ".laps.checkpoint.abc123.tmp.keep"]
        for path in stale + others:
            path.write_bytes(b"half a pickle")
        loaded = checkpoint.load(folder / "laps.checkpoint", session_id="s1", consumer="laps")
        assert loaded is not None
        assert not any(path.exists() for path in stale)
        assert all(path.exists() for path in others)

    def test_remove_stale_temps_returns_what_it_removed(self, tmp_path: Path) -> None:
        """The function alone: the removed files, none for a folder that does not exist."""
        (tmp_path / ".laps.checkpoint.q1.tmp").write_bytes(b"")
        assert checkpoint.remove_stale_temps(tmp_path, "laps") == [
            tmp_path / ".laps.checkpoint.q1.tmp"]
        assert checkpoint.remove_stale_temps(tmp_path / "nowhere", "laps") == []

    def test_kill_mid_checkpoint_leaves_no_litter_after_restart(self, tmp_path: Path) -> None:
        """A writer killed between temporary file and rename: the next start tidies up."""
        path = tmp_path / "s1" / "laps.checkpoint"
        # Killed after the temporary file is written and before the rename.
        script = (
            "import os, sys; from pathlib import Path\n"
            "from consumers import checkpoint\n"
            "os.replace = lambda *a: os.kill(os.getpid(), 9)\n"
            "checkpoint.save(Path(sys.argv[1]), checkpoint.Checkpoint(session_id='s1', "
            "consumer='laps', epoch=1, seq=5, state={}))\n"
        )
        proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
        assert proc.returncode == -9
        litter = [p.name for p in path.parent.iterdir()]
        assert len(litter) == 1 and litter[0].startswith(".laps.checkpoint.")
        assert checkpoint.load(path, session_id="s1", consumer="laps") is None
        assert list(path.parent.iterdir()) == []
