"""The curation report: figures gathered with SQL (`agreement`, `summary`, `lengths`) and a
self-contained HTML page (`html`) with tables and inline SVG charts (curate/charts.py) — a funnel, drops
by reason, length and margin/agreement histograms, contributions — no scripts, no network, every text
escaped.

The report.json keys the export stage's dataset card reads: steps, agreement, annotators, judges,
models, length_bias, guidelines, sources (see docs/curating.md for all of them).
"""

from __future__ import annotations

import bisect
import html as _html
import json
from collections.abc import Sequence
from typing import Any

import duckdb
from prefkit.annotate.agreement import krippendorff_alpha_from_sums
from prefkit.curate import charts
from prefkit.curate.filters import REASONS
from prefkit.curate.working import ROWS

KEPT_PAIRS = f"SELECT * FROM {ROWS['pairs']} WHERE drop_reason IS NULL"
BINS = 10


def edges(lo: float, hi: float, bins: int = BINS) -> list[float]:
    """`bins` equal bins from lo to hi (one unit wide in all when lo == hi, so a constant still shows)."""
    if hi <= lo:
        hi = lo + 1.0
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)]


def bin_counts(values: Sequence[float], edge_list: Sequence[float]) -> list[int]:
    """Values per bin: [e_i, e_i+1), the last bin closed (numpy.histogram's convention); outside: left out."""
    counts = [0] * (len(edge_list) - 1)
    for v in values:
        if v is None or v < edge_list[0] or v > edge_list[-1]:
            continue
        i = min(bisect.bisect_right(edge_list, v) - 1, len(counts) - 1)
        counts[i] += 1
    return counts


