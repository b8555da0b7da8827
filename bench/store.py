"""Store speed and memory: prefkit's import vs the plain pandas route, and reads before/after compaction.

1. **Import throughput** of a generated JSONL of preference pairs (default 200,000), side by side:

       prefkit   import_files(store, [file])           read → ids → dedupe → validate → 3 tables, atomic
       pandas    pd.read_json(lines=True).to_parquet()  one table, no ids, no checks

   Each run is a fresh subprocess (its peak RSS is its own); the two alternate; the table gives the
   median MB/s, rows/s and peak RSS over the repeats, and the ratio. Both get the same thread count.

2. **Reads over many small parts**: a store written as 1,000 parts (as the labelling app writes one
   per submission), and a copy after `prefkit compact`; the same DuckDB query alternates between
   them (a fresh connection each time, as a CLI command would open one).

3. With `--big-gb N`: peak RSS of importing an N GB JSONL (the issue asks < 2 GB for 1 GB).

    python bench/store.py                       # 200k pairs, 3 repeats, 1,000 parts
    python bench/store.py --pairs 20000 --repeats 2 --parts 200
    python bench/store.py --big-gb 1 --skip-import --skip-compact
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact be have do say get make go know take see come think look "
    "want give use find tell ask seem feel try leave call good new first last long great little own other old "
    "right big high different small large next early young important few public bad same able"
).split()


def make_pairs(path: Path, pairs: int, seed: int = 0, words: tuple[int, int, int] = (25, 80, 60)) -> int:
    """A JSONL of `pairs` prompt/chosen/rejected records with unique prompts. Returns its size in bytes."""
    rng = random.Random(seed)
    n_prompt, n_chosen, n_rejected = words
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(pairs):
            fh.write(
                json.dumps(
                    {
                        "prompt": " ".join(rng.choices(WORDS, k=n_prompt)) + f" (#{i})",
                        "chosen": " ".join(rng.choices(WORDS, k=n_chosen)),
                        "rejected": " ".join(rng.choices(WORDS, k=n_rejected)),
                    }
                )
                + "\n"
            )
    return path.stat().st_size


# The children: each times only its own work (imports done first) and reports its peak RSS.
CHILD_PREFKIT = """
import json, resource, sys, time
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store
t = time.perf_counter()
result = import_files(Store(sys.argv[2]), [sys.argv[1]])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "records": result.files[0].records,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_PANDAS = """
import json, resource, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_json(sys.argv[1], lines=True)
df.to_parquet(sys.argv[2] + ".parquet", compression="zstd")
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "records": len(df),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(code: str, *args: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ARROW_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_import(work: Path, pairs: int, repeats: int, threads: int) -> list[tuple]:
    data = work / "pairs.jsonl"
    size = make_pairs(data, pairs)
    runs: dict[str, list[dict]] = {"prefkit": [], "pandas": []}
    for r in range(repeats):
        order = ["prefkit", "pandas"] if r % 2 == 0 else ["pandas", "prefkit"]
        for side in order:
            target = work / f"{side}-{r}"
            code = CHILD_PREFKIT if side == "prefkit" else CHILD_PANDAS
            result = run_child(code, str(data), str(target), threads=threads)
            assert result["records"] == pairs, result
            runs[side].append(result)
            shutil.rmtree(target, ignore_errors=True)
            Path(str(target) + ".parquet").unlink(missing_ok=True)
            print(f"  {side:8s} run {r + 1}: {result['seconds']:.1f} s, peak {result['rss_mib']:.0f} MiB", flush=True)
    rows = []
    for side, results in runs.items():
        sec = statistics.median(x["seconds"] for x in results)
        rss = statistics.median(x["rss_mib"] for x in results)
        rows.append((side, size / 2**20 / sec, pairs / sec, sec, rss))
    print(f"\nimport of {pairs:,} pairs ({size / 2**20:.0f} MiB JSONL), median of {repeats}, {threads} thread(s):")
    print(f"  {'':10s} {'MB/s':>8s} {'rows/s':>10s} {'seconds':>8s} {'peak RSS':>9s}")
    for side, mbs, rps, sec, rss in rows:
        print(f"  {side:10s} {mbs:8.1f} {rps:10,.0f} {sec:8.1f} {rss:7.0f} MiB")
    ratio = rows[0][2] / rows[1][2]
    print(
        f"  prefkit / pandas throughput: {ratio:.2f}×  (prefkit also hashes ids, dedupes, validates and writes 3 tables atomically)"
    )
    return rows


def bench_compact(work: Path, parts: int, repeats: int, threads: int) -> tuple[float, float]:
    from prefkit.annotate.contract import Judgement, Prompt, Response
    from prefkit.annotate.ids import new_judgement_id
    from prefkit.annotate.store import Store

    many = Store(work / "many-parts")
    for i in range(parts):  # one small write per part, like the app's submissions
        p = Prompt(messages=[{"role": "user", "content": f"question {i}"}], source="bench")
        a, b = (Response(prompt_id=p.prompt_id, content=f"answer {i} {k}") for k in "ab")
        j = Judgement(
            judgement_id=new_judgement_id(),
            prompt_id=p.prompt_id,
            kind="pairwise",
            annotator=f"u{i % 7}",
            annotator_type="human",
            response_ids=[a.response_id, b.response_id],
            scores=[1.0, 0.0],
        )
        table = ("prompts", "responses", "judgements")[i % 3]
        many.append(table, {"prompts": [p], "responses": [a, b], "judgements": [j]}[table])
    compacted_root = work / "compacted"
    shutil.copytree(many.root, compacted_root)
    compacted = Store(compacted_root)
    compacted.compact()
    n_files = sum(len(many.part_files(t)) for t in ("prompts", "responses", "judgements"))
    n_after = sum(len(compacted.part_files(t)) for t in ("prompts", "responses", "judgements"))

    query = """SELECT j.annotator, count(*) AS n, count(DISTINCT r.response_id) AS responses
               FROM judgements j JOIN responses r ON r.prompt_id = j.prompt_id GROUP BY ALL"""

    def timed(store: Store) -> float:
        t = time.perf_counter()
        con = store.connect()
        con.execute(f"SET threads = {threads}")
        con.execute(query).fetchall()
        con.close()
        return time.perf_counter() - t

    before, after = [], []
    for r in range(max(repeats, 5)):
        for side in ("many", "compacted") if r % 2 == 0 else ("compacted", "many"):
            (before if side == "many" else after).append(timed(many if side == "many" else compacted))
    b, a = statistics.median(before), statistics.median(after)
    print(f"\nDuckDB read (connect + views + a join/group-by), median of {len(before)}, {threads} thread(s):")
    print(f"  {n_files:,} small parts:   {b * 1000:8.1f} ms")
    print(f"  after compact ({n_after} files): {a * 1000:8.1f} ms")
    print(f"  speed-up from compaction: {b / a:.1f}×")
    return b, a


def bench_big(work: Path, gb: float, threads: int) -> None:
    data = work / "big.jsonl"
    pairs = int(gb * 2**30 / 1450)  # ≈ 1.45 KB a record with the long texts below
    size = make_pairs(data, pairs, seed=1, words=(40, 120, 100))
    print(f"\nbig import: {size / 2**30:.2f} GiB, {pairs:,} pairs …", flush=True)
    result = run_child(CHILD_PREFKIT, str(data), str(work / "big-store"), threads=threads)
    print(
        f"  prefkit: {result['seconds']:.0f} s ({size / 2**20 / result['seconds']:.1f} MB/s), "
        f"peak RSS {result['rss_mib']:.0f} MiB (limit 2048 MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000, help="pairs in the generated JSONL")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (alternating)")
    parser.add_argument("--parts", type=int, default=1_000, help="small parts in the compaction benchmark")
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides")
    parser.add_argument("--big-gb", type=float, default=0, help="also import a generated file of this many GiB")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-compact", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="prefkit-bench-", dir=args.workdir))
    try:
        if not args.skip_import:
            bench_import(work, args.pairs, args.repeats, args.threads)
        if not args.skip_compact:
            bench_compact(work, args.parts, args.repeats, args.threads)
        if args.big_gb:
            bench_big(work, args.big_gb, args.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
