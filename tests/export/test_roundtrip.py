"""Each exported format loads with `load_from_disk` and with `load_dataset("parquet", data_dir=…)`, identically."""

import json

import pyarrow.parquet as pq
import pytest
from datasets import Features, List, Value, load_dataset, load_from_disk
from prefkit.export import export_curated

from tests.export.curated import rows, write_curation

MESSAGES = List({"role": Value("string"), "content": Value("string")})


def _both(folder, cache):
    return load_from_disk(str(folder)), load_dataset("parquet", data_dir=str(folder / "data"), cache_dir=str(cache))


@pytest.mark.parametrize("fmt", ["preference", "unpaired", "sft", "stepwise"])
def test_every_format_round_trips_through_both_loaders(exported, fmt, tmp_path):
    root, result = exported
    disk, hub = _both(root / "out" / fmt, tmp_path)
    assert list(disk) == list(hub) == ["train", "test"]
    for split in disk:
        assert disk[split].num_rows == hub[split].num_rows == result.formats[fmt].splits[split] > 0
        assert disk[split].features == hub[split].features
        assert disk[split].to_list() == hub[split].to_list()


def test_column_names_and_types_are_trls(exported):
    root, _ = exported
    pref = load_from_disk(str(root / "out/preference"))["train"]
    assert pref.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert {"prompt_id", "score_chosen", "score_rejected", "margin", "agreement", "n_votes", "source"} <= set(
        pref.column_names
    )
    assert pref.features["prompt"] == Value("string") and pref.features["n_votes"] == Value("int32")
    unpaired = load_from_disk(str(root / "out/unpaired"))["train"]
    assert unpaired.features["label"] == Value("bool") and unpaired.column_names[:3] == [
        "prompt",
        "completion",
        "label",
    ]
    assert set(unpaired["label"]) == {True, False}
    sft = load_from_disk(str(root / "out/sft"))["train"]
    assert sft.features["messages"] == MESSAGES
    steps = load_from_disk(str(root / "out/stepwise"))["train"]
    assert steps.features["labels"] == List(Value("bool")) and steps.features["completions"] == List(Value("string"))


def test_standard_prompt_is_the_user_message_and_rows_keep_their_values(exported):
    root, _ = exported
    source = {r["pair_id"]: r for r in rows(60)["pairs"]}
    disk = load_from_disk(str(root / "out/preference"))
    for split in disk:
        for row in disk[split]:
            want = source[row["pair_id"]]
            assert want["split"] == split
            assert row["prompt"] == want["prompt"][0]["content"]
            assert (row["chosen"], row["rejected"]) == (want["chosen"], want["rejected"])
            assert (row["score_chosen"], row["margin"], row["n_votes"]) == (
                want["score_chosen"],
                want["margin"],
                want["n_votes"],
            )


def test_conversational_prompts_become_message_lists(exported_conversational, tmp_path):
    root, result = exported_conversational
    assert result.formats["preference"].conversational and result.formats["unpaired"].conversational
    disk, hub = _both(root / "out/preference", tmp_path)
    for ds in (disk["train"], hub["train"]):
        assert ds.features["prompt"] == ds.features["chosen"] == ds.features["rejected"] == MESSAGES
    source = {r["pair_id"]: r for r in rows(60, system_every=3)["pairs"]}
    for row in disk["train"]:
        want = source[row["pair_id"]]
        assert row["prompt"] == want["prompt"]
        assert row["chosen"] == [{"role": "assistant", "content": want["chosen"]}]
        assert row["rejected"] == [{"role": "assistant", "content": want["rejected"]}]
    assert any(r["prompt"][0]["role"] == "system" for r in disk["train"])
    unpaired = load_from_disk(str(root / "out/unpaired"))["train"]
    assert unpaired.features["completion"] == MESSAGES


