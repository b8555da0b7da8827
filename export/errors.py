"""The export stage's exception, in a module of its own so the CLI can name it without importing pyarrow."""


class ExportError(Exception):
    """Bad input to an export: a missing curation, a curated table of the wrong shape, a bad target."""