def histogram(values: Sequence[float], lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """`{edges, counts, n}` over the non-null values; the range is lo..hi where given, else the data's."""
    vals = [float(v) for v in values if v is not None]
    lo = (min(vals) if vals else 0.0) if lo is None else lo
    hi = (max(vals) if vals else 1.0) if hi is None else hi
    e = edges(lo, hi)
    return {"edges": [_round(x, 6) for x in e], "counts": bin_counts(vals, e), "n": len(vals)}


def lengths(con: duckdb.DuckDBPyConnection, edge_list: Sequence[float] | None = None) -> dict[str, Any]:
    """Chosen and rejected lengths (characters, as the length-bias share counts them) of the kept pairs,
    binned over `edge_list` (default: 0 to the longest), so before and after the cap share their bins."""
    rows = con.execute(f"SELECT length(chosen), length(rejected) FROM ({KEPT_PAIRS})").fetchall()
    chosen, rejected = [r[0] for r in rows], [r[1] for r in rows]
    if edge_list is None:
        edge_list = edges(0.0, float(max(chosen + rejected, default=1)))
    return {
        "edges": list(edge_list),
        "chosen": bin_counts(chosen, edge_list),
        "rejected": bin_counts(rejected, edge_list),
        "pairs": len(rows),
    }


def agreement(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Agreement over comparisons with two or more counted votes: unanimous share, mean agreement with
    the outcome, and Krippendorff's alpha (nominal: a better / b better / tie)."""
    row = con.execute(
        """
        WITH u AS (SELECT n_votes::DOUBLE AS n, wins_a::DOUBLE AS x, wins_b::DOUBLE AS y, ties::DOUBLE AS t,
                          agreement FROM comparisons WHERE n_votes >= 2)
        SELECT count(*), avg((greatest(x, y, t) = n)::INT), avg(agreement),
               sum((n * n - x * x - y * y - t * t) / (n - 1)), sum(n), sum(x), sum(y), sum(t)
        FROM u
        """
    ).fetchall()[0]
    units, unanimous, mean_agreement, observed, total, ca, cb, ct = row
    # prefkit.annotate.agreement's α and its convention (None when undefined, e.g. every vote one outcome)
    alpha = krippendorff_alpha_from_sums(observed or 0.0, {"a": ca or 0, "b": cb or 0, "tie": ct or 0})
    single = con.execute("SELECT count(*) FROM comparisons WHERE n_votes = 1").fetchall()[0][0]
    return {
        "comparisons_with_2plus_votes": int(units or 0),
        "comparisons_with_1_vote": int(single),
        "unanimous_share": _round(unanimous),
        "mean_agreement": _round(mean_agreement),
        "krippendorff_alpha": _round(alpha),
    }


def summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Sources, annotators, judges, models, guidelines, splits and the unpaired balance of the result."""
    rows = lambda sql: con.execute(sql).fetchall()  # noqa: E731 - a local shorthand
    splits = {}
    for table, working in ROWS.items():
        splits[table] = dict(
            rows(
                f"SELECT s.split, count(*) FROM {working} w JOIN split_of s USING (group_id) "
                "WHERE w.drop_reason IS NULL GROUP BY 1 ORDER BY 1"
            )
        )
    scores = con.execute(f"SELECT margin, agreement FROM ({KEPT_PAIRS})").fetchall()
    margins = [m for m, _ in scores if m is not None]
    good, bad = con.execute(
        f"SELECT count_if(label), count_if(NOT label) FROM {ROWS['unpaired']} WHERE drop_reason IS NULL"
    ).fetchall()[0]
    return {
        "histograms": {
            "margin": histogram(margins, lo=min([0.0, *margins])),
            "agreement": histogram([a for _, a in scores], lo=0.0, hi=1.0),
        },
        "splits": splits,
        "sources": dict(rows(f"SELECT source, count(*) FROM ({KEPT_PAIRS}) GROUP BY 1 ORDER BY 2 DESC, 1")),
        "annotators": dict(
            rows(
                "SELECT annotator, count(*) FROM judged WHERE status = 'submitted' AND annotator_type <> 'ai' "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 100"
            )
        ),
        "judges": dict(
            rows(
                "SELECT annotator, count(*) FROM judged WHERE status = 'submitted' AND annotator_type = 'ai' "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 100"
            )
        ),
        "annotator_types": dict(
            rows("SELECT annotator_type, count(*) FROM judged WHERE status = 'submitted' GROUP BY 1 ORDER BY 1")
        ),
        "models": dict(
            rows(
                f"SELECT r.model, count(*) FROM (SELECT chosen_id AS id FROM ({KEPT_PAIRS}) UNION ALL "
                f"SELECT rejected_id FROM ({KEPT_PAIRS})) k JOIN rtext r ON r.response_id = k.id "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50"
            )
        ),
        "guidelines": dict(
            rows(
                "SELECT guidelines, count(*) FROM judged WHERE status = 'submitted' AND guidelines <> '' "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50"
            )
        ),
        "unpaired_balance": {
            "desirable": int(good or 0),
            "undesirable": int(bad or 0),
            "desirable_share": _round(good / (good + bad)) if (good or bad) else None,
        },
    }


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}pre{background:#f6f6f6;padding:1rem}
.ex{font-size:.85em;color:#444;white-space:pre-wrap}h2{margin-top:2rem}
"""


def _e(value: Any) -> str:
    return _html.escape("" if value is None else str(value), quote=True)


def _table(rows: list[dict] | dict, headers: tuple[str, str] = ("", "")) -> str:
    if isinstance(rows, dict):
        rows = [{headers[0] or "key": k, headers[1] or "value": v} for k, v in rows.items()]
    if not rows:
        return "<p>none</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = ""
    for r in rows:
        cells = ""
        for c in cols:
            v = r.get(c)
            cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells += f"<td{cls}>{_e(json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)}</td>"
        body += f"<tr>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def html(rep: dict, recipe_yaml: str) -> str:
    """The report as one self-contained HTML page."""
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>prefkit curation {_e(rep.get('name'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Curation <code>{_e(rep.get('name'))}</code></h1>",
    ]
    for warning in rep.get("warnings", []):
        out.append(f"<p><strong>Warning:</strong> {_e(warning)}</p>")
    outputs = rep.get("outputs", {})
    out.append(
        "<h2>Outputs</h2>" + _table(outputs, ("table", "rows")) + charts.bars(outputs, "rows written", "outputs")
    )
    out.append("<h2>Splits</h2>" + _table([{"table": t, **v} for t, v in rep.get("splits", {}).items()]))
    out.append("<h2>Rows through the recipe</h2>")
    for table, stages in funnel_stages(rep.get("steps", [])).items():
        out.append(charts.funnel(stages, f"{table}: rows after each step", f"funnel-{table}"))
    out.append("<h2>Counts after every step</h2>" + _table(rep.get("steps", [])))
    for table, reasons in rep.get("drops", {}).items():
        out.append(f"<h2>Dropped from {_e(table)}</h2>")
        out.append(
            charts.bars(
                {r: v["count"] for r, v in reasons.items()}, f"{table}: rows dropped, by reason", f"drops-{table}"
            )
        )
        for code, v in reasons.items():
            out.append(f"<h3>{_e(code)} — {_e(v['count'])}</h3>")
            meaning = REASONS[code].meaning if code in REASONS else ""
            threshold = v.get("threshold")
            if threshold is not None:
                shown = json.dumps(threshold, ensure_ascii=False) if isinstance(threshold, (dict, list)) else threshold
                meaning += f" (threshold: {shown})"
            out.append(f"<p>{_e(meaning)}</p>")
            for ex in v.get("examples", []):
                out.append('<div class="ex">' + _e(json.dumps(ex, ensure_ascii=False, indent=1)) + "</div>")
    out.append(
        "<h2>Deduplication</h2>" + _table({k: v for k, v in rep.get("dedupe", {}).items() if not isinstance(v, list)})
    )
    out.append(_table(rep.get("dedupe", {}).get("near_duplicate_examples", [])))
    out.append("<h2>Votes</h2>" + _table(rep.get("votes", {})))
    out.append("<h2>Agreement</h2>" + _table(rep.get("agreement", {})))
    hists = rep.get("histograms", {})
    for key, title in (("margin", "margin of the kept pairs"), ("agreement", "agreement of the kept pairs")):
        h = hists.get(key)
        if h:
            out.append(charts.histogram(h["edges"], {"pairs": h["counts"]}, title, key))
    lb = rep.get("length_bias", {})
    out.append("<h2>Length bias</h2><p>Share of pairs whose chosen response is longer than the rejected one.</p>")
    out.append(
        _table(lb) + charts.bars({k: v for k, v in lb.items() if v is not None}, "chosen-longer share", "length-bias")
    )
    for when, d in rep.get("length_distribution", {}).items():
        out.append(
            charts.histogram(
                d["edges"],
                {"chosen": d["chosen"], "rejected": d["rejected"]},
                f"response length in characters, {when} the filters ({d['pairs']} pairs)",
                f"lengths-{when}",
            )
        )
    out.append("<h2>Unpaired balance</h2>" + _table(rep.get("unpaired_balance", {})))
    for key, title in (
        ("sources", "Sources (pairs)"),
        ("annotators", "Annotators (judgements)"),
        ("judges", "AI judges (judgements)"),
        ("models", "Models (responses in pairs)"),
        ("guidelines", "Guidelines and templates"),
    ):
        values = rep.get(key, {})
        out.append(f"<h2>{_e(title)}</h2>" + charts.bars(dict(list(values.items())[:20]), title, key) + _table(values))
    out.append("<h2>Recipe</h2><pre>" + _e(recipe_yaml) + "</pre></body></html>")
    return "\n".join(out)


def funnel_stages(steps: list[dict]) -> dict[str, list[tuple[str, int]]]:
    """Per output table that had rows, (step, rows after it) for each of its steps in the report's counts."""
    out: dict[str, list[tuple[str, int]]] = {}
    for row in steps:
        if row["table"] in ROWS and row.get("out") is not None:
            out.setdefault(row["table"], []).append((str(row["step"]), int(row["out"])))
    return {table: stages for table, stages in out.items() if any(n for _, n in stages)}
