"""`prefkit check`: is every part of a store readable, and is the store private? With `repair`,
unreadable parts move into <store>/quarantine/ (nothing is deleted) and the store is made private.
An S3 store has no file modes (who may read it is the bucket's policy): only its parts are checked."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from prefkit.annotate.store import QUARANTINE, Problem, Store


@dataclass
class CheckReport:
    root: Path | str  # the store folder, or the URL of an S3 store
    mode: int | None  # the store folder's permission bits as found (None on S3)
    made_private: bool = False
    problems: list[Problem] = field(default_factory=list)  # unreadable parts, links out of the store
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # (from, to) when repaired

    @property
    def shared(self) -> bool:
        """Whether other users may read the store (one made before stores were private, or by hand)."""
        return self.mode is not None and bool(self.mode & 0o077)

    @property
    def quarantine(self) -> Path | str:
        """Where --repair moves unreadable parts."""
        return self.root / QUARANTINE if isinstance(self.root, Path) else f"{self.root}/{QUARANTINE}"


def check_store(store: Store, repair: bool = False) -> CheckReport:
    """Read every part whole; with `repair`, make the store private and quarantine what fails."""
    if store.root is None:
        report = CheckReport(store.url, None)
    else:
        mode = stat.S_IMODE(store.root.stat().st_mode)
        report = CheckReport(store.root, mode)
        if report.shared and repair:
            store.root.chmod(mode & 0o700)
            report.made_private = True
    report.problems = store.problems(deep=True)
    if report.problems and repair:
        report.moved = store.quarantine(report.problems)
    return report
