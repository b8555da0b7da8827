"""Importers: files people already have → prompts, responses and judgements in a store.

`import_files(store, paths)` reads each file (readers.py), tells its shape from the first records
(detect.py) unless `fmt` forces one, checks that every record fits it, converts every record with
that shape's module (pairs, hh, unpaired, ratings, votes, prompts) and streams the rows into one
`store.batch()`: either every file imports or nothing is written. Rows already in the store (same content-hash or record-hash id) are
not written again, so importing a file twice adds nothing.
"""

from prefkit.annotate.importers.detect import SHAPES
from prefkit.annotate.importers.errors import ImportFailed
from prefkit.annotate.importers.run import FileResult, ImportResult, import_files

__all__ = ["SHAPES", "FileResult", "ImportFailed", "ImportResult", "import_files"]
