"""What `--push-to-hub` would send (files and card), checked offline: the plan is exactly what the push executes."""

import pytest
from prefkit.export import ExportError, export_curated
from prefkit.export.card import parse
from prefkit.export.hub import plan_push, push_to_hub

from tests.export.curated import write_curation


def test_dry_run_of_all_formats_lists_one_config_per_format(exported, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_never_written")
    root, result = exported
    plan = push_to_hub(root / "out", "alice/pandalm-prefs", dry_run=True)
    assert [c.config_name for c in plan.calls] == ["preference", "unpaired", "sft", "stepwise"]
    expected = ["README.md"]
    for fmt in result.formats:
        local = sorted(p.name for p in (root / "out" / fmt / "data").glob("*.parquet"))
        expected += [f"{fmt}/{name}" for name in local]
    assert sorted(plan.files) == sorted(expected)
    meta, body = parse(plan.card)
    assert [c["config_name"] for c in meta["configs"]] == ["preference", "unpaired", "sft", "stepwise"]
    assert meta["configs"][0]["default"] is True
    assert meta["configs"][0]["data_files"] == [
        {"split": "train", "path": "preference/train-*"},
        {"split": "test", "path": "preference/test-*"},
    ]
    counts = {i["config_name"]: {s["name"]: s["num_examples"] for s in i["splits"]} for i in meta["dataset_info"]}
    assert counts == {fmt: fr.splits for fmt, fr in result.formats.items()}
    assert {"dpo", "kto", "prm"} <= set(meta["tags"])
    assert "### Agreement" in body
    assert "hf_secret_never_written" not in plan.card + repr(plan)


def test_single_format_keeps_the_local_layout(tmp_path):
    write_curation(tmp_path / "store", limit=20, tables=("pairs",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    plan = push_to_hub(tmp_path / "out", "alice/p", dry_run=True)
    (call,) = plan.calls
    assert (call.config_name, call.data_dir, call.num_shards) == ("default", "data", {"train": 1, "test": 1})
    assert sorted(plan.files) == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]
    meta, _ = parse(plan.card)
    local, _ = parse((tmp_path / "out/preference/README.md").read_text())
    assert meta["configs"] == local["configs"] and meta["dataset_info"] == local["dataset_info"]


def test_push_without_token_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    with pytest.raises(ExportError, match="set HF_TOKEN"):
        push_to_hub(tmp_path / "out", "alice/p")


def test_bad_repo_id_and_empty_folder(tmp_path):
    with pytest.raises(ExportError, match="not a Hub repo id"):
        plan_push(tmp_path, "no-namespace")
    with pytest.raises(ExportError, match="no exported formats under"):
        plan_push(tmp_path, "alice/p")


def test_the_push_calls_fit_the_installed_libraries(exported):
    """The arguments the real push passes bind to the installed `datasets` and `huggingface_hub` signatures,
    and the shard counts given to `datasets` reproduce the file names of the plan."""
    import inspect

    from datasets import DatasetDict, load_from_disk
    from huggingface_hub import HfApi
    from prefkit.export.hub import card_upload_kwargs, push_kwargs

    root, _ = exported
    plan = plan_push(root / "out", "alice/p")
    for i, call in enumerate(plan.calls):
        dd = load_from_disk(str(call.path))
        inspect.signature(DatasetDict.push_to_hub).bind(dd, plan.repo_id, **push_kwargs(call, i == 0, None, "t"))
        names = {
            f"{call.data_dir}/{s}-{k:05d}-of-{n:05d}.parquet" for s, n in call.num_shards.items() for k in range(n)
        }
        assert names <= set(plan.files) and set(call.num_shards) == set(dd)
    inspect.signature(HfApi.upload_file).bind(HfApi(), **card_upload_kwargs(plan))
