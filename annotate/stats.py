"""What a store holds: counts per table, judgement kind, annotator and source (SQL over the views)."""

from __future__ import annotations

import duckdb
from prefkit.annotate.store import TABLES, Store, damaged
from prefkit.annotate.text import printable

_BREAKDOWNS = {
    "judgements by kind and status": "SELECT kind, status, count(*) AS n FROM judgements GROUP BY ALL ORDER BY n DESC, kind",
    "judgements by annotator": "SELECT annotator, annotator_type, count(*) AS n FROM judgements GROUP BY ALL ORDER BY n DESC, annotator",
    "prompts by source": "SELECT source, count(*) AS n FROM prompts GROUP BY ALL ORDER BY n DESC, source",
    "responses by origin and model": "SELECT origin, model, count(*) AS n FROM responses GROUP BY ALL ORDER BY n DESC, origin, model",
}


def store_stats(store: Store) -> dict:
    """{"tables": {table: rows}, "<breakdown>": [row dicts]} for the deduplicated tables."""
    con = store.connect()
    try:
        out: dict = {"tables": {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}}
        for title, sql in _BREAKDOWNS.items():
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            out[title] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return out
    except duckdb.Error as exc:
        raise store.read_failed(exc) if damaged(exc) else exc from None
    finally:
        con.close()


def format_stats(stats: dict, limit: int = 20) -> str:
    lines = ["rows: " + ", ".join(f"{t} {n:,}" for t, n in stats["tables"].items())]
    for title, rows in stats.items():
        if title == "tables" or not rows:
            continue
        lines.append(f"\n{title}:")
        for row in rows[:limit]:
            *keys, n = row.values()
            # sources, annotators and models come from imported data: print them inert
            lines.append(f"  {n:>9,}  " + "  ".join(printable(k, newlines=False) for k in keys))
        if len(rows) > limit:
            lines.append(f"  … {len(rows) - limit} more")
    return "\n".join(lines)
