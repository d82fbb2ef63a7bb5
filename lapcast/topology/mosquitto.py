"""The Mosquitto broker: a private one from a config in ``broker-config/``, on a free port.

The broker of ``MosquittoSpec`` (``lapcast demo``, ``lapcast stress``, the benches)
and of the test fixtures: the template's listener ports and persistence folder are
rewritten, so no two runs share a broker. A listener with a ``certfile`` is a TLS
listener: its URL is ``mqtts://``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lapcast.topology.process import Child
from lapcast.topology.spec import ProcessSpec
from simulator.errors import LapcastError

__all__ = ["CONFIG_DIR", "MosquittoProcess", "find_mosquitto", "free_port"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "broker-config"
INSTALL_HINT = (
    "mosquitto not found: install it with `sudo apt-get install -y mosquitto` "
    "(Debian/Ubuntu) or `brew install mosquitto` (macOS), or pass --broker URL"
)


def find_mosquitto() -> str:
    candidates = (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise LapcastError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise LapcastError(f"mosquitto exited with {child.returncode}: {child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise LapcastError(f"mosquitto did not open port {port} within {timeout} s")


@dataclass
class MosquittoProcess:
    """A Mosquitto child process. ``ports`` maps each template port to the port used.

    ``replacements`` rewrites any other text of the template (paths of certificates,
    password and ACL files for the secure profile, for example).
    """

    config: str = "dev.conf"
    replacements: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    ports: dict[int, int] = field(default_factory=dict)
    child: Child | None = None
    config_path: Path | None = None
    # Ports (as used, not as in the template) of the listeners that speak TLS.
    tls_ports: set[int] = field(default_factory=set)
    # SIGTERM to the broker when this process dies, even by SIGKILL
    # (lapcast.topology.tether); start it from the main thread then.
    tether: bool = False

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running broker's process (reap it through ``child``, not this)."""
        return None if self.child is None else self.child.proc

    def children(self) -> Sequence[Child]:
        return () if self.child is None else (self.child,)

    @property
    def port(self) -> int:
        """The first listener's port."""
        return next(iter(self.ports.values()))

    @property
    def url(self) -> str:
        """The first listener's URL: ``mqtts://`` when it is a TLS listener."""
        return self.url_for(self.port)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every listener's URL."""
        return tuple(self.url_for(port) for port in self.ports.values())

    def url_for(self, port: int) -> str:
        scheme = "mqtts" if port in self.tls_ports else "mqtt"
        return f"{scheme}://127.0.0.1:{port}"

    def render(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="lapcast-mosquitto-"))
        text = (CONFIG_DIR / self.config).read_text()
        for old, new in self.replacements.items():
            text = text.replace(old, new)

        def new_listener(match: re.Match[str]) -> str:
            old = int(match.group(2))
            if old not in self.ports:
                self.ports[old] = free_port()
            return f"{match.group(1)}{self.ports[old]}"

        text = re.sub(r"(?m)^(listener\s+)(\d+)", new_listener, text)
        # A listener's options follow its `listener` line, up to the next one.
        for block in re.split(r"(?m)^(?=listener\s)", text)[1:]:
            if re.search(r"(?m)^certfile\s", block):
                self.tls_ports.add(int(block.split()[1]))
        if os.geteuid() == 0 and not re.search(r"(?m)^user\s", text):
            # Started as root, Mosquitto drops to the `mosquitto` user, which can read
            # neither our private key and password file nor write the persistence
            # folder: keep it as the user who started it, as it is for everyone else.
            text += ("\n# Added by lapcast/topology/mosquitto.py: started as root, stay root."
                     "\nuser root\n")
        persistence = self.workdir / "data"
        persistence.mkdir(parents=True, exist_ok=True)
        text = re.sub(
            r"(?m)^persistence_location\s+.*$", f"persistence_location {persistence}/", text
        )
        path = self.workdir / self.config
        path.write_text(text)
        return path

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        binary = find_mosquitto()
        if self.config_path is None:  # a restart keeps the ports and the persistence
            self.config_path = self.render()
        assert self.workdir is not None
        # Appended to: a restart keeps the log of the run before.
        self.child = Child(ProcessSpec(name="mosquitto", argv=(binary, "-c", str(self.config_path)),
                                       tether=self.tether),
                           log=self.workdir / "mosquitto.log")
        for port in self.ports.values():
            _wait_for_port(port, self.child, timeout)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM saves its persistence; SIGKILL does not)."""
        if self.child is None:
            return
        self.child.stop(timeout, sig=sig)
        self.child = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stop and start again on the same ports with the same persistence."""
        self.stop(sig)
        self.start()

    def log_text(self) -> str:
        assert self.workdir is not None
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