def test_conversational_can_be_forced(tmp_path):
    write_curation(tmp_path / "store", limit=20, tables=("pairs",))
    result = export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "preference", conversational=True)
    assert result.formats["preference"].conversational
    row = load_from_disk(str(tmp_path / "out/preference"))["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["user"] and row["chosen"][0]["role"] == "assistant"


@pytest.mark.parametrize("neutral_is_good", [True, False])
def test_step_labels_map_to_booleans_with_neutral_as_asked(tmp_path, neutral_is_good):
    write_curation(tmp_path / "store", limit=30, tables=("steps",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "stepwise", neutral_is_good=neutral_is_good)
    source = {r["example_id"]: r for r in rows(30)["steps"]}
    ds = load_from_disk(str(tmp_path / "out/stepwise"))
    seen = set()
    for split in ds:
        for row in ds[split]:
            want = source[row["example_id"]]
            assert row["completions"] == want["completions"]
            assert row["labels"] == [x == 1 or (x == 0 and neutral_is_good) for x in want["labels"]]
            seen |= set(want["labels"])
    assert seen == {-1, 0, 1}
    card = (tmp_path / "out/stepwise/README.md").read_text(encoding="utf-8")
    assert f"a neutral one (0) `{str(neutral_is_good).lower()}`" in card


def test_jsonl_holds_the_same_rows(exported):
    root, _ = exported
    for fmt in ("preference", "stepwise"):
        disk = load_from_disk(str(root / "out" / fmt))
        for split in disk:
            lines = (root / "out" / fmt / "jsonl" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            assert [json.loads(line) for line in lines] == disk[split].to_list()


def test_large_splits_are_sharded_in_order(tmp_path):
    write_curation(tmp_path / "store", limit=200, tables=("pairs",))
    result = export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "preference", shard_bytes=20_000)
    shards = sorted((tmp_path / "out/preference/data").glob("train-*.parquet"))
    assert len(shards) > 2
    assert all(s.name.endswith(f"-of-{len(shards):05d}.parquet") for s in shards)
    assert sum(pq.read_metadata(s).num_rows for s in shards) == result.formats["preference"].splits["train"]
    disk, hub = _both(tmp_path / "out/preference", tmp_path / "cache")
    assert hub["train"]["pair_id"] == disk["train"]["pair_id"]
    expected = [r["pair_id"] for r in rows(200)["pairs"] if r["split"] == "train"]
    assert disk["train"]["pair_id"] == expected


def test_features_in_the_saved_dataset_equal_the_cards(exported):
    import yaml

    root, _ = exported
    card = (root / "out/sft/README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n")[1])
    features = Features._from_yaml_list(meta["dataset_info"]["features"])
    assert features == load_from_disk(str(root / "out/sft"))["train"].features


def test_saved_layout_matches_what_datasets_save_to_disk_writes(exported, tmp_path):
    """The DatasetDict is written in the same pass as the Parquet shards; it must be what `save_to_disk` writes."""
    from datasets import DatasetDict

    root, _ = exported
    for fmt in ("preference", "stepwise"):
        ours_path = root / "out" / fmt
        ours = load_from_disk(str(ours_path))
        theirs_path = tmp_path / fmt
        DatasetDict({s: d.flatten_indices() for s, d in ours.items()}).save_to_disk(str(theirs_path))
        theirs = load_from_disk(str(theirs_path))
        assert json.loads((ours_path / "dataset_dict.json").read_text()) == json.loads(
            (theirs_path / "dataset_dict.json").read_text()
        )
        for split in ours:
            assert ours[split].features == theirs[split].features
            assert ours[split].info.features == theirs[split].info.features
            assert ours[split].to_list() == theirs[split].to_list()
            state = json.loads((ours_path / split / "state.json").read_text())
            their_state = json.loads((theirs_path / split / "state.json").read_text())
            assert set(state) == set(their_state)
            assert {k: v for k, v in state.items() if k != "_fingerprint"} == {
                k: v for k, v in their_state.items() if k != "_fingerprint"
            }
            ours_info = json.loads((ours_path / split / "dataset_info.json").read_text())
            their_info = json.loads((theirs_path / split / "dataset_info.json").read_text())
            assert ours_info["features"] == their_info["features"]
