"""Run a server as a child process that never outlives us.

`prefkit app` starts Streamlit as a child. A supervisor (systemd, Docker, a test) stops services
with SIGTERM to the pid it started; a plain child would keep serving with parent pid 1. So we pass
SIGTERM, SIGINT and SIGHUP on to the child, give it `grace` seconds, then kill it (a Streamlit
whose stdout pipe has gone fails to print "Stopping…" and never stops). On Linux the child is also
told to die if we are killed outright (SIGKILL cannot be forwarded).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType

FORWARDED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask the kernel for SIGKILL when the parent goes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_supervised(cmd: Sequence[str], env: Mapping[str, str] | None = None, grace: float = 10.0) -> int:
    """Run `cmd` until it exits; a forwarded stop signal makes it exit (killed after `grace` s).

    Returns the child's exit status, or 0 when it stopped because we were told to stop.
    """
    parent = os.getpid()
    # Its own process group: a terminal's Ctrl+C reaches only us, and we pass it on exactly once.
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=(lambda: _die_with_parent(parent)) if sys.platform == "linux" else None,
    )
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    deadline = None
    try:
        while True:
            try:  # short waits: a wait with no timeout resumes after our handler and never times out
                code = proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if stopping and deadline is None:
                    deadline = time.monotonic() + grace
                if deadline is not None and time.monotonic() > deadline:
                    proc.kill()  # asked to stop, and still running after the grace period
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # we are leaving for another reason (an exception): take it along
            proc.kill()
            proc.wait()
    return 0 if stopping else code
