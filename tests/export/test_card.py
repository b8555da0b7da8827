"""The dataset card: its YAML parses, its counts equal the rows written, its body comes from the report."""

from html.parser import HTMLParser

import pytest
from datasets import load_from_disk
from markdown_it import MarkdownIt
from prefkit.export import ExportError, export_curated
from prefkit.export.card import parse, size_category

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
    assert "| drop\\_ties | 990 | 800 | 190 | majority tie |" in body
    assert "0.57" in body and "krippendorff\\_alpha" in body and "aggregate: majority" in body
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


# Strings a stranger's curation (or a careless name) can carry into the card, each a different piece of
# Markdown or HTML. Rendered, each must come out as exactly its own text: no element, no link, no image.
HOSTILE = [
    "![p](https://evil.example/pixel.png)",
    "[click me](https://evil.example/login)",
    "<img src=x onerror=alert(1)>",
    "**bold** _em_ *em* ~~gone~~ `code`",
    "# a heading",
    "- a list",
    "1. a numbered list",
    "> a quote",
    "https://evil.example/bare and www.evil.example and mallory@evil.example",
    "a | b || c",
    "$x^2$ and \\(y\\) and [^1]",
    "&amp; &lt;b&gt; \\* back\\slash",
    "<https://evil.example/angle>",
    "[ref]: https://evil.example",
]


class _Cells(HTMLParser):
    """(text, tags inside) of every <td> and <li> of rendered HTML."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cells: list[tuple[str, list[str]]] = []
        self._text: list[str] | None = None
        self._tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "li"):
            self._text, self._tags = [], []
        elif self._text is not None:
            self._tags.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "li") and self._text is not None:
            self.cells.append(("".join(self._text), self._tags))
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def test_markdown_and_html_in_report_strings_render_as_their_own_text(tmp_path):
    report = {
        **REPORT,
        "annotators": {text: 1 for text in HOSTILE},  # table cells (keys)
        "models": HOSTILE,  # bullets
        "sources": {f"src{k}": text for k, text in enumerate(HOSTILE)},  # table cells (values)
        "steps": [{"step": text, "reason": text, "dropped": 1} for text in HOSTILE],  # a table of rows
    }
    write_curation(tmp_path / "store", limit=10, tables=("pairs",), report=report)
    export_curated(tmp_path / "store", "pandalm", tmp_path / "out", license=HOSTILE[0])
    _, body = parse((tmp_path / "out/preference/README.md").read_text(encoding="utf-8"))
    # An independent CommonMark renderer with GitHub's tables and strikethrough.
    page = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(body)
    assert "<img" not in page and "<a " not in page  # the card itself has no links or images
    cells = _Cells()
    cells.feed(page)
    for text in HOSTILE:
        # The annotator key, the model bullet, the source value and the two step cells: each exactly the
        # string, with no <a>, <em>, <strong>, <code>, <s> or <img> inside.
        assert [tags for got, tags in cells.cells if got == text] == [[]] * 5, text
    license_paragraph = page.split("<h2>License</h2>")[1]
    assert "<img" not in license_paragraph and HOSTILE[0] in license_paragraph.replace("&quot;", '"')
    # Nothing a source-level autolinker (GFM's, marked's) would match is left in the Markdown itself.
    assert "https://" not in body.split("```yaml")[0] and "www.evil" not in body.split("```yaml")[0]
