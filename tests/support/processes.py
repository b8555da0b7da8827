"""Finding the processes a test run started, by an environment marker they inherit (Linux /proc)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARKER = "PREFKIT_TEST_PROCESS_MARK"
# Helpers that live exactly as long as the interpreter that started them, and go with it.
ALLOWED = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "torch/_inductor/compile_worker")


def marked_processes(mark: str) -> dict[int, str]:
    """pid → command line of every live process (but this one) started with MARKER=`mark`."""
    needle = f"{MARKER}={mark}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z" and cmdline and not any(a in cmdline for a in ALLOWED):
            found[int(proc.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(pids) -> None:
    """SIGTERM, then SIGKILL what is still there after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
