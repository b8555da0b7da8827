"""Large files stream: peak memory of an import does not grow with the file.

Two imports run in fresh processes, one of a file four times the other's size; each reports its peak
resident memory. Holding the file (or its rows) would add several times the extra 21 MB; streaming
adds only the id sets (a few MB here). bench/store.py runs the same check on a 1 GB file.
"""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import resource, sys
from prefkit.annotate.importers import import_files, run
from prefkit.annotate.store import Store
run.CHUNK_TEXT_BYTES = 1 << 20  # small chunks, so the chunk itself is a small, fixed cost
result = import_files(Store(sys.argv[2]), [sys.argv[1]])
print(result.added["judgements"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
    with open(path, "w") as fh:
        for i in range(n):
            text = " ".join(rng.choices(words, k=600))  # ≈ 3.8 KB per response
            fh.write(json.dumps({"prompt": f"question {i}", "chosen": text, "rejected": text[::-1]}) + "\n")


def peak_kib(path: Path, store: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(store)], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.slow  # two fresh interpreters importing 35 MB: ~10 s on a quiet 2-core box, more under load
def test_peak_memory_does_not_grow_with_file_size(tmp_path):
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_pairs(small, 1_000)  # ≈ 7 MiB: already seven chunks, so both runs reach the plateau
    write_pairs(large, 4_000)  # ≈ 28 MiB
    extra_mib = (large.stat().st_size - small.stat().st_size) / 2**20
    assert extra_mib > 20
    n_small, rss_small = peak_kib(small, tmp_path / "s1")
    n_large, rss_large = peak_kib(large, tmp_path / "s2")
    assert (n_small, n_large) == (1_000, 4_000)
    growth_mib = (rss_large - rss_small) / 1024
    assert growth_mib < extra_mib / 4, f"peak grew {growth_mib:.0f} MiB for {extra_mib:.0f} MiB more input"
