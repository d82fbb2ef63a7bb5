"""Children that die with their parent, even when the parent is killed with SIGKILL.

``lapcast demo`` and ``lapcast stress`` stop their children in order on any signal
they can catch; SIGKILL they cannot, and their children (each in a session of its
own, so that Ctrl-C reaches only the supervisor) would run on. Linux's
``PR_SET_PDEATHSIG`` has the kernel send the child SIGTERM (a clean stop for every
lapcast process and for Mosquitto) when its parent dies, and it survives ``execve``:
``tethered(argv)`` runs a few lines of Python that set it, check that the parent is
still there, and become ``argv``. Not ``preexec_fn``, which is unsafe in a process
with threads (the stress test has some). Elsewhere than Linux, ``argv`` runs as is.

The signal follows the *thread* that started the child: start tethered children from
the main thread, as the demo and the stress test do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["tethered"]

_TRAMPOLINE: Final = """\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
    sys.exit(f"tether: prctl failed: {os.strerror(ctypes.get_errno())}")
if os.getppid() != int(sys.argv[1]):
    sys.exit("tether: the parent died before the child started")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def tethered(argv: Sequence[str]) -> list[str]:
    """``argv`` to be run by a child that gets SIGTERM when this process dies."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    # -I -S: nothing from the environment or site-packages; ctypes is all it needs.
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), *argv]
