"""Decontamination: rows that share any word n-gram (default 13 words, as in GPT-3's and Tulu's
decontamination) with an eval set the user names.

Eval sets are files — `.jsonl`, `.json`, `.parquet`, `.csv`, `.txt` — or Hugging Face datasets saved
with `save_to_disk` (a folder; every split is read). From each record every string field is read
(or only `fields`), and conversations (lists of `{role, content}`) give their contents. Matching is
on `prefkit.curate.text.words` (case, punctuation and Unicode form ignored), vectorised with numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from prefkit.curate.text import ngram_hashes, word_tokens, words


class EvalSetError(ValueError):
    """An eval set named in the recipe is missing or cannot be read."""


def _strings(value, fields: list[str], top: bool = True) -> list[str]:
    """Every string in a record (only the named fields at the top level, when given)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if not (top and fields) or k in fields]
        return [s for _, v in items for s in _strings(v, fields, top=False)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v, fields, top=False)]
    return []


def load_eval_texts(path: str | Path, fields: list[str]) -> list[str]:
    """The texts of one eval set, one per record."""
    path = Path(path)
    if not path.exists():
        raise EvalSetError(f"eval set {path} does not exist: fix `decontaminate.eval_sets` in the recipe")
    try:
        if path.is_dir():
            from datasets import Dataset, DatasetDict, load_from_disk

            ds = load_from_disk(str(path))
            parts = list(ds.values()) if isinstance(ds, DatasetDict) else [ds]
            records = [r for part in parts if isinstance(part, Dataset) for r in part]
        elif path.suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            records = []
            for i, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise EvalSetError(f"{path}: line {i}: not valid JSON ({exc.msg})") from None
        elif path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            records = data if isinstance(data, list) else [data]
        elif path.suffix in (".parquet", ".csv"):
            reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
            records = duckdb.sql(f"SELECT * FROM {reader}(?)", params=[str(path)]).to_arrow_table().to_pylist()
        elif path.suffix == ".txt":
            records = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            raise EvalSetError(
                f"eval set {path}: unknown kind; use .jsonl .json .parquet .csv .txt or a dataset folder"
            )
    except EvalSetError:
        raise
    except (OSError, ValueError, duckdb.Error) as exc:
        # duckdb.Error: a truncated or damaged .parquet/.csv ("too small to be a Parquet file", …).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EvalSetError(f"eval set {path}: cannot read it ({first}); replace the file or fix the recipe") from None
    return ["\n".join(_strings(r, fields)) for r in records]


def contaminated(rows: pa.Table, columns: list[str], eval_sets: list[str], n: int, fields: list[str]) -> list[str]:
    """Keys of `rows` whose `columns` share a word `n`-gram with any of `eval_sets` (their `fields`)."""
    eval_texts = [t for p in eval_sets for t in load_eval_texts(p, fields)]
    if not eval_texts or rows.num_rows == 0:
        return []
    eval_ids, eval_doc, vocab = word_tokens(words(eval_texts))
    eval_hashes, _ = ngram_hashes(eval_ids, eval_doc, n, keep_short=False)
    eval_hashes = np.unique(eval_hashes)
    hit = np.zeros(rows.num_rows, dtype=bool)
    for col in columns:
        ids, doc, _ = word_tokens(words(rows[col]), vocab=vocab)
        hashes, owner = ngram_hashes(ids, doc, n, keep_short=False)
        hit[np.unique(owner[np.isin(hashes, eval_hashes)])] = True
    return [k for k, h in zip(rows["key"].to_pylist(), hit, strict=True) if h]
