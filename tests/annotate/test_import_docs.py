"""Every example input in docs/importing.md imports, and is detected as the shape its section names."""

import json
import re
from pathlib import Path

import pytest
from prefkit.annotate.importers import import_files
from prefkit.annotate.store import Store

DOC = Path(__file__).resolve().parents[2] / "docs" / "importing.md"


def examples() -> list[tuple[str, str, str]]:
    """(shape, language, code) for each ```json / ```csv block under a "### `shape`" heading."""
    out, shape = [], None
    for block in re.split(r"(?m)^(### `\w+`.*)$", DOC.read_text()):
        heading = re.match(r"### `(\w+)`", block)
        if heading:
            shape = heading.group(1)
            continue
        for lang, code in re.findall(r"```(json|csv)\n(.*?)```", block, re.S):
            if shape:
                out.append((shape, lang, code))
    return out


def records(code: str) -> list[dict]:
    decoder, pos, found = json.JSONDecoder(), 0, []
    code = code.strip()
    while pos < len(code):
        value, pos = decoder.raw_decode(code, pos)
        found.append(value)
        while pos < len(code) and code[pos].isspace():
            pos += 1
    return found


def test_the_doc_has_an_example_per_shape():
    assert {s for s, *_ in examples()} == {"pairs", "hh", "unpaired", "ratings", "votes", "prompts"}


@pytest.mark.parametrize("shape,lang,code", examples())
def test_doc_example_imports(tmp_path, shape, lang, code):
    path = tmp_path / ("example.csv" if lang == "csv" else "example.jsonl")
    if lang == "csv":
        path.write_text(code)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records(code)))
    result = import_files(Store(tmp_path / "store"), [path])
    assert result.files[0].shape == shape
    assert result.added["prompts"] >= 1
    assert (result.added["judgements"] >= 1) == (shape != "prompts")
