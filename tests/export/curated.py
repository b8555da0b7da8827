"""Hand-made curated tables (the shapes of curate/tables.py) built from the real PandaLM votes.

The curation here is deliberately simple (majority of three human votes, ties dropped, prompts split
whole by hash) — export only needs rows of the right shape with real, messy text in them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefkit.annotate.ids import prompt_id, response_id
from prefkit.curate.tables import PAIRS, SFT, STEPS, UNPAIRED, curated_dir

ROOT = Path(__file__).resolve().parents[2]
PANDALM = ROOT.parent / "shared/data/pandalm/testset-v1.json"

REPORT = {
    "name": "pandalm",
    "steps": [
        {"step": "dedupe", "in": 999, "out": 990, "dropped": 9, "reason": "duplicate comparison"},
        {"step": "drop_ties", "in": 990, "out": 800, "dropped": 190, "reason": "majority tie"},
    ],
    "agreement": {"unanimous_share": 0.88, "krippendorff_alpha": 0.71},
    "annotators": {"annotator1": 999, "annotator2": 999, "annotator3 <b>|x</b>": 999},
    "judges": [],
    "models": ["bloom-7b", "llama-7b"],
    "length_bias": 0.57,
    "guidelines": {"pandalm": "v1:3871806e"},
    "sources": {"pandalm/testset-v1": 999},
    "future_key_nobody_knows": {"nested": [1, 2]},
}
RECIPE = "name: pandalm\nsteps:\n  - dedupe\n  - aggregate: majority\n  - split: {test: 0.2, by: prompt}\n"


def _messages(rec: dict, system: bool) -> list[dict]:
    user = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
    head = [{"role": "system", "content": "You are a careful writing assistant."}] if system else []
    return head + [{"role": "user", "content": user}]


def _split(pid: str) -> str:
    return "test" if int(hashlib.sha256(pid.encode()).hexdigest(), 16) % 5 == 0 else "train"


def _lineage(rec: dict, pid: str, source: str) -> dict:
    return {
        "judgement_ids": [f"j{rec['idx']}-{k}" for k in (1, 2, 3)],
        "annotators": ["annotator1", "annotator2", "annotator3"],
        "source": source,
        "group_id": pid,
        "split": _split(pid),
    }


def rows(limit: int | None = None, system_every: int = 0) -> dict[str, list[dict]]:
    """Rows of the four curated tables from the first `limit` PandaLM records; every `system_every`-th
    prompt gets a system message (0: none, so every prompt is one user message)."""
    records = json.loads(PANDALM.read_text(encoding="utf-8"))[:limit]
    # Real, messy data: a few responses are JSON numbers or booleans, not strings.
    records = [{**r, "response1": str(r["response1"]), "response2": str(r["response2"])} for r in records]
    out: dict[str, list[dict]] = {"pairs": [], "unpaired": [], "sft": [], "steps": []}
    for i, rec in enumerate(records):
        msgs = _messages(rec, system_every and i % system_every == 0)
        pid = prompt_id(msgs)
        votes = [rec[f"annotator{k}"] for k in (1, 2, 3)]
        ones, twos = votes.count(1), votes.count(2)
        if ones == twos:
            continue  # a tie: no preference
        win, lose = ("response1", "response2") if ones > twos else ("response2", "response1")
        cid, rid = response_id(pid, rec[win]), response_id(pid, rec[lose])
        lin = _lineage(rec, pid, "pandalm/testset-v1")
        out["pairs"].append(
            {
                "pair_id": f"pair{rec['idx']}",
                "prompt_id": pid,
                "prompt": msgs,
                "chosen_id": cid,
                "rejected_id": rid,
                "chosen": rec[win],
                "rejected": rec[lose],
                "aspect": "overall",
                "score_chosen": float(max(ones, twos)),
                "score_rejected": float(min(ones, twos)),
                "margin": float(abs(ones - twos)),
                "agreement": max(ones, twos) / 3,
                "n_votes": 3,
                **lin,
            }
        )
        for rid_, text, label, how in ((cid, rec[win], True, "pair_chosen"), (rid, rec[lose], False, "pair_rejected")):
            out["unpaired"].append(
                {
                    "example_id": f"u{rec['idx']}-{how}",
                    "prompt_id": pid,
                    "prompt": msgs,
                    "response_id": rid_,
                    "completion": text,
                    "label": label,
                    "derived_from": how,
                    **lin,
                }
            )
        out["sft"].append(
            {
                "example_id": f"s{rec['idx']}",
                "prompt_id": pid,
                "messages": msgs + [{"role": "assistant", "content": rec[win]}],
                "response_id": cid,
                "parent_id": None,
                **lin,
            }
        )
        steps = [s for s in re.split(r"(?<=[.!?])\s+", rec[win]) if s] or [rec[win]]
        out["steps"].append(
            {
                "example_id": f"t{rec['idx']}",
                "prompt_id": pid,
                "prompt": msgs,
                "response_id": cid,
                "completions": steps,
                "labels": [(1, 0, -1)[k % 3] for k in range(len(steps))],
                **lin,
            }
        )
    return out


SCHEMAS = {"pairs": PAIRS, "unpaired": UNPAIRED, "sft": SFT, "steps": STEPS}


def write_curation(
    store_root: Path,
    name: str = "pandalm",
    limit: int | None = 60,
    system_every: int = 0,
    tables: tuple[str, ...] = ("pairs", "unpaired", "sft", "steps"),
    report: dict | None = REPORT,
) -> Path:
    """Write `<store_root>/curated/NAME/` with the given tables (exactly curate/tables.py's schemas)."""
    folder = curated_dir(store_root, name)
    folder.mkdir(parents=True, exist_ok=True)
    data = rows(limit, system_every)
    for table in tables:
        pq.write_table(pa.Table.from_pylist(data[table], SCHEMAS[table]), folder / f"{table}.parquet")
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report), encoding="utf-8")
        (folder / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    return folder
