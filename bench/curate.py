"""Curation speed: the near-duplicate stage against datasketch, and the whole default recipe at scale.

1. **Near duplicates** on 100,000 generated prompts with planted exact and near copies
   (`prefkit.curate.synthetic.planted_prompts`: case, whitespace, punctuation, 1–3 changed words), side by
   side, alternating, in one process (numpy and datasketch both run on one thread here):

       prefkit     prefkit.curate.minhash.near_duplicate_groups  normalise → word 2-gram shingles → 128 MinHashes
                                                          → 32×4 LSH bands → verify → components (numpy)
       datasketch  the same steps as a user writes them:  Python normalise/shingle per text,
                   MinHash.bulk(128), MinHashLSH(params=(32, 4)), query each, verify with jaccard(),
                   union-find

   Both use the same shingles, permutations, bands and threshold, and both are scored against the
   planted truth, so the ratio is at equal recall (printed beside it).

2. **The default recipe** on a generated store of 1,000,000 judgements over 300,000 prompts (two
   responses each; 3–4 votes per comparison from people, some prompts also judged by an AI in both
   orders; 10% of prompts near copies of others). `curate(store)` runs in a fresh subprocess, which
   reports its wall time and peak RSS. Goals: ≤ 120 s and ≤ 8 GB on a 2-core machine.

    python bench/curate.py                          # both parts, 2 repeats
    python bench/curate.py --prompts 20000 --repeats 1 --skip-recipe
    python bench/curate.py --skip-neardup --judgements 200000 --recipe-prompts 60000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefkit.curate.minhash import near_duplicate_groups  # noqa: E402
from prefkit.curate.recipe import NearDuplicates  # noqa: E402
from prefkit.curate.synthetic import pair_scores, planted_prompts  # noqa: E402

CFG = NearDuplicates()  # the default recipe's options: word 2-grams, 128 permutations, 32 bands, 0.7


def datasketch_groups(texts: list[str], cfg: NearDuplicates) -> np.ndarray:
    """The datasketch route, written as its documentation suggests, with the same steps as prefkit's."""
    from datasketch import MinHash, MinHashLSH

    punct = re.compile(r"[^\w\s]+")
    norm = [" ".join(t.lower().split()) for t in texts]
    first: dict[str, int] = {}
    exact = np.array([first.setdefault(t, i) for i, t in enumerate(norm)])
    leaders = np.flatnonzero(exact == np.arange(len(texts)))
    shingles = []
    for i in leaders:
        w = punct.sub(" ", norm[i]).split()
        grams = [" ".join(w[k : k + cfg.ngram]) for k in range(len(w) - cfg.ngram + 1)] or w
        shingles.append([g.encode("utf-8") for g in grams])
    hashes = MinHash.bulk(shingles, num_perm=cfg.num_perm)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.num_perm // cfg.bands))
    with lsh.insertion_session() as session:
        for k, m in enumerate(hashes):
            session.insert(k, m, check_duplication=False)
    parent = list(range(len(leaders)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k, m in enumerate(hashes):
        for other in lsh.query(m):
            if other != k and m.jaccard(hashes[other]) >= cfg.threshold:
                a, b = find(k), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    root = np.array([find(k) for k in range(len(leaders))])
    return leaders[root][np.searchsorted(leaders, exact)]


def bench_neardup(n: int, repeats: int) -> dict:
    texts, truth = planted_prompts(n, seed=11)
    times: dict[str, list[float]] = {"prefkit": [], "datasketch": []}
    scores = {}
    # Alternate, so load on the shared machine hits both alike. prefkit's side is cheap, so it runs twice
    # per datasketch run: more samples make its median less sensitive to one disturbed run.
    for _ in range(repeats):
        for name in ("prefkit", "datasketch", "prefkit"):
            started = time.perf_counter()
            groups = near_duplicate_groups(texts, CFG).group if name == "prefkit" else datasketch_groups(texts, CFG)
            times[name].append(time.perf_counter() - started)
            scores[name] = pair_scores(groups, truth)
            print(
                f"  {name:10} {times[name][-1]:7.2f} s  recall {scores[name][0]:.4f}  precision {scores[name][1]:.4f}",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"prompts": n, "median_s": med, "ratio": med["datasketch"] / med["prefkit"], "scores": scores}


# -- the whole recipe -------------------------------------------------------------------------------


def build_store(path: Path, prompts: int, judgements: int, seed: int = 3) -> None:
    """A store of `prompts` prompts (10% near copies), two responses each, `judgements` pairwise votes."""
    import pyarrow as pa
    from prefkit.annotate.contract import JUDGEMENTS, PROMPTS, RESPONSES
    from prefkit.annotate.store import Store

    rng = np.random.default_rng(seed)
    texts, _ = planted_prompts(prompts, dup_share=0.1, near_share=0.7, seed=seed, min_words=12, max_words=40)
    vocab = np.array(
        (
            "alpha beta gamma delta answer reason because therefore first second finally result value "
            "number step check the a of to and is in it that for on with as"
        ).split(),
        dtype=object,
    )
    now = pa.scalar(time.time_ns() // 1000, pa.timestamp("us", tz="UTC"))
    pid = [f"p{i:08d}" for i in range(prompts)]
    store = Store(path)
    with store.batch() as batch:
        batch.append(
            "prompts",
            pa.table(
                {
                    "prompt_id": pid,
                    "messages": [[{"role": "user", "content": t}] for t in texts],
                    "source": [f"src{i % 5}" for i in range(prompts)],
                    "metadata": ["{}"] * prompts,
                    "created_at": pa.array([now.value] * prompts, pa.timestamp("us", tz="UTC")),
                },
                schema=PROMPTS,
            ),
        )
        lengths = rng.integers(15, 60, size=2 * prompts)
        flat = rng.integers(0, len(vocab), size=int(lengths.sum()))
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        contents = [" ".join(vocab[flat[bounds[k] : bounds[k + 1]]]) + f" #{k}" for k in range(2 * prompts)]
        rid = [f"r{k:09d}" for k in range(2 * prompts)]
        batch.append(
            "responses",
            pa.table(
                {
                    "response_id": rid,
                    "prompt_id": [pid[k // 2] for k in range(2 * prompts)],
                    "content": contents,
                    "model": [f"model{k % 2}" for k in range(2 * prompts)],
                    "origin": ["generated"] * (2 * prompts),
                    "parent_id": pa.nulls(2 * prompts, pa.string()),
                    "generation": ["{}"] * (2 * prompts),
                    "created_at": pa.array([now.value] * (2 * prompts), pa.timestamp("us", tz="UTC")),
                },
                schema=RESPONSES,
            ),
        )
        # Votes: every prompt gets `judgements / prompts` votes on average; 20% are an AI judge's two orders.
        target = rng.integers(0, prompts, size=judgements)
        ai = rng.random(judgements) < 0.2
        first = rng.random(judgements) < 0.7  # response 0 usually wins
        flip = rng.random(judgements) < 0.5  # display order
        a = np.array(rid, dtype=object)[2 * target]
        b = np.array(rid, dtype=object)[2 * target + 1]
        shown = [[x, y] if f else [y, x] for x, y, f in zip(a, b, flip, strict=True)]
        scores = [[1.0, 0.0] if (w == f) else [0.0, 1.0] for w, f in zip(first, flip, strict=True)]
        meta = [
            json.dumps({"order_key": f"k{t}", "order": "ab" if f else "ba"}) if x else "{}"
            for t, x, f in zip(target, ai, flip, strict=True)
        ]
        batch.append(
            "judgements",
            pa.table(
                {
                    "judgement_id": [f"j{k:09d}" for k in range(judgements)],
                    "prompt_id": np.array(pid, dtype=object)[target].tolist(),
                    "kind": ["pairwise"] * judgements,
                    "annotator": [("ai:judge:v1" if x else f"person{k % 50}") for k, x in enumerate(ai)],
                    "annotator_type": ["ai" if x else "human" for x in ai],
                    "response_ids": shown,
                    "scores": scores,
                    "both_bad": [False] * judgements,
                    "strength": pa.nulls(judgements, pa.int8()),
                    "aspect": ["overall"] * judgements,
                    "confidence": pa.nulls(judgements, pa.float64()),
                    "step_labels": pa.nulls(judgements, pa.list_(pa.int8())),
                    "rationale": [""] * judgements,
                    "principle": pa.nulls(judgements, pa.string()),
                    "status": ["submitted"] * judgements,
                    "error": pa.nulls(judgements, pa.string()),
                    "duration_ms": pa.nulls(judgements, pa.int64()),
                    "guidelines": ["bench-v1"] * judgements,
                    "raw": pa.nulls(judgements, pa.string()),
                    "metadata": meta,
                    "created_at": pa.array([now.value] * judgements, pa.timestamp("us", tz="UTC")),
                },
                schema=JUDGEMENTS,
            ),
        )


CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from prefkit.curate.pipeline import curate
started = time.perf_counter()
result = curate({store!r}, None, "bench")
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "rows": result.rows, "timings": result.report["timings"]}}))
"""


def bench_recipe(prompts: int, judgements: int, repeats: int, keep: Path | None) -> dict:
    work = keep or Path(tempfile.mkdtemp(prefix="prefkit-bench-curate-"))
    store = work / "store"
    try:
        if not (store / "judgements").exists():
            started = time.perf_counter()
            build_store(store, prompts, judgements)
            print(
                f"  built the store ({prompts:,} prompts, {judgements:,} judgements) in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
        runs = []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=str(ROOT), store=str(store))],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"  default recipe: {runs[-1]['seconds']:.1f} s wall, {runs[-1]['cpu_s']:.1f} s CPU (whole process), "
                f"peak RSS {runs[-1]['peak_mb']:.0f} MB, rows {runs[-1]['rows']}, stages {runs[-1]['timings']}",
                flush=True,
            )
        return {
            "prompts": prompts,
            "judgements": judgements,
            "median_s": statistics.median(r["seconds"] for r in runs),
            "cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "peak_mb": max(r["peak_mb"] for r in runs),
            "rows": runs[-1]["rows"],
        }
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=100_000, help="prompts for the near-duplicate comparison")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--recipe-prompts", type=int, default=300_000)
    ap.add_argument("--judgements", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the big store here")
    ap.add_argument("--skip-neardup", action="store_true")
    ap.add_argument("--skip-recipe", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__}")
    if not args.skip_neardup:
        print(f"near duplicates, {args.prompts:,} prompts, {args.repeats} repeats (alternating):")
        r = bench_neardup(args.prompts, args.repeats)
        print(
            f"| near-dup {r['prompts']:,} prompts | prefkit {r['median_s']['prefkit']:.1f} s | datasketch "
            f"{r['median_s']['datasketch']:.1f} s | **{r['ratio']:.1f}×** | recall {r['scores']['prefkit'][0]:.3f} "
            f"vs {r['scores']['datasketch'][0]:.3f}, precision {r['scores']['prefkit'][1]:.3f} vs "
            f"{r['scores']['datasketch'][1]:.3f} |"
        )
    if not args.skip_recipe:
        print(f"default recipe, {args.judgements:,} judgements over {args.recipe_prompts:,} prompts:")
        r = bench_recipe(args.recipe_prompts, args.judgements, args.repeats, args.keep)
        print(
            f"| default recipe, {r['judgements']:,} judgements / {r['prompts']:,} prompts | {r['median_s']:.1f} s "
            f"wall (goal ≤ 120), {r['cpu_s']:.0f} s CPU | peak RSS {r['peak_mb'] / 1024:.2f} GB (goal ≤ 8) |"
        )


if __name__ == "__main__":
    main()
