"""Bad input gives an error naming the file and what to do, and leaves nothing half written."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk
from prefkit.export import ExportError, export_curated

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
    from prefkit.curate.tables import SFT

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
    stale = tmp_path / "out" / f".preference.{dead.stdout.strip()}.0123abcd.tmp"  # prefkit.files' temporary name
    (stale / "preference/data").mkdir(parents=True)
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert _leftovers(tmp_path / "out") == ["preference"]


def _files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_split_name_that_climbs_out_of_to_is_refused_and_nothing_is_written(tmp_path):
    """A curated table from elsewhere whose split is `../../../escaped` used to make a folder beside `--to`."""
    folder = write_curation(tmp_path / "store", limit=20, tables=("pairs",))
    table = pq.read_table(folder / "pairs.parquet")
    i = table.schema.get_field_index("split")
    splits = pa.array(["../../../escaped"] + ["train"] * (table.num_rows - 1))
    pq.write_table(table.set_column(i, table.schema.field(i), splits), folder / "pairs.parquet")
    before = _files_under(tmp_path)
    with pytest.raises(ExportError, match=r"pairs\.parquet: split name '\.\./\.\./\.\./escaped': use letters"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert _files_under(tmp_path) == before  # no escaped folder, no shard, no --to folder left


@pytest.mark.parametrize("name", ["../../x", "../x", "x/../../../x", "/abs", "x\n"])
def test_a_curation_name_that_leaves_curated_is_refused(tmp_path, name):
    """`prefkit export ../../x` used to read <store>/curated/../../x: here a curation placed at tmp/x."""
    write_curation(tmp_path / "elsewhere", name="x", limit=10, tables=("pairs",))
    (tmp_path / "elsewhere/curated/x").rename(tmp_path / "x")
    (tmp_path / "store/curated").mkdir(parents=True)
    with pytest.raises(ExportError, match=r"curation name .*: use letters, digits"):
        export_curated(tmp_path / "store", name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_to_that_is_a_file_is_an_error_naming_it(tmp_path):
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    (tmp_path / "taken").write_text("mine")
    for to in (tmp_path / "taken", tmp_path / "taken/below"):
        with pytest.raises(
            ExportError, match=r"taken is a file, so .* cannot be the export folder; give --to a folder"
        ):
            export_curated(tmp_path / "store", "pandalm", to)
    assert (tmp_path / "taken").read_text() == "mine"


def test_a_damaged_curated_table_is_named(tmp_path):
    """Bytes in the middle of the file damaged, its footer intact: the schema reads, the rows do not."""
    folder = write_curation(tmp_path / "store", limit=60, tables=("pairs",))
    data = bytearray((folder / "pairs.parquet").read_bytes())
    for k in range(len(data) // 4, len(data) // 2):
        data[k] = (data[k] * 7 + 13) % 256
    (folder / "pairs.parquet").write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"pairs\.parquet: cannot read it \(.*\); re-run `prefkit curate`"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out")
    assert _leftovers(tmp_path / "out") == []
