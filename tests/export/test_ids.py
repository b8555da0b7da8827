"""Exported rows keep the store's ids: prompt_id and the ids of the responses in the row.

TRL's trainers ignore these columns (tests/export/test_trl.py trains on the same exports);
`prefkit score-pairs` reads them (tests/train/test_score.py).
"""

import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk
from prefkit.annotate.ids import response_id
from prefkit.curate import curate
from prefkit.export import ExportError, export_curated
from prefkit.export.card import parse
from prefkit.export.hub import plan_push

from tests.curate.helpers import make_store, prompt, recipe, response, vote
from tests.export.curated import rows, write_curation

# format → (key column, {export column: curated column}) for the ids each format carries
IDS = {
    "preference": ("pair_id", {"prompt_id": "prompt_id", "chosen_id": "chosen_id", "rejected_id": "rejected_id"}),
    "unpaired": ("example_id", {"prompt_id": "prompt_id", "completion_id": "response_id"}),
    "sft": ("example_id", {"prompt_id": "prompt_id", "response_id": "response_id"}),
    "stepwise": ("example_id", {"prompt_id": "prompt_id", "response_id": "response_id"}),
}
TABLE = {"preference": "pairs", "unpaired": "unpaired", "sft": "sft", "stepwise": "steps"}


@pytest.mark.parametrize("fmt", list(IDS))
def test_every_exported_row_carries_the_curated_ids(exported, fmt):
    root, _ = exported
    key, columns = IDS[fmt]
    source = {r[key]: r for r in rows(60)[TABLE[fmt]]}
    ds = load_from_disk(str(root / "out" / fmt))
    n = 0
    for split in ds:
        for row in ds[split]:
            want = source[row[key]]
            assert {c: row[c] for c in columns} == {c: want[src] for c, src in columns.items()}
            n += 1
    assert n == len(source)


@pytest.mark.parametrize("fmt", list(IDS))
def test_the_card_lists_the_id_columns(exported, fmt):
    root, _ = exported
    meta, body = parse((root / "out" / fmt / "README.md").read_text(encoding="utf-8"))
    ids = list(IDS[fmt][1])
    assert {f["name"] for f in meta["dataset_info"]["features"]} >= set(ids)
    line = next(x for x in body.splitlines() if "prefkit store the rows came from" in x)
    assert all(f"`{c}`" in line for c in ids)


def test_ids_of_a_real_curation_are_the_stores_even_where_rehashing_differs(tmp_path):
    """Two prompts equal after normalisation are merged onto the first; a response stored under the
    second keeps its own id, which hashing the exported (canonical) prompt with its text does not give."""
    first, second = prompt("red blue", minute=0), prompt("Red  blue", minute=1)
    other = prompt("green gold", minute=2)
    a, b = response(second, "sun tree"), response(second, "ash rust")
    c, d = response(other, "river bird"), response(other, "mud fog")
    store = make_store(
        tmp_path / "s", [first, second, other], [a, b, c, d], [vote(second, a, b, "b"), vote(other, c, d, "a")]
    )
    steps = recipe("dedupe", "votes", {"binarise": {"pairs": "comparisons"}}, {"split": {"test_size": 0}})
    curate(store, steps, "ids")
    export_curated(tmp_path / "s", "ids", tmp_path / "out", ["preference", "unpaired"])

    content = {r["response_id"]: r["content"] for r in store.read("responses").to_pylist()}
    pref = load_from_disk(str(tmp_path / "out/preference"))["train"].to_list()
    assert sorted((r["chosen"], r["rejected"]) for r in pref) == [("ash rust", "sun tree"), ("river bird", "mud fog")]
    for r in pref:
        assert (content[r["chosen_id"]], content[r["rejected_id"]]) == (r["chosen"], r["rejected"])
    merged = next(r for r in pref if r["chosen"] == "ash rust")
    assert merged["prompt_id"] == first.prompt_id and (merged["chosen_id"], merged["rejected_id"]) == (
        b.response_id,
        a.response_id,
    )
    assert response_id(merged["prompt_id"], merged["chosen"]) not in content  # what re-hashing would give
    unpaired = load_from_disk(str(tmp_path / "out/unpaired"))["train"].to_list()
    assert len(unpaired) == 4 and all(content[u["completion_id"]] == u["completion"] for u in unpaired)


def test_a_curated_table_without_its_response_ids_is_named(tmp_path):
    folder = write_curation(tmp_path / "store", limit=10, tables=("unpaired",))
    table = pq.read_table(folder / "unpaired.parquet")
    pq.write_table(table.drop_columns(["response_id"]), folder / "unpaired.parquet")
    with pytest.raises(ExportError, match=r"unpaired\.parquet: column 'response_id' is missing"):
        export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "unpaired")


def test_pushing_an_export_without_ids_lists_only_its_columns(tmp_path):
    """An export written before the ids were kept: the pushed card names only the columns it has."""
    write_curation(tmp_path / "store", limit=10, tables=("pairs",))
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out", "preference")
    for shard in (tmp_path / "out/preference/data").glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["chosen_id", "rejected_id"]), shard)
    _, body = parse(plan_push(tmp_path / "out", "alice/p").card)
    assert "chosen_id" not in body and "`pair_id`" in body


def test_formats_read_curated_tables_and_their_id_columns():
    """'pairs' in export is only the curated pair table; each format's ids are columns of its table."""
    from prefkit.curate.tables import CURATED
    from prefkit.export.formats import FORMATS

    assert {f.table for f in FORMATS.values()} == set(CURATED) and "pairs" not in FORMATS
    for fmt in FORMATS.values():
        assert set(fmt.ids) <= set(fmt.extra_columns)
        assert {fmt.source_column(c) for c in fmt.extra_columns} <= set(CURATED[fmt.table].names)
        assert list(fmt.ids) == list(IDS[fmt.name][1])
