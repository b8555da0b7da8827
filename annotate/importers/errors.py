"""The one exception the importers raise on bad input."""

from __future__ import annotations


class ImportFailed(ValueError):
    """A file cannot be imported. The message names `file:line`, the field, what is wrong and the fix.

    Raised before anything is committed: the store is unchanged when you see it.
    """

    def __init__(self, where: str, field: str | None, problem: str, fix: str = ""):
        self.where, self.field, self.problem, self.fix = where, field, problem, fix
        text = f"{where}: " + (f"field '{field}': " if field else "") + problem
        if fix:
            text += f"; {fix}"
        super().__init__(text)
