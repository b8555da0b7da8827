"""Export speed and memory: prefkit's streamed export vs the plain `Dataset.from_pandas` of the whole table.

Both sides do the same job on the same synthetic curated `pairs.parquet` (curate/tables.py's schema):
write the preference set's train/test DatasetDict with `save_to_disk` and as Hub-layout Parquet.

    prefkit   export_curated(..., formats="preference")     DuckDB → record batches → Parquet + Arrow
    pandas    pd.read_parquet → map prompts → Dataset.from_pandas → filter splits → save_to_disk + to_parquet

Each run is a fresh subprocess (so its peak RSS is its own), the two sides alternate, and the table
prints medians over the repeats and the ratio. Both use the same number of threads.

    python bench/export.py                 # 1,000,000 pairs, 3 repeats
    python bench/export.py --rows 100000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_pairs(path: Path, rows: int, seed: int = 0) -> int:
    """A curated pairs.parquet of `rows` synthetic pairs: ~200-char prompts and ~400-char responses
    (about 1 KB of text a pair), unique per row, 10% of rows in the test split."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from prefkit.curate.tables import PAIRS

    rng = np.random.default_rng(seed)
    words = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9))) for _ in range(5000)])

    def pool(n_words: int, size: int = 20_000) -> pa.Array:
        return pa.array([" ".join(rng.choice(words, n_words)) for _ in range(size)])

    prompts, answers = pool(35), pool(70)
    chunk = 100_000
    with pq.ParquetWriter(path, PAIRS) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = pa.array([f"{i:08d}" for i in range(start, start + n)])

            def text(p: pa.Array, tag: str) -> pa.Array:
                return pc.binary_join_element_wise(p.take(rng.integers(0, len(p), n)), ids, f" [{tag}] ")  # noqa: B023

            prompt_text = text(prompts, "p")
            role = pa.array(["user"] * n)
            message = pa.StructArray.from_arrays([role, prompt_text], names=["role", "content"])
            prompt = pa.ListArray.from_arrays(pa.array(range(n + 1), pa.int32()), message)
            split = pa.array(np.where(rng.random(n) < 0.1, "test", "train"))
            score = pa.array(rng.random(n))
            cols = {
                "pair_id": ids, "prompt_id": ids, "prompt": prompt, "chosen_id": ids, "rejected_id": ids,
                "chosen": text(answers, "c"), "rejected": text(answers, "r"), "aspect": pa.array(["overall"] * n),
                "score_chosen": score, "score_rejected": pa.array(np.zeros(n)), "margin": score, "agreement": score,
                "n_votes": pa.array(np.full(n, 3, np.int32)),
                "judgement_ids": pa.ListArray.from_arrays(pa.array(range(n + 1), pa.int32()), ids),
                "annotators": pa.ListArray.from_arrays(pa.array(range(n + 1), pa.int32()), ids),
                "source": pa.array(["bench"] * n), "group_id": ids, "split": split,
            }  # fmt: skip
            writer.write_table(pa.table(cols, schema=PAIRS))
    return path.stat().st_size


def run_prefkit(store: Path, out: Path, threads: int) -> None:
    from prefkit.export import export_curated

    export_curated(store, "bench", out, formats="preference", threads=threads)


def run_pandas(store: Path, out: Path, threads: int) -> None:
    import pandas as pd
    from datasets import Dataset, DatasetDict
    from prefkit.curate.tables import curated_dir

    df = pd.read_parquet(curated_dir(store, "bench") / "pairs.parquet")
    df["prompt"] = [m[0]["content"] for m in df["prompt"]]
    keep = ["prompt", "chosen", "rejected", "pair_id", "prompt_id", "aspect", "score_chosen", "score_rejected"]
    keep += ["margin", "agreement", "n_votes", "source"]
    parts = {s: df.loc[df["split"] == s, keep] for s in ("train", "test")}
    del df
    dd = DatasetDict({s: Dataset.from_pandas(p, preserve_index=False) for s, p in parts.items()})
    target = out / "preference"
    dd.save_to_disk(str(target), num_proc=None)
    for split, d in dd.items():
        d.to_parquet(str(target / "data" / f"{split}-00000-of-00001.parquet"))


def child(side: str, store: str, out: str, threads: int) -> None:
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    t = time.perf_counter()
    (run_prefkit if side == "prefkit" else run_pandas)(Path(store), Path(out), threads)
    seconds = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # less sensitive than wall time to other load on a shared machine
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_bytes": usage.ru_maxrss * 1024}))


def measure(side: str, store: Path, work: Path, threads: int) -> dict:
    out = work / f"out-{side}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", side, str(store), str(out), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary folder)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        side, store, out, threads = args.child
        return child(side, store, out, int(threads))

    work = Path(args.work or tempfile.mkdtemp(prefix="prefkit-bench-export-"))
    store = work / "store"
    folder = store / "curated" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    size = make_pairs(folder / "pairs.parquet", args.rows)
    print(f"{args.rows:,} pairs, {size / 1e6:.0f} MB of Parquet, {args.threads} threads, {args.repeats} repeats")
    results: dict[str, list[dict]] = {"prefkit": [], "pandas": []}
    for r in range(args.repeats):
        for side in ("prefkit", "pandas") if r % 2 == 0 else ("pandas", "prefkit"):
            m = measure(side, store, work, args.threads)
            results[side].append(m)
            print(
                f"  run {r + 1} {side:8s} {m['seconds']:6.1f} s wall {m['cpu_seconds']:6.1f} s CPU"
                f"  peak {m['peak_bytes'] / 2**30:5.2f} GiB",
                flush=True,
            )
    keys = ("seconds", "cpu_seconds", "peak_bytes")
    med = {s: {k: statistics.median(x[k] for x in v) for k in keys} for s, v in results.items()}
    print()
    print("| export of the preference set | wall s (median) | CPU s (median) | peak memory (median) |")
    print("| --- | ---: | ---: | ---: |")
    labels = {"prefkit": "prefkit export (streamed)", "pandas": "`Dataset.from_pandas` of the whole table"}
    for side in ("prefkit", "pandas"):
        m = med[side]
        print(f"| {labels[side]} | {m['seconds']:.1f} | {m['cpu_seconds']:.1f} | {m['peak_bytes'] / 2**30:.2f} GiB |")
    speed = med["pandas"]["seconds"] / med["prefkit"]["seconds"]
    cpu = med["pandas"]["cpu_seconds"] / med["prefkit"]["cpu_seconds"]
    memory = med["pandas"]["peak_bytes"] / med["prefkit"]["peak_bytes"]
    print(
        f"\nprefkit vs the plain alternative: {speed:.2f}x the speed (wall), {cpu:.2f}x the speed (CPU time),"
        f" 1/{memory:.1f} of the peak memory."
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
