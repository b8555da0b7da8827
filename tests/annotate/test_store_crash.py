"""SIGKILL a writer at random moments, many times: every acknowledged write survives and no
unreadable file remains."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from prefkit.annotate.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_never_loses_an_acknowledged_write(tmp_path):
    rng = random.Random(7)
    acked: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(25):
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/annotate/crash_writer.py"), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        # wait for the first ack so every round kills a writer that is mid-stream
        first = proc.stdout.readline().strip()
        if first:
            acked.add(first)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked.update(line for line in out.splitlines() if line.strip())
    store = Store(tmp_path)  # opening removes the dead writers' temporaries
    assert not list(tmp_path.rglob("*.tmp"))
    for part in tmp_path.rglob("*.parquet"):
        pq.read_table(part)  # every remaining file is whole
    stored = set(store.read("judgements").column("judgement_id").to_pylist())
    assert len(acked) > 25
    assert acked <= stored
