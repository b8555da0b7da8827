"""Bad input gives an error naming the file and what to do, and leaves nothing half written."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk

from export import ExportError, export_curated
from tests.export.curated import write_curation


def _leftovers(to):
    return sorted(p.name for p in to.iterdir()) if to.exists() else []


def test_missing_curation(tmp_path):
    with pytest.raises(ExportError, match=r"no curation named 'nope' at .*curated/nope; run `prefkit curate` first"):
        export_curated(tmp_path / "store", "nope", tmp_path / "out")


def test_named_format_without_its_table_is_an_error_but_all_skips_it(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    with pytest.raises(ExportError, match=r"steps\.parquet: not found"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out", ["preference", "stepwise"])
    assert _leftovers(tmp_path / "out") == []  # the preference set built before the error is not kept
    result = export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "all")
    assert list(result.formats) == ["preference"] and "stepwise" in result.skipped


def test_empty_table(tmp_path):
    folder = write_curation(tmp_path / "store", limit=10, tables=("pairs", "sft"))
    from curate.tables import SFT

    pq.write_table(SFT.empty_table(), folder / "sft.parquet")
    with pytest.raises(ExportError, match=r"sft\.parquet: no rows"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "sft")
    assert export_curated(tmp_path / "store", "pandalm", tmp_path / "out").skipped["sft"] == "sft.parquet has no rows"


def test_wrong_column_type_names_file_and_column_and_writes_nothing(tmp_path):
    folder = write_curation(tmp_path / "store", limit=10, tables=("pairs", "unpaired"))
    table = pq.read_table(folder / "unpaired.parquet")
    i = table.schema.get_field_index("label")
    pq.write_table(table.set_column(i, "label", pa.array(["yes"] * table.num_rows)), folder / "unpaired.parquet")
    with pytest.raises(ExportError, match=r"unpaired\.parquet: column 'label' is string, expected bool"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []


def test_missing_column(tmp_path):
    folder = write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    pq.write_table(pq.read_table(folder / "pairs.parquet").drop_columns(["split"]), folder / "pairs.parquet")
    with pytest.raises(ExportError, match=r"pairs\.parquet: column 'split' is missing"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")


def test_a_failed_export_keeps_the_previous_one(tmp_path):
    folder = write_curation(tmp_path / "store", limit=20, tables=("pairs", "sft"))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    before = load_from_disk(str(tmp_path / "out/preference"))["train"].to_list()
    (folder / "sft.parquet").write_bytes(b"not parquet")
    write_curation(tmp_path / "store", limit=40, tables=("pairs",))  # new pairs, then a failure on sft
    with pytest.raises(ExportError, match=r"sft\.parquet: not a readable Parquet file"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert load_from_disk(str(tmp_path / "out/preference"))["train"].to_list() == before
    assert _leftovers(tmp_path / "out") == ["preference", "sft"]  # no temporary folder left behind
    # A successful re-export replaces it.
    (folder / "sft.parquet").unlink()
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert len(load_from_disk(str(tmp_path / "out/preference"))["train"]) > len(before)


def test_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    (tmp_path / "out/preference").mkdir(parents=True)
    (tmp_path / "out/preference/notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"out/preference exists and is not a prefkit export"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert (tmp_path / "out/preference/notes.txt").read_text() == "mine"


def test_unknown_format(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    with pytest.raises(ExportError, match=r"unknown format 'dpo'; choose from preference, unpaired, sft, stepwise"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "dpo")


def test_nothing_to_export(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=())
    with pytest.raises(ExportError, match=r"curation 'pandalm' has nothing to export \(preference: no pairs\.parquet"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the folder it made for the export is gone again


def test_stale_build_folder_of_a_dead_process_is_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "out" / f".prefkit-export-{dead.stdout.strip()}-abc"
    (stale / "preference/data").mkdir(parents=True)
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert _leftovers(tmp_path / "out") == ["preference"]
