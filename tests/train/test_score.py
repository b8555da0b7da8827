"""`prefkit score-pairs` finds mislabelled pairs; `prefkit score` rates the store's responses with a reward model."""

from pathlib import Path

import pytest
import torch
from prefkit.annotate.contract import Prompt, Response
from prefkit.annotate.ids import response_id
from prefkit.annotate.store import Store
from prefkit.curate import curate
from prefkit.export import export_curated

from prefkit.cli import main
from prefkit.score import score_pairs
from tests.curate.helpers import make_store, prompt, recipe, response, vote
from tests.train.synth import pairs, save_dataset, tiny_model

torch.set_num_threads(1)


def _store_with(rows: list[dict], path: Path) -> Store:
    store = Store(path)
    prompts, responses = {}, {}
    for r in rows:
        p = Prompt(messages=[{"role": "user", "content": r["prompt"]}], source="test")
        prompts[p.prompt_id] = p
        for content in (r["chosen"], r["rejected"]):
            resp = Response(prompt_id=p.prompt_id, content=content)
            responses[resp.response_id] = resp
    store.append("prompts", list(prompts.values()))
    store.append("responses", list(responses.values()))
    return store


def _score_pairs(d: Path, tmp_path: Path, *flags: str) -> int:
    """`prefkit score-pairs` on the fixture's DPO run over its training split."""
    argv = ["score-pairs", str(d / "dpo"), "--data", str(d / "data"), "--split", "train", *flags]
    return main([*argv, "--store", str(tmp_path / "store")])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("score")
    tiny_model(d / "model")
    clean = pairs(96, 0)
    flipped = [
        {**r, "chosen": r["rejected"], "rejected": r["chosen"], "prompt_id": f"f{i}"} for i, r in enumerate(pairs(6, 7))
    ]
    rows = [{k: v for k, v in r.items() if k != "prompt_id"} for r in clean + flipped]  # ids come from content
    save_dataset(d / "data", rows, pairs(8, 1))
    common = [
        "--data",
        str(d / "data"),
        "--model",
        str(d / "model"),
        "--lr",
        "5e-3",
        "--max-steps",
        "20",
        "--ref-cache-dir",
        str(d / "cache"),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(["train", "dpo", *common, "--out", str(d / "dpo")]) == 0
    assert main(["train", "rm", *common, "--out", str(d / "rm")]) == 0
    return d, rows, flipped


def test_score_pairs_writes_the_mislabelled_pairs_as_ai_judgements(setup, tmp_path, capsys):
    d, rows, flipped = setup
    store = _store_with(rows, tmp_path / "store")
    assert _score_pairs(d, tmp_path, "--top", "6", "--below", "0") == 0
    # This dataset has no chosen_id/rejected_id: the ids are re-hashed from the text, and the command says so.
    (notice,) = [line for line in capsys.readouterr().err.splitlines() if "re-hashed" in line]
    assert notice.startswith("prefkit score-pairs: ") and "Re-run `prefkit export`" in notice
    got = (
        store.connect()
        .execute(
            "SELECT r.content, j.scores, j.annotator_type, j.kind, j.metadata FROM judgements j "
            "JOIN responses r ON r.response_id = j.response_ids[1]"
        )
        .fetchall()
    )
    assert len(got) == 6
    assert {c for c, *_ in got} == {r["chosen"] for r in flipped}  # exactly the flipped pairs
    assert all(s == [0.0, 1.0] and t == "ai" and k == "pairwise" for _, s, t, k, _ in got)
    assert all('"margin": -' in meta for *_, meta in got)
    # idempotent: running again adds no new judgement
    assert _score_pairs(d, tmp_path, "--top", "6") == 0
    assert store.count("judgements") == 6
    # --below 0 keeps only real disagreements: asking for 20 still gives the 6 mislabelled pairs
    assert _score_pairs(d, tmp_path, "--top", "20", "--below", "0") == 0
    assert store.count("judgements") == 6
    # without it, --top K pairs with the lowest margins, agreements recorded as the model's preference
    assert _score_pairs(d, tmp_path, "--top", "10") == 0
    rows = store.read("judgements").to_pylist()
    assert len(rows) == 10 and sum(r["scores"] == [1.0, 0.0] for r in rows) == 4


def test_score_pairs_without_ids_in_the_data_rehashes_and_says_so(setup, tmp_path):
    d, rows, flipped = setup
    store = _store_with(rows, tmp_path / "store")
    notices: list[str] = []
    written = score_pairs(store, d / "dpo", d / "data", top=6, split="train", below=0, notice=notices.append)
    stored = set(store.read("responses")["response_id"].to_pylist())
    assert len(written) == 6 and all(set(j.response_ids) <= stored for j in written)  # stored under that prompt
    (line,) = notices
    assert f"{len(rows)} of {len(rows)} pairs have no chosen_id and rejected_id" in line
    assert "Re-run `prefkit export`" in line and "\n" not in line


def test_score_pairs_on_an_export_uses_its_ids_where_rehashing_gives_other_ones(setup, tmp_path):
    """Store → curate → export → score-pairs. The first two prompts are equal after normalisation, so
    curation merges the second onto the first: the responses stored under the second keep ids that
    hash the second prompt, while the export names the first. Every pair here is labelled against
    what the policy learned (BAD words chosen), so each is written back, naming the store's responses."""
    d, _, _ = setup
    first, second, other = prompt("red blue", minute=0), prompt("Red  blue", minute=1), prompt("green gold", minute=2)
    a, b = response(second, "sun tree bird"), response(second, "ash rust smoke")
    c, e = response(other, "river stone"), response(other, "mud fog")
    store = make_store(
        tmp_path / "store", [first, second, other], [a, b, c, e], [vote(second, a, b, "b"), vote(other, c, e, "b")]
    )
    curate(store, recipe("dedupe", "votes", {"binarise": {"pairs": "comparisons"}}, {"split": {"test_size": 0}}), "x")
    export_curated(tmp_path / "store", "x", tmp_path / "export", "preference")
    assert response_id(first.prompt_id, b.content) != b.response_id  # re-hashing would miss the stored response

    notices: list[str] = []
    written = score_pairs(store, d / "dpo", tmp_path / "export" / "preference", top=5, below=0, notice=notices.append)
    got = sorted(j.response_ids for j in written)
    assert got == sorted([[b.response_id, a.response_id], [e.response_id, c.response_id]])
    assert notices == []  # the export has its ids: nothing re-hashed
    assert all(j.scores == [0.0, 1.0] for j in written)
    # The judgements join the store's responses, as the review page reads them.
    joined = (
        store.connect()
        .execute(
            "SELECT c.content, r.content FROM judgements j JOIN responses c ON c.response_id = j.response_ids[1] "
            "JOIN responses r ON r.response_id = j.response_ids[2] WHERE j.kind = 'pairwise' AND j.annotator_type = 'ai'"
        )
        .fetchall()
    )
    assert sorted(joined) == [("ash rust smoke", "sun tree bird"), ("mud fog", "river stone")]


def test_score_rates_responses_with_the_reward_model(setup, tmp_path):
    d, rows, _ = setup
    clean = rows[:20]
    store = _store_with(clean, tmp_path / "store")
    assert main(["score", "--model", str(d / "rm" / "final"), "--store", str(tmp_path / "store")]) == 0
    n_responses = store.count("responses")
    scored = dict(
        store.connect()
        .execute(
            "SELECT r.content, j.scores[1] FROM judgements j JOIN responses r ON r.response_id = j.response_ids[1] "
            "WHERE j.kind = 'rating' AND j.annotator_type = 'ai'"
        )
        .fetchall()
    )
    assert store.count("judgements") == n_responses >= 36
    wins = sum(scored[r["chosen"]] > scored[r["rejected"]] for r in clean)
    assert wins >= 18
    assert main(["score", "--model", str(d / "rm" / "final"), "--store", str(tmp_path / "store")]) == 0
    assert store.count("judgements") == n_responses  # nothing new to score


def test_score_pairs_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["score-pairs", str(tmp_path), "--data", str(tmp_path), "--store", str(tmp_path / "s")]) == 1
    assert "not a prefkit train run folder" in capsys.readouterr().err


def test_a_pair_exported_once_per_aspect_is_one_disputed_judgement():
    """An export holds a comparison once per aspect (the demo store's people answer three): the same
    chosen/rejected ids with the same margin. One judgement per pair, or the store refuses the batch
    (one id twice); `top` counts distinct pairs."""
    from prefkit.annotate.validate import to_table, validate_table

    from prefkit.score import disagreement_judgements

    def margin(i: int, m: float, aspect: str) -> dict:
        row = {"prompt_id": f"p{i}", "chosen_id": f"c{i}", "rejected_id": f"r{i}", "aspect": aspect}
        return {"row": row, "margin": m, "split": "train", "index": i, "chosen_reward": m, "rejected_reward": 0.0}

    margins = [margin(i, m, a) for i, m in enumerate([-2.0, -1.0, 0.5]) for a in ("overall", "helpfulness")]
    out = disagreement_judgements(margins, "run", top=2)
    assert [j.response_ids for j in out] == [["c0", "r0"], ["c1", "r1"]]
    validate_table("judgements", to_table("judgements", out))  # the old code's two rows per pair failed here
    assert len(disagreement_judgements(margins, "run", top=10)) == 3
