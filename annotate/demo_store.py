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
Last come the rows `prefkit score-pairs` wrote for one real, recorded `prefkit demo` training run
(`recorded-run/score-pairs.jsonl`, made by `--record`; see recorded-run/README.md), so the app's
Training runs page has a run and its disputed pairs before the user trains one.

The build is deterministic: ids are content hashes and every timestamp is fixed, so rebuilding from
the same source gives the same rows (tests/annotate/test_demo_store.py checks the committed store).

    python -m prefkit.annotate.demo_store            # rebuild data/demo from data/demo-source
    python -m prefkit.annotate.demo_store --record RUN STORE   # keep a run's small files and its
                                                     # score-pairs rows as data/demo-source/recorded-run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prefkit.annotate import demo_team
from prefkit.annotate.contract import ROLES, Judgement, Prompt, Response
from prefkit.annotate.ids import import_judgement_id
from prefkit.annotate.store import TABLES, Store

from prefkit import files

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "demo-source"
TARGET = ROOT / "data" / "demo"
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # fixed: the build must not depend on when it runs
AUTHOR = "demo:author"
RECORDED = "recorded-run"  # under the source: one real run's small files and its score-pairs rows
SCORE_PAIRS = "score-pairs.jsonl"
RUN_FILES = ("metrics.jsonl", "config.yaml")  # the curves and the settings; not the weights (final/, checkpoint/)


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


def load_recorded(path: Path, prompts: list[Prompt], responses: list[Response]) -> list[Judgement]:
    """The recorded score-pairs judgements, each checked to name a prompt and responses of this build
    (they were written on a copy of this same store; an edited source that changes ids breaks them)."""
    if not path.is_file():
        return []
    names = {f.name for f in dataclasses.fields(Judgement)}
    known = {r.response_id: r.prompt_id for r in responses}
    prompt_ids = {p.prompt_id for p in prompts}
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
            row["created_at"] = datetime.fromisoformat(row["created_at"])
            j = Judgement(**row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DemoSourceError(f"{where}: not a judgement row ({exc}); fields are {sorted(names)}") from None
        if j.prompt_id not in prompt_ids or any(known.get(r) != j.prompt_id for r in j.response_ids):
            raise DemoSourceError(
                f"{where}: field 'response_ids': not responses of prompt {j.prompt_id} in this build; "
                "the demo source changed since the run was recorded: record a new run (recorded-run/README.md)"
            )
        rows.append(j)
    return rows


def record(run: Path, store: Path, to: Path = SOURCE / RECORDED) -> dict[str, int]:
    """Keep `run`'s small files (no weights) under `to`/<run name>/ and the judgements `prefkit
    score-pairs` wrote for it into `store` as `to`/score-pairs.jsonl. Returns bytes per file kept."""
    annotator = f"ai:{run.resolve().name}:implicit-reward"
    rows = Store(store, create=False).read(
        "judgements", "annotator = ? AND json_extract_string(metadata, '$.source') = 'score-pairs'", [annotator]
    )
    if not rows.num_rows:
        raise DemoSourceError(f"{store}: no score-pairs judgements by {annotator}; run `prefkit score-pairs {run} …`")
    names = [f.name for f in dataclasses.fields(Judgement)]
    lines = [
        json.dumps({k: r[k].isoformat() if k == "created_at" else r[k] for k in names}, ensure_ascii=False)
        for r in sorted(rows.to_pylist(), key=lambda r: (json.loads(r["metadata"])["margin"], r["judgement_id"]))
    ]
    kept = {}
    (to / run.name).mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            files.write_bytes(to / run.name / name, (run / name).read_bytes())
            kept[f"{run.name}/{name}"] = (run / name).stat().st_size
    if "metrics.jsonl" not in {k.split("/")[-1] for k in kept}:
        raise DemoSourceError(f"{run}: no metrics.jsonl; give a training run folder")
    files.write_text(to / SCORE_PAIRS, "\n".join(lines) + "\n")
    kept[SCORE_PAIRS] = (to / SCORE_PAIRS).stat().st_size
    return kept


def build(target: Path = TARGET, source: Path = SOURCE) -> dict[str, int]:
    """Replace the tables under `target` with a fresh build of `source`. Returns rows per table."""
    prompts, responses, judgements = build_rows(load_source(source))
    judgements += load_recorded(source / RECORDED / SCORE_PAIRS, prompts, responses)
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
    parser.add_argument(
        "--record",
        nargs=2,
        type=Path,
        metavar=("RUN", "STORE"),
        help="first keep a training run's small files and its score-pairs rows in STORE under SOURCE/recorded-run",
    )
    args = parser.parse_args(argv)
    if args.record:
        for name, size in record(*args.record, to=args.source / RECORDED).items():
            print(f"{args.source / RECORDED / name}: {size} bytes")
    counts = build(args.out, args.source)
    print(f"{args.out}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
