"""curate: DuckDB over the store — dedupe, votes, binarisation, filters, splits, the report."""
