"""The whole loop on a fresh store, as one path: import → two people label in the app (headless
Chromium) → AI generate / judge (both orders) / CLAIR revise against a loopback OpenAI-compatible
server → curate → export → train DPO and KTO → score-pairs.

After every stage the test reads the files and checks that what went in came out: exact counts
where the input fixes them, and lineage from exported rows back to the store's judgements."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_from_disk
from prefkit.annotate.app.project import MIN_ROUNDS, hash_password
from prefkit.annotate.ids import prompt_id, response_id
from prefkit.annotate.store import Store

from prefkit.cli import main
from tests.support import scripted_model
from tests.support.browser import chromium, current_item, log_in, press_until, serve_app
from tests.support.openai_server import OpenAIServer
from tests.support.tiny_model import save_tiny, vocabulary_from

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "data" / "demo-source").glob("*.jsonl"))
PEOPLE = {"alice": "alice's secret", "bob": "bob's secret"}
LABELS_EACH = 3


def prefkit(*argv) -> None:
    assert main([str(a) for a in argv]) == 0, f"prefkit {' '.join(map(str, argv))} failed"


def _source_counts() -> tuple[int, int, int]:
    records = [json.loads(line) for f in SOURCES for line in f.read_text().splitlines() if line.strip()]
    responses = {response_id(prompt_id(r["messages"]), x["content"]) for r in records for x in r["responses"]}
    return len(records), len(responses), len(records)  # one ranking judgement per record


def _label_in_browser(store: Store, tmp: Path) -> None:
    project = tmp / "project.yaml"
    project.write_text(
        yaml.safe_dump(
            {
                "name": "loop",
                "min_seconds": 0,
                "strength": False,
                "tasks": [{"kind": "pairwise", "overlap": 2}],
                "users": [
                    {"login": u, "role": "annotator", "password_hash": hash_password(p, rounds=MIN_ROUNDS)}
                    for u, p in PEOPLE.items()
                ],
            }
        )
    )
    with serve_app(store.root, project) as url, chromium() as browser:
        for login, password in PEOPLE.items():
            page = browser.new_context().new_page()  # a separate session per person
            log_in(page, url, login, password)
            item = current_item(page, "pairwise")
            for _ in range(LABELS_EACH):
                press_until(page, "1", lambda p=page: p.get_by_text("Selected: A is better").is_visible())
                press_until(page, "Enter", lambda p=page, shown=item: current_item(p, "pairwise") != shown)
                item = current_item(page, "pairwise")
            page.context.close()


def test_import_label_ai_curate_export_train_score(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loop-test-key")
    store = Store(tmp_path / "store")
    s = ["--store", store.root]

    # 1. import the demo data into a fresh store
    prefkit("import", *SOURCES, *s)
    n_prompts, n_responses, n_rankings = _source_counts()
    assert (store.count("prompts"), store.count("responses"), store.count("judgements")) == (
        n_prompts,
        n_responses,
        n_rankings,
    )

    # 2. two annotators label in the browser, each in their own session
    _label_in_browser(store, tmp_path)
    human = store.read("judgements", "annotator_type = 'human'").to_pylist()
    assert sorted(r["annotator"] for r in human) == sorted([*PEOPLE] * LABELS_EACH)
    assert all(r["kind"] == "pairwise" and r["status"] == "submitted" and r["scores"] == [1.0, 0.0] for r in human)
    assert len({(r["annotator"], r["prompt_id"]) for r in human}) == len(human), "nobody judged an item twice"

    # 3. AI jobs against the loopback server
    with OpenAIServer(scripted_model.answer, latency=0.0) as server:
        ai = ["--base-url", server.base_url, "--model", "loop-model", "--no-progress", *s]
        before = store.count("responses")
        prefkit("generate", *ai, "-n", "2", "--limit", "4")
        generated = store.read("responses", "origin = 'generated'")
        assert generated.num_rows == 8 and store.count("responses") == before + 8

        prefkit("judge", *ai, "--limit", "6")
        ai_rows = store.read("judgements", "annotator_type = 'ai' AND kind = 'pairwise'").to_pylist()
        orders: dict[str, set[str]] = {}
        for r in ai_rows:
            meta = json.loads(r["metadata"])
            orders.setdefault(meta["order_key"], set()).add(meta["order"])
        assert len(ai_rows) == 12 and all(o == {"ab", "ba"} for o in orders.values()), "both orders of 6 pairs"

        prefkit("revise", *ai, "--clair", "--limit", "3")
        revisions = store.read("judgements", "kind = 'revision'").to_pylist()
        assert len(revisions) == 3, "each attempted revision is a row: accepted, or an error with its reason"
        assert all(r["status"] == "submitted" or r["error"] for r in revisions)
        repeats = server.stats()["repeats_of_ok"]
    assert repeats == 0

    # 4. curate with the default recipe
    prefkit("curate", *s, "--out", "loop")
    curated = store.root / "curated" / "loop"
    pairs = pq.read_table(curated / "pairs.parquet").to_pylist()
    unpaired = pq.read_table(curated / "unpaired.parquet").to_pylist()
    assert pairs and unpaired
    judgement_ids = set(store.read("judgements").column("judgement_id").to_pylist())
    response_ids = set(store.read("responses").column("response_id").to_pylist())
    for p in pairs:
        assert set(p["judgement_ids"]) <= judgement_ids, "every pair traces back to stored judgements"
        assert {p["chosen_id"], p["rejected_id"]} <= response_ids
    annotators = {a for p in pairs for a in p["annotators"]}
    assert set(PEOPLE) <= annotators, "the people's labels made it into pairs"
    assert any(a.startswith("ai:loop-model") for a in annotators), "so did the AI judge's"
    splits = {}
    for p in pairs:
        splits.setdefault(p["prompt_id"], set()).add(p["split"])
    assert all(len(v) == 1 for v in splits.values()), "no prompt in two splits"
    report = json.loads((curated / "report.json").read_text())
    assert sum(report["splits"]["pairs"].values()) == len(pairs)

    # 5. export: the same rows, per split, with lineage
    prefkit("export", "loop", *s, "--to", tmp_path / "export")
    pref = load_from_disk(str(tmp_path / "export" / "preference"))
    kto = load_from_disk(str(tmp_path / "export" / "unpaired"))
    for split, rows in pref.items():
        assert rows.num_rows == sum(p["split"] == split for p in pairs)
    assert sum(d.num_rows for d in kto.values()) == len(unpaired)
    exported_ids = {i for d in pref.values() for i in d["pair_id"]}
    assert exported_ids == {p["pair_id"] for p in pairs}

    # 6. train DPO and KTO for a few steps on a tiny model built here
    texts = [r["content"] for r in store.read("responses").to_pylist()]
    tiny = save_tiny(tmp_path / "tiny", vocabulary_from(texts), hidden=32, layers=2, heads=4)
    for method, data in (("dpo", "preference"), ("kto", "unpaired")):
        run = tmp_path / "runs" / method
        prefkit(
            "train",
            method,
            "--data",
            tmp_path / "export" / data,
            "--model",
            tiny,
            "--out",
            run,
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--threads",
            "2",
        )
        steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert max(r.get("step", 0) for r in steps) == 2
        assert (run / "final" / "config.json").exists()

    # 7. score-pairs sends the pairs the policy disputes back to the store for review
    before = store.count("judgements")
    prefkit("score-pairs", tmp_path / "runs" / "dpo", "--data", tmp_path / "export" / "preference", "--top", "5", *s)
    disputed = store.count("judgements") - before
    total_pairs = sum(d.num_rows for d in pref.values())
    assert disputed == min(5, total_pairs)
    new = store.read("judgements").to_pylist()[-disputed:]
    assert all(set(r["response_ids"]) <= response_ids and r["annotator_type"] == "ai" for r in new)

    # and the API key never reached a file: not the store, the exports, nor the runs
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"sk-loop-test-key" not in path.read_bytes(), path
