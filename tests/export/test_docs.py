"""Every `prefkit export` command in docs/exporting.md and in `prefkit export --help` runs.

Lines that begin with `prefkit export` are run against a small real curation named `pandalm`; the
real push example (`HF_TOKEN=… prefkit export … --push-to-hub`, which needs the network) begins with
the token and is not one of them — its offline twin with `--dry-run` is.
"""

import re
import shlex
from pathlib import Path

import pytest

from prefkit.cli import main
from prefkit.cli.export import DOC
from tests.export.curated import write_curation

ROOT = Path(__file__).resolve().parents[2]


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if re.match(r"\s*prefkit export ", line)]


DOC_COMMANDS = _commands((ROOT / "docs/exporting.md").read_text(encoding="utf-8"))
HELP_COMMANDS = _commands(DOC)


def test_the_docs_show_commands():
    assert len(DOC_COMMANDS) >= 4 and len(HELP_COMMANDS) >= 3


@pytest.mark.parametrize("command", DOC_COMMANDS + HELP_COMMANDS)
def test_documented_command_runs(command, tmp_path, monkeypatch):
    write_curation(tmp_path / "store", limit=12)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFKIT_STORE", str(tmp_path / "store"))
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, command
    assert (tmp_path / "exports/pandalm").is_dir()
