"""Reading exported datasets, the prompt/completion boundary, KTO unpairing, micro-batch planning."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from prefkit.train.batching import collate, example_tokens, plan_micro_batches
from prefkit.train.data import (
    Completion,
    DataError,
    Pair,
    Tokenise,
    build_examples,
    check_kto_weights,
    kl_partners,
    load_splits,
    unpair,
)
from prefkit.train.methods import METHODS

from tests.support.tiny_model import make_tokenizer, vocabulary_from
from tests.train.synth import BAD, GOOD, TOPIC, pairs, save_dataset, unpaired


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer(GOOD + BAD + TOPIC)


def _with_bos_everywhere(tok):
    """A tokenizer that adds BOS itself and a template that writes BOS too: the classic doubled-BOS trap."""
    from tokenizers import processors

    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    return tok


def test_plain_text_boundary_keeps_first_completion_token_and_one_eos(tok):
    p, c = Tokenise(tok)("red blue", "sun tree")
    assert tok.convert_ids_to_tokens(c) == ["sun", "tree", "</s>"]
    assert tok.convert_ids_to_tokens(p) == ["red", "blue"]


def test_chat_template_boundary_and_no_doubled_special_tokens(tok):
    tok = _with_bos_everywhere(make_tokenizer(GOOD + BAD + TOPIC))
    prompt = [{"role": "user", "content": "red blue"}]
    p, c = Tokenise(tok)(prompt, [{"role": "assistant", "content": "sun tree"}])
    assert tok.convert_ids_to_tokens(p) == ["<s>", "<|user|>", "red", "blue", "<|assistant|>"]
    assert tok.convert_ids_to_tokens(c) == ["sun", "tree", "</s>"]  # template's EOS kept once, first token kept
    # plain text through the same tokenizer: its own BOS, added once
    p2, _ = Tokenise(tok)("red blue", "sun")
    assert tok.convert_ids_to_tokens(p2) == ["<s>", "red", "blue"]


def test_truncation_keeps_prompt_end_and_completion_start(tok):
    p, c = Tokenise(tok, max_length=5, max_prompt_length=3)("red blue green gold", "sun tree river bird")
    assert tok.convert_ids_to_tokens(p) == ["blue", "green", "gold"]
    assert tok.convert_ids_to_tokens(c) == ["sun", "tree"]


def test_loads_save_to_disk_and_parquet_layouts(tmp_path):
    save_dataset(tmp_path / "disk", pairs(6, 0), pairs(2, 1))
    assert load_splits(tmp_path / "disk")["train"].num_rows == 6
    (tmp_path / "hub" / "data").mkdir(parents=True)
    Dataset.from_list(pairs(5, 0)).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    Dataset.from_list(pairs(3, 1)).to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    splits = load_splits(tmp_path / "hub")
    assert splits["train"].num_rows == 5 and splits["test"].num_rows == 3
    with pytest.raises(DataError, match="no dataset here"):
        load_splits(tmp_path)


def test_unpaired_data_for_a_paired_method_says_use_kto(tok):
    with pytest.raises(DataError, match="use `kto`"):
        build_examples(unpaired(3, 0), METHODS["dpo"], Tokenise(tok), batch_size=2, seed=0)


def test_kto_unpairs_preference_rows_and_shuffles_so_batches_mix(tok):
    rows = unpair(pairs(40, 0), seed=0)
    labels = [r["label"] for r in rows]
    assert sum(labels) == 40
    assert labels != [True, False] * 40  # shuffled after unpairing
    batches = [labels[i : i + 8] for i in range(0, 80, 8)]
    assert sum(1 for b in batches if 0 < sum(b) < 8) >= 8
    examples = build_examples(pairs(8, 0), METHODS["kto"], Tokenise(tok), batch_size=4, seed=0)
    # the KL rows of a batch of 4 are that batch's own completions, each moved to another prompt
    for start in (0, 4):
        group = examples[start : start + 4]
        assert sorted(e.kl_completion for e in group) == sorted(e.completion for e in group)
        assert all(e.kl_completion != e.completion for e in group)


def _answers(rows: list[dict], tokenise: Tokenise) -> tuple[dict, dict]:
    """Independently of the pairing code: prompt tokens → prompt ids, completion tokens → prompt ids it answers."""
    prompt_ids, answered = {}, {}
    for r in rows:
        completions = [r["completion"]] if "completion" in r else [r["chosen"], r["rejected"]]
        for c in completions:
            p_ids, c_ids = tokenise(r["prompt"], c)
            prompt_ids.setdefault(tuple(p_ids), set()).add(r["prompt_id"])
            answered.setdefault(tuple(c_ids), set()).add(r["prompt_id"])
    return prompt_ids, answered


def _same_prompt_kl_rows(examples: list[Completion], rows: list[dict], tokenise: Tokenise) -> int:
    prompt_ids, answered = _answers(rows, tokenise)
    return sum(1 for e in examples if prompt_ids[tuple(e.prompt)] & answered[tuple(e.kl_completion)])


def test_kto_kl_rows_at_batch_4_answer_other_prompts_even_when_rows_come_sorted_by_prompt(tok):
    # an unpaired export keeps curation's order: rows sorted by prompt, a good and a bad completion
    # each (the old pairing took the next row within the batch: mostly the same prompt's other answer)
    rows = [
        {"prompt": r["prompt"], "completion": r[c], "label": c == "chosen", "prompt_id": r["prompt_id"]}
        for r in pairs(10, 0)
        for c in ("chosen", "rejected")
    ][:19]  # 4 full batches of 4, then a final batch of 3
    tokenise = Tokenise(tok)
    examples = build_examples(rows, METHODS["kto"], tokenise, batch_size=4, seed=0)
    assert len(examples) == 19
    assert _same_prompt_kl_rows(examples, rows, tokenise) == 0
    assert all(e.kl_completion != e.completion for e in examples)
    # the run's seed decides the order: the same seed the same examples, another seed another order
    assert build_examples(rows, METHODS["kto"], tokenise, batch_size=4, seed=0) == examples
    assert build_examples(rows, METHODS["kto"], tokenise, batch_size=4, seed=1) != examples


def test_a_batch_of_one_prompt_and_a_final_batch_of_one_borrow_from_other_batches():
    # prompts a a a a | b b b b | c: no batch can pair within itself, the last holds one row
    keys = ["a"] * 4 + ["b"] * 4 + ["c"]
    partner, note = kl_partners(keys, batch_size=4)
    assert all(keys[j] != keys[i] for i, j in enumerate(partner))
    assert partner[8] != 8
    assert note == (
        "KTO: 3 of 3 batches of 4 hold completions of one prompt only; "
        "their KL rows are completions of other prompts from other batches"
    )
    # mixed batches pair within themselves, with no note
    partner, note = kl_partners(["a", "b", "a", "b", "c", "a", "c", "a"], batch_size=4)
    assert note is None
    assert all(j // 4 == i // 4 and j != i for i, j in enumerate(partner))


def test_data_of_one_prompt_warns_once_and_never_uses_an_examples_own_completion(tok):
    rows = [{"prompt": "red blue", "completion": c, "label": i % 2 == 0} for i, c in enumerate(GOOD + BAD)]
    notes: list[str] = []
    examples = build_examples(rows, METHODS["kto"], Tokenise(tok), batch_size=4, seed=0, warn=notes.append)
    assert len(notes) == 1 and "every completion answers the same prompt" in notes[0]
    assert all(e.kl_completion != e.completion for e in examples)  # the next row's, distinct texts


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """`prefkit curate` + `prefkit export` of the demo store, as a user runs them."""
    import shutil

    from prefkit.cli import main

    root = tmp_path_factory.mktemp("demo-export")
    shutil.copytree(Path(__file__).resolve().parents[2] / "data" / "demo", root / "store")
    assert main(["curate", "--store", str(root / "store"), "--out", "demo"]) == 0
    assert main(["export", "demo", "--store", str(root / "store"), "--to", str(root / "export")]) == 0
    return root / "export"


@pytest.mark.parametrize("kind", ["unpaired", "preference"])
@pytest.mark.parametrize("batch_size", [2, 4, 8, 64])
def test_kto_batches_of_the_demo_export_never_take_a_kl_row_of_the_same_prompt(demo_export, kind, batch_size):
    rows = load_splits(demo_export / kind)["train"].to_list()
    texts = [m["content"] for r in rows for k in ("prompt", "completion", "chosen", "rejected") for m in r.get(k) or []]
    tokenise = Tokenise(make_tokenizer(vocabulary_from(texts)))
    examples = build_examples(rows, METHODS["kto"], tokenise, batch_size=batch_size, seed=0)
    assert len(examples) == (len(rows) if kind == "unpaired" else 2 * len(rows))
    assert len({tuple(e.prompt) for e in examples}) > 1
    assert _same_prompt_kl_rows(examples, rows, tokenise) == 0


def test_kto_weight_rule_warns_outside_one_to_four_thirds():
    ex = [Completion([1], [2], i < 2, [2]) for i in range(8)]  # 2 desirable, 6 undesirable
    warning = check_kto_weights(ex, 1.0, 1.0)
    assert warning and "[1, 4/3]" in warning and "--undesirable-weight 0.33" in warning
    assert check_kto_weights(ex, 1.0, 1 / 3) is None


def test_token_budget_never_splits_a_pair_and_respects_the_budget():
    ex = [Pair([1] * p, [2] * c, [3] * r) for p, c, r in [(3, 9, 1), (1, 1, 1), (7, 2, 30), (2, 2, 2), (5, 5, 5)]]
    plans = plan_micro_batches(ex, max_tokens=40)
    assert sorted(i for p in plans for i in p) == list(range(5))
    for p in plans:
        assert len(p) == 1 or sum(example_tokens(ex[i]) for i in p) <= 40
        batch = collate([ex[i] for i in p], packed=True, pad_id=0)
        n = len(p)
        # sequence s and s+n are one example's chosen and rejected: both in this micro-batch
        assert batch.n_seq == 2 * n
        assert batch.lengths[:n].tolist() == [len(ex[i].chosen) for i in p]
        assert batch.lengths[n:].tolist() == [len(ex[i].rejected) for i in p]


def test_collate_targets_are_exactly_the_completion_tokens():
    ex = [Pair([10, 11], [20, 21, 2], [30, 2]), Pair([12], [22, 2], [31, 32, 33, 2])]
    for packed in (False, True):
        b = collate(ex, packed=packed, pad_id=0)
        flat = b.input_ids.reshape(-1)
        completions = [[20, 21, 2], [22, 2], [30, 2], [31, 32, 33, 2]]  # chosen of each, then rejected of each
        assert [b.tgt[b.seg == s].tolist() for s in range(4)] == completions
        assert flat[b.src + 1].tolist() == b.tgt.tolist()  # position t predicts token t+1
        assert b.tokens == 2 * 3 + 5 + 6
        assert b.lengths.tolist() == [3, 2, 2, 4]
        if packed:  # each sequence's positions restart at 0
            pos = b.position_ids.reshape(-1)
            assert all(pos[b.src[b.seg == s][0]].item() == len(ex[s % 2].prompt) - 1 for s in range(4))


def test_datasetdict_extra_columns_are_ignored(tok, tmp_path):
    rows = [{**r, "margin": 2.0, "source": "x"} for r in pairs(4, 0)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "d"))
    ex = build_examples(
        load_splits(tmp_path / "d")["train"].to_list(), METHODS["dpo"], Tokenise(tok), batch_size=2, seed=0
    )
    assert len(ex) == 4 and all(isinstance(t, int) for t in ex[0].chosen)
    assert torch.tensor(ex[0].chosen).dtype == torch.int64
