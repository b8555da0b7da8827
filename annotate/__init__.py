"""annotate: the data contract, the Parquet store, importers, the labelling app and the AI jobs.

Everything that *writes* the three tables (prompts, responses, judgements) lives here.
"""
