"""The dataset card: its YAML parses, its counts equal the rows written, its body comes from the report."""

import pytest
from datasets import load_from_disk

from export import ExportError, export_curated
from export.card import parse, size_category
from tests.export.curated import REPORT, write_curation


@pytest.mark.parametrize("fmt", ["preference", "unpaired", "sft", "stepwise"])
def test_card_yaml_parses_and_counts_equal_exported_rows(exported, fmt):
    root, result = exported
    folder = root / "out" / fmt
    meta, body = parse((folder / "README.md").read_text(encoding="utf-8"))
    ds = load_from_disk(str(folder))
    splits = {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]}
    assert splits == {name: d.num_rows for name, d in ds.items()} == result.formats[fmt].splits
    assert meta["size_categories"] == [size_category(sum(splits.values()))]
    assert meta["license"] == "other" and "prefkit" in meta["tags"] and meta["task_categories"]
    # Every config's data_files glob matches the shards on disk.
    (config,) = meta["configs"]
    for entry in config["data_files"]:
        assert list(folder.glob(entry["path"] + ".parquet")), entry
    for split, n in splits.items():
        assert f"| default | {split} | {n} |" in body


def test_card_body_comes_from_the_report_and_is_inert(exported):
    root, _ = exported
    _, body = parse((root / "out/preference/README.md").read_text(encoding="utf-8"))
    for title in ("Curation steps", "Agreement", "Annotators", "Models", "Length bias", "Sources", "Recipe"):
        assert f"### {title}" in body
    assert "| drop_ties | 990 | 800 | 190 | majority tie |" in body
    assert "0.57" in body and "krippendorff_alpha" in body and "aggregate: majority" in body
    # Report text is escaped: no raw HTML, no broken table cell.
    assert "<b>" not in body and "annotator3 &lt;b&gt;\\|x&lt;/b&gt;" in body
    assert "### AI judges" not in body  # an empty value in the report gives no section


def test_missing_report_still_exports_with_a_smaller_card(tmp_path):
    write_curation(tmp_path / "store", limit=20, tables=("pairs",), report=None)
    result = export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert list(result.formats) == ["preference"]
    assert set(result.skipped) == {"unpaired", "sft", "stepwise"}
    meta, body = parse((tmp_path / "out/preference/README.md").read_text(encoding="utf-8"))
    assert sum(s["num_examples"] for s in meta["dataset_info"]["splits"]) == sum(
        result.formats["preference"].splits.values()
    )
    assert "No curation report was found" in body and "### Agreement" not in body


def test_license_comes_from_the_option_then_the_report(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=("pairs",), report={**REPORT, "license": "apache-2.0"})
    export_curated(tmp_path / "store", "pandalm", tmp_path / "a", "preference")
    export_curated(tmp_path / "store", "pandalm", tmp_path / "b", "preference", license="cc-by-4.0")
    assert parse((tmp_path / "a/preference/README.md").read_text())[0]["license"] == "apache-2.0"
    assert parse((tmp_path / "b/preference/README.md").read_text())[0]["license"] == "cc-by-4.0"


def test_broken_report_names_file_and_line(tmp_path):
    folder = write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    (folder / "report.json").write_text('{"steps": [\n  1,\n  oops\n]}', encoding="utf-8")
    with pytest.raises(ExportError, match=r"report\.json: line 3: not valid JSON"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 1_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]
