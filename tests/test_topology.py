"""``lapcast.topology``: a topology as data, started in one order, watched, stopped whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.procs import alive, cmdline, descendants

from lapcast.topology import (
    ConsumerSpec,
    EngineSpec,
    ExternalBroker,
    MosquittoSpec,
    PartDied,
    ProcessSpec,
    Supervisor,
    Topology,
    lapcast_argv,
    stop_popen,
)

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "wec-2023-bahrain-qualifying.toml"
# No broker listens there: for supervisors whose children never connect.
NOWHERE = ExternalBroker("mqtt://127.0.0.1:9")


def python(name: str, code: str, *, may_finish: bool = False) -> ProcessSpec:
    return ProcessSpec(name=name, argv=(sys.executable, "-c", code), may_finish=may_finish)


SLEEPER = "import time; time.sleep(60)"


def _wait_gone(pids: set[int], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f"{p}: {cmdline(p)}" for p in pids if alive(p)]


class TestSpecs:
    def test_one_builder_of_the_lapcast_command_line(self) -> None:
        """Every lapcast child is this interpreter running ``-m lapcast``."""
        assert lapcast_argv("fold", "x.csv") == [sys.executable, "-m", "lapcast", "fold", "x.csv"]

    def test_parts_get_the_broker_url_when_they_start(self, tmp_path: Path) -> None:
        """A part is described without the URL; ``process(url)`` gives its command line."""
        consumer = ConsumerSpec(consumer="class-poles", session_id="s1", state_dir=tmp_path,
                                extra=("--publish-ms", "5"), verbose=1)
        assert consumer.process("mqtt://h:1").argv == (
            *lapcast_argv("-v", "consume", "class-poles", "--broker", "mqtt://h:1",
                          "--session", "s1", "--state-dir", str(tmp_path), "--publish-ms", "5"),
        )
        engine = EngineSpec(source="race.csv", journal=tmp_path / "j.jsonl", speed="max")
        process = engine.process("mqtt://h:1")
        assert process.name == "engine" and process.may_finish
        assert process.argv == (*lapcast_argv("replay", "race.csv", "--broker", "mqtt://h:1",
                                              "--speed", "max", "--journal",
                                              str(tmp_path / "j.jsonl")),)

    def test_two_parts_may_not_share_a_name(self, tmp_path: Path) -> None:
        """Names are log files and messages: a second ``replay`` is refused."""
        consumer = ConsumerSpec(consumer="x", session_id="s", state_dir=tmp_path, label="replay")
        engine = EngineSpec(source="a.csv", journal=tmp_path / "j", label="replay")
        with pytest.raises(ValueError, match="named replay"):
            Topology(broker=NOWHERE, consumers=(consumer,), engine=engine)


class TestSupervisor:
    def test_a_dead_part_is_named_with_its_last_log_lines_and_the_rest_stopped(
            self, tmp_path: Path) -> None:
        """``check()`` names the part and how it ended, with the last 8 lines of its log;
        ``stop()`` then stops what still runs."""
        with Supervisor(Topology(broker=NOWHERE), tmp_path) as supervisor:
            sleeper = supervisor.spawn(python("sleeper", SLEEPER))
            supervisor.spawn(python("dier", "import sys\nfor i in range(12): print('line', i)\n"
                                            "sys.exit(3)"))
            supervisor.children["dier"].wait(10)
            with pytest.raises(PartDied) as died:
                supervisor.check()
            assert str(died.value) == "dier exited with 3:\n" + "\n".join(
                f"line {i}" for i in range(4, 12))
            assert sleeper.running
            usages = supervisor.stop(grace_s=5)
        assert usages["sleeper"].returncode == -signal.SIGTERM
        assert usages["dier"].returncode == 3
        assert not alive(sleeper.pid)
        assert (tmp_path / "dier.log").read_text().startswith("line 0\n")

    def test_a_part_killed_by_a_signal_is_named_so(self, tmp_path: Path) -> None:
        """A part that may finish may exit 0, not be killed; the message says by what."""
        with Supervisor(Topology(broker=NOWHERE), tmp_path) as supervisor:
            done = supervisor.spawn(python("done", "pass", may_finish=True))
            victim = supervisor.spawn(python("victim", SLEEPER, may_finish=True))
            done.wait(10)
            supervisor.check()  # an exit with 0 is fine for a part that may finish
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            with pytest.raises(PartDied, match=r"^victim was killed by SIGKILL$"):
                supervisor.check()

    def test_reaping_reports_cpu_and_peak_memory(self, tmp_path: Path) -> None:
        """The kernel's figures at reaping: a child that held 80 MB and spun 0.3 s of CPU."""
        code = ("import time\nblock = bytearray(80 * 1024 * 1024)\n"
                "t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n")
        with Supervisor(Topology(broker=NOWHERE), tmp_path) as supervisor:
            child = supervisor.spawn(python("hungry", code))
            usage = child.wait(30)
        assert usage is not None and usage.returncode == 0
        assert usage.peak_rss_mb >= 80
        assert usage.cpu_s >= 0.3

    def test_a_child_deaf_to_sigterm_is_killed_with_its_whole_group(
            self, tmp_path: Path) -> None:
        """After the grace period, SIGKILL to the group: a grandchild goes too."""
        code = ("import signal, subprocess, sys, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                f"g = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}])\n"
                "print(g.pid, flush=True)\ntime.sleep(60)\n")
        with Supervisor(Topology(broker=NOWHERE), tmp_path) as supervisor:
            deaf = supervisor.spawn(python("deaf", code))
            deadline = time.monotonic() + 10
            while not deaf.log_text().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            grandchild = int(deaf.log_text())
            started = time.monotonic()
            usage = supervisor.stop(grace_s=0.5)["deaf"]
        assert usage.returncode == -signal.SIGKILL
        assert time.monotonic() - started < 5
        assert not _wait_gone({grandchild}, 5)

    @pytest.mark.broker
    def test_broker_then_consumers_then_engine(self, tmp_path: Path) -> None:
        """Asking for the engine starts the broker and the consumers first; stopped with
        SIGTERM, every lapcast process exits cleanly and reports what it cost."""
        topology = Topology(
            broker=MosquittoSpec(),
            consumers=(ConsumerSpec(consumer="class-poles", session_id="t-order",
                                    state_dir=tmp_path / "state"),),
            engine=EngineSpec(source=str(SCENARIO), session_id="t-order", speed="max",
                              journal=tmp_path / "journal.jsonl"),
        )
        with Supervisor(topology, tmp_path) as supervisor:
            supervisor.start_engine()
            [mosquitto] = supervisor.broker.children()
            assert mosquitto.running
            assert list(supervisor.children) == ["class-poles", "engine"]
            deadline = time.monotonic() + 60
            while not (tmp_path / "journal.jsonl").exists() and time.monotonic() < deadline:
                supervisor.check()
                time.sleep(0.1)
            time.sleep(0.5)
            supervisor.check()
            usages = supervisor.stop()
        assert not mosquitto.running
        for name in ("class-poles", "engine"):
            assert usages[name].returncode == 0, (tmp_path / f"{name}.log").read_text()
            assert usages[name].peak_rss_mb > 10 and usages[name].cpu_s > 0

    @pytest.mark.broker
    def test_a_dead_broker_is_named_with_its_log(self, tmp_path: Path) -> None:
        """The broker killed under the supervisor: named, with the end of its log."""
        with Supervisor(Topology(broker=MosquittoSpec()), tmp_path) as supervisor:
            supervisor.start_broker()
            [mosquitto] = supervisor.broker.children()
            os.kill(mosquitto.pid, signal.SIGKILL)
            mosquitto.wait(10)
            with pytest.raises(PartDied) as died:
                supervisor.check()
            log = mosquitto.log_text().strip()
            assert log and str(died.value) == f"mosquitto was killed by SIGKILL: {log[-1000:]}"

    @pytest.mark.broker
    def test_sigkill_of_the_supervisor_leaves_no_children(self, tmp_path: Path) -> None:
        """Tethered: a supervisor killed with SIGKILL still takes its broker and parts."""
        parent = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from pathlib import Path
from lapcast.topology import MosquittoSpec, ProcessSpec, Supervisor, Topology
s = Supervisor(Topology(broker=MosquittoSpec()), Path({str(tmp_path)!r}))
s.start_broker()
for name in ("a", "b"):
    s.spawn(ProcessSpec(name=name, argv=(sys.executable, "-c", {SLEEPER!r})))
print("up", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert parent.stdout is not None
            assert "up\n" in iter(parent.stdout.readline, "")
            children = descendants(parent.pid)
            assert len(children) == 3, [cmdline(p) for p in children]
        finally:
            parent.kill()
            parent.wait()
        assert not _wait_gone(children)


class TestStopPopen:
    def test_a_process_in_the_callers_group_is_signalled_alone(self) -> None:
        """``stop_popen`` on a process that leads no group of its own stops only it."""
        proc = subprocess.Popen([sys.executable, "-c", SLEEPER])
        assert stop_popen(proc, timeout=5) == -signal.SIGTERM
