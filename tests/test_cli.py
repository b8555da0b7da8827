"""Promises of the command line as a whole: every command teaches through --help, errors are one line."""

import subprocess
import sys

import pytest

from prefkit.cli import build_parser, command_modules


def _commands():
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_stage_module_is_present():
    names = [m.__name__ for m in command_modules()]
    assert names == [
        f"prefkit.cli.{n}" for n in ("annotate", "app", "ai", "curate", "export", "train", "score", "demo")
    ]
    assert all(callable(m.register) and isinstance(m.ERRORS, tuple) for m in command_modules())


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_help_with_an_example(name):
    help_text = _commands()[name].format_help()
    assert "Example:" in help_text, f"`prefkit {name} --help` has no Example: block"
    assert f"prefkit {name}" in help_text.split("Example:", 1)[1], "the example should show the command itself"


def test_failure_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "stats", "--store", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("prefkit stats: error: no store at")


def test_no_command_prints_help():
    proc = subprocess.run([sys.executable, "-m", "prefkit.cli"], capture_output=True, text=True)
    assert proc.returncode == 2 and "commands" in proc.stdout


def test_the_ai_entry_point_loads_only_its_own_stage():
    """`python -m prefkit.cli.ai` is for jobs started many times: it must not load the other stages
    (training imports torch), which `prefkit.cli` imports only when it builds the whole parser."""
    code = (
        "import sys, runpy; sys.argv = ['prefkit', '--help']\n"
        "try:\n    runpy.run_module('prefkit.cli.ai', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(*sorted({m.split('.')[1] for m in sys.modules if m.startswith('prefkit.')}), 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True)
    *help_text, loaded = proc.stdout.strip().splitlines()
    assert "judge" in "\n".join(help_text)
    *stages, torch = loaded.split()
    assert "annotate" in stages and not {"curate", "export", "train"} & set(stages) and torch == "False", loaded
