"""Labelling app: server-side time from "submit" to "next item ready to show", on a big store.

The store holds 100,000 pairwise items (100k prompts × 2 responses) and 300,000 human judgements
(3 per item, overlap k = 4, so every item still needs one more). Side by side, alternating, in one
process with the same thread count:

    prefkit   Board.submit (one Parquet part + lease db)  → Board.show (in-memory index, SQLite lease)
              → texts from the in-memory Arrow content
    naive     the same Store.append                        → rescan the store with DuckDB for an item
              with fewer than k judgements that this person has not judged → read its texts from Parquet

Both write the same judgement; the time is what a person waits between pressing Enter and seeing
the next item (browser rendering excluded). Prints the medians and their ratio.

    python bench/app.py                    # 100k items, 300k judgements, 12 rounds
    python bench/app.py --items 20000 --rounds 5

--team measures the queue instead (bench/app_team.py): submit → next item under 1, 20 and 100
concurrent annotator processes for each queue and store, and how many annotators one app process
serves before its p95 passes 300 ms.

    python bench/app.py --team
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefkit.annotate.app import submit  # noqa: E402
from prefkit.annotate.app.board import Board  # noqa: E402
from prefkit.annotate.app.items import Item, display_order  # noqa: E402
from prefkit.annotate.app.project import Project, Task  # noqa: E402
from prefkit.annotate.app.submit import Shown  # noqa: E402
from prefkit.annotate.contract import JUDGEMENTS, PROMPTS, RESPONSES  # noqa: E402
from prefkit.annotate.ids import content_hash, new_judgement_id  # noqa: E402
from prefkit.annotate.store import Store  # noqa: E402

K = 4
WORDS = "the a model answer question because therefore result step first then finally value test check".split()


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n))


def build_store(path: Path, n_items: int, per_item: int, seed: int = 0) -> Store:
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    store = Store(path)
    prompts, pids, responses, rids = [], [], [], []
    for i in range(n_items):
        messages = [{"role": "user", "content": f"Question {i}: " + _text(rng, 30)}]
        pid = content_hash([{"role": "user", "content": messages[0]["content"]}])
        prompts.append(messages)
        pids.append(pid)
        for j in range(2):
            content = f"Answer {j} to {i}: " + _text(rng, 60)
            responses.append((pid, content, content_hash([pid, content])))
        rids.append(sorted(r[2] for r in responses[-2:]))
    n = len(pids)
    prompt_table = pa.table(
        {
            "prompt_id": pids,
            "messages": prompts,
            "source": ["bench"] * n,
            "metadata": ["{}"] * n,
            "created_at": [now] * n,
        },
        schema=PROMPTS,
    )
    m = len(responses)
    response_table = pa.table(
        {
            "response_id": [r[2] for r in responses],
            "prompt_id": [r[0] for r in responses],
            "content": [r[1] for r in responses],
            "model": ["m"] * m,
            "origin": ["imported"] * m,
            "parent_id": [None] * m,
            "generation": ["{}"] * m,
            "created_at": [now] * m,
        },
        schema=RESPONSES,
    )
    jn = n * per_item
    item = np.repeat(np.arange(n), per_item)
    annotators = [f"ann{(i * 7 + r) % 97:02d}" for i in range(n) for r in range(per_item)]
    flip = rng.random(jn) < 0.5
    judgement_table = pa.table(
        {
            "judgement_id": [new_judgement_id() for _ in range(jn)],
            "prompt_id": [pids[i] for i in item],
            "kind": ["pairwise"] * jn,
            "annotator": annotators,
            "annotator_type": ["human"] * jn,
            "response_ids": [rids[i][::-1] if f else rids[i] for i, f in zip(item, flip, strict=True)],
            "scores": [[1.0, 0.0]] * jn,
            "both_bad": [False] * jn,
            "strength": [None] * jn,
            "aspect": ["overall"] * jn,
            "confidence": [None] * jn,
            "step_labels": [None] * jn,
            "rationale": [""] * jn,
            "principle": [None] * jn,
            "status": ["submitted"] * jn,
            "error": [None] * jn,
            "duration_ms": [5000] * jn,
            "guidelines": ["g"] * jn,
            "raw": [None] * jn,
            "metadata": ["{}"] * jn,
            "created_at": [now] * jn,
        },
        schema=JUDGEMENTS,
    )
    with store.batch() as b:
        b.append("prompts", prompt_table)
        b.append("responses", response_table)
        b.append("judgements", judgement_table)
    return store


NAIVE_NEXT = """
WITH items AS (
    SELECT prompt_id, list_sort(list(response_id))[1:2] AS rids FROM responses GROUP BY prompt_id HAVING count(*) >= 2
), votes AS (
    SELECT prompt_id, list_sort(response_ids) AS rids, count(DISTINCT annotator) AS n, bool_or(annotator = ?) AS mine
    FROM judgements WHERE annotator_type = 'human' AND kind = 'pairwise' AND status IN ('submitted', 'flagged')
    GROUP BY ALL
)
SELECT i.prompt_id, i.rids FROM items i LEFT JOIN votes v USING (prompt_id, rids)
WHERE coalesce(v.n, 0) < ? AND NOT coalesce(v.mine, false)
ORDER BY hash(i.prompt_id || ?) LIMIT 1
"""


def naive_next(store: Store, login: str, project: Project) -> tuple[Shown, list, list[str]]:
    """What an app without an index does: ask the store again which item is free, then read it."""
    con = store.connect()
    try:
        pid, rids = con.execute(NAIVE_NEXT, [login, K, login]).fetchone()
        messages = con.execute("SELECT messages FROM prompts WHERE prompt_id = ?", [pid]).fetchone()[0]
        texts = [con.execute("SELECT content FROM responses WHERE response_id = ?", [r]).fetchone()[0] for r in rids]
    finally:
        con.close()
    item = Item("pairwise", pid, tuple(rids))
    return Shown(item, display_order(login, item.key, rids), login), messages, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--judgements-per-item", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=12, help="rounds; each times 5 prefkit submits and 1 naive")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads for both sides")
    ap.add_argument("--team", action="store_true", help="the queue benchmark (bench/app_team.py) instead")
    args, rest = ap.parse_known_args()
    if args.team:
        from bench.app_team import main as team

        return team(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_store(Path(tmp) / "store", args.items, args.judgements_per_item)
        print(
            f"store: {args.items:,} items, {args.items * args.judgements_per_item:,} judgements "
            f"(built in {time.perf_counter() - t0:.1f} s)"
        )
        project = Project(name="bench", tasks=[Task("pairwise", K)], min_seconds=0.0)
        t0 = time.perf_counter()
        board = Board(store, project)
        print(f"prefkit app start-up (index + texts, once per process): {time.perf_counter() - t0:.1f} s")

        fast, slow = [], []
        shown = board.show("bencher", "pairwise")
        naive_shown, _, _ = naive_next(store, "naive", project)
        for _ in range(args.rounds):
            for _ in range(5):
                t = time.perf_counter()
                board.submit(shown, submit.pairwise(project, shown, "A"))
                shown = board.show("bencher", "pairwise")
                board.content.messages(shown.item.prompt_id)
                [board.content.text(r) for r in shown.order]
                fast.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.append("judgements", submit.pairwise(project, naive_shown, "A"))
            naive_shown, _, _ = naive_next(store, "naive", project)
            slow.append(time.perf_counter() - t)
        f, s = statistics.median(fast) * 1000, statistics.median(slow) * 1000
        print(f"\nsubmit → next item, median over {len(fast)} / {len(slow)} submissions:")
        print(f"  prefkit (index + leases)   {f:8.1f} ms   (p90 {np.percentile(fast, 90) * 1000:.1f} ms)")
        print(f"  naive (rescan the store)   {s:8.1f} ms")
        print(
            f"  ratio naive / prefkit      {s / f:8.1f} ×   (target: prefkit median ≤ 100 ms: "
            f"{'met' if f <= 100 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
