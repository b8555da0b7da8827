"""Build the bundled demo store (`data/demo/`) from its readable source (`data/demo-source/*.jsonl`).

Each source line is one prompt:
    {"id": "coding-binary-search", "category": "coding", "messages": [{"role": "user", "content": …}],
     "responses": [{"model": …, "content": …, "rank": 1}, …], "note": "optional, for people"}
with 2–4 responses ranked by the author (1 = best). The build writes one prompt (metadata:
category, demo id), its responses, and one `ranking` judgement by `demo:author` (annotator_type
`import`, scores = −rank) per line, so curation and export have something to work on out of the box.
On top of those it writes a simulated team's work (`prefkit.annotate.demo_team`): five people's
pairwise votes with disagreement, re-votes, skips, fast answers and gold items (one per category,
`metadata.gold.preferred` on the prompt), and an AI judge's verdicts in both orders with confidences.

The build is deterministic: ids are content hashes and every timestamp is fixed, so rebuilding from
the same source gives the same rows (tests/annotate/test_demo_store.py checks the committed store).

    python -m prefkit.annotate.demo_store            # rebuild data/demo from data/demo-source
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prefkit.annotate import demo_team
from prefkit.annotate.contract import ROLES, Judgement, Prompt, Response
from prefkit.annotate.ids import import_judgement_id
from prefkit.annotate.store import TABLES, Store

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "demo-source"
TARGET = ROOT / "data" / "demo"
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # fixed: the build must not depend on when it runs
AUTHOR = "demo:author"


class DemoSourceError(ValueError):
    """A line of the demo source is malformed (the message names file:line and the field)."""


def load_source(folder: Path = SOURCE) -> list[dict]:
    """Every source record, in file-name then line order, checked."""
    items, ids = [], set()
    for path in sorted(folder.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DemoSourceError(f"{where}: bad JSON ({exc.msg})") from None
            _check(item, where)
            if item["id"] in ids:
                raise DemoSourceError(f"{where}: field 'id': {item['id']!r} is used twice; ids must be unique")
            ids.add(item["id"])
            items.append(item)
    return items


def _check(item: dict, where: str) -> None:
    for name, kind in (("id", str), ("category", str), ("messages", list), ("responses", list)):
        if not isinstance(item.get(name), kind) or not item[name]:
            raise DemoSourceError(f"{where}: field '{name}': missing or not a non-empty {kind.__name__}")
    if any(m.get("role") not in ROLES or not str(m.get("content", "")).strip() for m in item["messages"]):
        raise DemoSourceError(f"{where}: field 'messages': each needs a role in {ROLES} and text")
    if item["messages"][-1]["role"] != "user":
        raise DemoSourceError(f"{where}: field 'messages': the last turn must be the user's")
    if not 2 <= len(item["responses"]) <= 4:
        raise DemoSourceError(f"{where}: field 'responses': give 2–4 responses")
    ranks = [r.get("rank") for r in item["responses"]]
    if sorted(ranks) != list(range(1, len(ranks) + 1)):
        raise DemoSourceError(f"{where}: field 'rank': ranks must be 1..{len(ranks)}, each once")


def build_rows(items: list[dict]) -> tuple[list[Prompt], list[Response], list[Judgement]]:
    """Contract rows for the source records and the simulated team's judgements; timestamps step
    from EPOCH so order is stable."""
    prompts, responses, judgements = [], [], []
    for i, item in enumerate(items):
        at = EPOCH + timedelta(minutes=i)
        meta = {"category": item["category"], "demo_id": item["id"]}
        p = Prompt(
            messages=item["messages"],
            source="prefkit-demo",
            metadata=json.dumps(meta, ensure_ascii=False, sort_keys=True),
            created_at=at,
        )
        prompts.append(p)
        shown = [
            Response(
                prompt_id=p.prompt_id, content=r["content"], model=r["model"], created_at=at + timedelta(seconds=1)
            )
            for r in item["responses"]
        ]
        responses += shown
        judgements.append(
            Judgement(
                judgement_id=import_judgement_id(item, AUTHOR),
                prompt_id=p.prompt_id,
                kind="ranking",
                annotator=AUTHOR,
                annotator_type="import",
                response_ids=[r.response_id for r in shown],
                scores=[-float(r["rank"]) for r in item["responses"]],
                rationale=item.get("note", ""),
                guidelines="demo author's reference ranking",
                created_at=at + timedelta(seconds=2),
            )
        )
    demo_team.mark_gold(items, prompts, responses)
    return prompts, responses, judgements + demo_team.team_rows(items, prompts, responses)


def build(target: Path = TARGET, source: Path = SOURCE) -> dict[str, int]:
    """Replace the tables under `target` with a fresh build of `source`. Returns rows per table."""
    prompts, responses, judgements = build_rows(load_source(source))
    for table in TABLES:
        shutil.rmtree(target / table, ignore_errors=True)
    store = Store(target)
    with store.batch() as batch:
        batch.append("prompts", prompts)
        batch.append("responses", responses)
        batch.append("judgements", judgements)
    return {"prompts": len(prompts), "responses": len(responses), "judgements": len(judgements)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the demo store from its source.")
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of *.jsonl source files")
    parser.add_argument("--out", type=Path, default=TARGET, help="the store folder to (re)write")
    args = parser.parse_args(argv)
    counts = build(args.out, args.source)
    print(f"{args.out}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
