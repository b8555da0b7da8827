"""Validation of rows against the data contract.

`to_table` turns records or dicts into an Arrow table of the table's schema and checks it; every
error names the table, the row, the field, what is wrong and what to do. Checks are vectorised with
pyarrow.compute so validating a 200k-row import costs little next to writing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefkit.annotate.contract import (
    ANNOTATOR_TYPES,
    ID_COLUMN,
    KINDS,
    ORIGINS,
    ROLES,
    SCHEMAS,
    STATUSES,
    to_row,
    utcnow,
)


class ContractError(ValueError):
    """A row breaks the data contract. `row` is the 0-based index in the batch being written."""

    def __init__(self, table: str, row: int | None, field: str, problem: str):
        self.table, self.row, self.field, self.problem = table, row, field, problem
        where = f"{table} row {row}" if row is not None else table
        super().__init__(f"{where}, field '{field}': {problem}")


def to_table(table: str, rows: Iterable[Any] | pa.Table) -> pa.Table:
    """Records, dicts or an Arrow table → a validated Arrow table with exactly `SCHEMAS[table]`."""
    if table not in SCHEMAS:
        raise ContractError(table, None, "table", f"unknown table; expected one of {sorted(SCHEMAS)}")
    schema = SCHEMAS[table]
    if isinstance(rows, pa.Table):
        arrow = _conform(table, rows)
    else:
        dicts = [_with_defaults(table, to_row(r)) for r in rows]
        arrow = _from_pylist(table, dicts)
    validate_table(table, arrow)
    return arrow.cast(schema)


def _with_defaults(table: str, row: dict[str, Any]) -> dict[str, Any]:
    row.setdefault("created_at", utcnow())
    if table == "judgements":
        row.setdefault("metadata", "{}")
    return row


def _from_pylist(table: str, dicts: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[table]
    for i, row in enumerate(dicts):
        unknown = set(row) - set(schema.names)
        if unknown:
            raise ContractError(table, i, sorted(unknown)[0], f"not a column of {table}; columns are {schema.names}")
    try:
        return pa.Table.from_pylist(dicts, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    # Find the first row and field that does not convert, to say exactly where the problem is.
    for i, row in enumerate(dicts):
        for f in schema:
            try:
                pa.array([row.get(f.name)], type=f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
                raise ContractError(table, i, f.name, f"value {row.get(f.name)!r} is not {f.type} ({exc})") from None
    raise ContractError(table, None, "?", "rows do not convert to the schema")


def _conform(table: str, arrow: pa.Table) -> pa.Table:
    schema = SCHEMAS[table]
    unknown = set(arrow.schema.names) - set(schema.names)
    if unknown:
        raise ContractError(table, None, sorted(unknown)[0], f"not a column of {table}; columns are {schema.names}")
    cols = []
    for f in schema:
        if f.name in arrow.schema.names:
            col = arrow.column(f.name)
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ContractError(table, None, f.name, f"column of type {col.type} is not {f.type} ({exc})") from None
        elif f.name == "created_at":
            col = pa.array([utcnow()] * arrow.num_rows, type=f.type)
        elif f.name == "metadata" and table == "judgements":
            col = pa.array(["{}"] * arrow.num_rows, type=f.type)
        elif f.nullable:
            col = pa.nulls(arrow.num_rows, type=f.type)
        else:
            raise ContractError(table, None, f.name, "required column is missing")
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _first(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first true value of a boolean mask (nulls count as false)."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return None
    return int(pc.index(mask, True).as_py())


def _fail_if(table: str, mask, field: str, problem: str) -> None:
    row = _first(mask)
    if row is not None:
        raise ContractError(table, row, field, problem)


def validate_table(table: str, arrow: pa.Table) -> None:
    """Raise ContractError at the first row that breaks the contract."""
    schema = SCHEMAS[table]
    for f in schema:
        col = arrow.column(f.name)
        if not f.nullable:
            _fail_if(table, pc.is_null(col), f.name, "is missing (null); every row needs a value")
        if pa.types.is_string(f.type) and (f.name.endswith("_id") or f.name in ("annotator", "kind")):
            _fail_if(table, pc.equal(col, ""), f.name, "is empty; give a non-empty value")
    id_col = arrow.column(ID_COLUMN[table])
    if arrow.num_rows and pc.count_distinct(id_col).as_py() != arrow.num_rows:
        dup = _first(pc.invert(_first_occurrence(id_col)))
        raise ContractError(table, dup, ID_COLUMN[table], "repeats an id earlier in the same batch")
    {"prompts": _prompts, "responses": _responses, "judgements": _judgements}[table](arrow)


def _first_occurrence(col) -> pa.Array:
    values = col.to_pylist()
    seen: set = set()
    out = []
    for v in values:
        out.append(v not in seen)
        seen.add(v)
    return pa.array(out)


def _json_objects(table: str, col, field: str) -> None:
    for i, text in enumerate(col.to_pylist()):
        if text in ("{}", None):
            continue
        try:
            ok = isinstance(json.loads(text), dict)
        except json.JSONDecodeError as exc:
            raise ContractError(table, i, field, f"is not valid JSON ({exc.msg}); give a JSON object string") from None
        if not ok:
            raise ContractError(table, i, field, 'must be a JSON object (e.g. \'{"tag": "x"}\')')


def _prompts(arrow: pa.Table) -> None:
    messages = arrow.column("messages")
    _fail_if(
        "prompts",
        pc.equal(pc.list_value_length(messages), 0),
        "messages",
        "is empty; a prompt needs at least one message",
    )
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages)
    for name, problem in (
        (pc.invert(pc.is_in(pc.struct_field(flat, "role"), pa.array(ROLES))), f"has a role outside {ROLES}"),
        (
            pc.or_kleene(
                pc.is_null(pc.struct_field(flat, "content")),
                pc.equal(pc.utf8_trim_whitespace(pc.struct_field(flat, "content")), ""),
            ),
            "has a message with empty content",
        ),
    ):
        bad = _first(name)
        if bad is not None:
            raise ContractError("prompts", int(parents[bad].as_py()), "messages", problem)
    _json_objects("prompts", arrow.column("metadata"), "metadata")


def _responses(arrow: pa.Table) -> None:
    empty = pc.equal(pc.utf8_trim_whitespace(arrow.column("content")), "")
    _fail_if(
        "responses", pc.and_(empty, pc.invert(_declared_empty(arrow))), "content", "is empty; a response needs text"
    )
    _fail_if(
        "responses",
        pc.invert(pc.is_in(arrow.column("origin"), pa.array(ORIGINS))),
        "origin",
        f"must be one of {ORIGINS}",
    )
    revision = pc.is_in(arrow.column("origin"), pa.array(["human_edit", "critique_revision", "clair_revision"]))
    _fail_if(
        "responses",
        pc.and_(revision, pc.is_null(arrow.column("parent_id"))),
        "parent_id",
        "a revision must name the response it revises",
    )
    _json_objects("responses", arrow.column("generation"), "generation")


def _declared_empty(arrow: pa.Table) -> pa.Array:
    """Imported responses whose `generation` says `"empty_output": true`: the source really holds an
    empty answer (PandaLM has 54, from models that said nothing, and lost), kept as data. An empty
    response without that declaration is a mistake and is rejected."""
    empty = pc.equal(pc.utf8_trim_whitespace(arrow.column("content")), "")
    flags = [False] * arrow.num_rows
    if pc.any(empty).as_py():
        origin, generation = arrow.column("origin"), arrow.column("generation")
        for i in pc.indices_nonzero(pc.fill_null(empty, False)).to_pylist():
            if origin[i].as_py() == "imported":
                try:
                    flags[i] = json.loads(generation[i].as_py()).get("empty_output") is True
                except (json.JSONDecodeError, AttributeError):
                    pass
    return pa.array(flags, type=pa.bool_())


def _judgements(arrow: pa.Table) -> None:
    t = "judgements"
    _fail_if(t, pc.invert(pc.is_in(arrow.column("kind"), pa.array(KINDS))), "kind", f"must be one of {KINDS}")
    _fail_if(
        t,
        pc.invert(pc.is_in(arrow.column("annotator_type"), pa.array(ANNOTATOR_TYPES))),
        "annotator_type",
        f"must be one of {ANNOTATOR_TYPES}",
    )
    _fail_if(t, pc.invert(pc.is_in(arrow.column("status"), pa.array(STATUSES))), "status", f"must be one of {STATUSES}")
    n_ids = pc.list_value_length(arrow.column("response_ids"))
    n_scores = pc.list_value_length(arrow.column("scores"))
    labelled = pc.is_in(arrow.column("status"), pa.array(["submitted", "flagged"]))
    _fail_if(
        t,
        pc.and_(labelled, pc.equal(n_ids, 0)),
        "response_ids",
        "a submitted judgement must name the responses it judged",
    )
    _fail_if(
        t,
        pc.and_(labelled, pc.not_equal(n_ids, n_scores)),
        "scores",
        "needs exactly one score per response in response_ids",
    )
    _fail_if(
        t,
        pc.and_(pc.invert(labelled), pc.and_(pc.not_equal(n_scores, 0), pc.not_equal(n_ids, n_scores))),
        "scores",
        "needs one score per response, or none for a skipped/error row",
    )
    flat_scores = pc.list_flatten(arrow.column("scores"))
    if len(flat_scores):
        bad = _first(pc.invert(pc.is_finite(flat_scores)))
        if bad is not None:
            row = int(pc.list_parent_indices(arrow.column("scores"))[bad].as_py())
            raise ContractError(t, row, "scores", "contains NaN or infinity; scores must be finite numbers")
    strength = arrow.column("strength")
    _fail_if(
        t,
        pc.or_(pc.less(strength, 1), pc.greater(strength, 3)),
        "strength",
        "must be 1 (slightly), 2 or 3 (much better), or null",
    )
    conf = arrow.column("confidence")
    _fail_if(t, pc.or_(pc.less(conf, 0), pc.greater(conf, 1)), "confidence", "must be a probability in [0, 1] or null")
    steps = arrow.column("step_labels")
    flat_steps = pc.list_flatten(steps)
    if len(flat_steps):
        bad = _first(pc.or_(pc.less(flat_steps, -1), pc.greater(flat_steps, 1)))
        if bad is not None:
            row = int(pc.list_parent_indices(steps)[bad].as_py())
            raise ContractError(t, row, "step_labels", "each step label must be -1 (wrong), 0 (neutral) or 1 (right)")
    errored = pc.equal(arrow.column("status"), "error")
    _fail_if(
        t,
        pc.and_(errored, pc.is_null(arrow.column("error"))),
        "error",
        "a row with status 'error' must say why in 'error'",
    )
    _json_objects(t, arrow.column("metadata"), "metadata")


__all__ = ["ContractError", "to_table", "validate_table"]
