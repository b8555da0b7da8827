"""`prefkit export` on the command line: it writes the export, prints what it did, and fails in one line."""

import subprocess
import sys

from datasets import load_from_disk

from prefkit.cli import main
from tests.export.curated import write_curation


def test_export_one_format_conversational_with_jsonl(tmp_path, capsys):
    write_curation(tmp_path / "store", limit=20)
    argv = ["export", "pandalm", "--to", str(tmp_path / "out"), "--format", "preference", "--conversational"]
    assert main([*argv, "--jsonl", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    ds = load_from_disk(str(tmp_path / "out/preference"))
    assert f"preference train {ds['train'].num_rows}, test {ds['test'].num_rows} (conversational)" in out
    assert isinstance(ds["train"][0]["prompt"], list)
    assert (tmp_path / "out/preference/jsonl/train.jsonl").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["preference"]


def test_export_all_and_dry_run_push(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    write_curation(tmp_path / "store", limit=20, tables=("pairs", "unpaired"))
    monkeypatch.setenv("PREFKIT_STORE", str(tmp_path / "store"))
    argv = ["export", "pandalm", "--to", str(tmp_path / "out"), "--push-to-hub", "alice/prefs", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sft        skipped: no sft.parquet" in out
    assert "would push 5 files to https://huggingface.co/datasets/alice/prefs:" in out
    assert "  preference/train-00000-of-00001.parquet" in out and "  README.md" in out
    assert "hf_do_not_print_me" not in out


def test_missing_curation_is_one_line_and_exit_1(tmp_path):
    cmd = [sys.executable, "-m", "prefkit.cli", "export", "nope", "--to", str(tmp_path / "out")]
    proc = subprocess.run([*cmd, "--store", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("prefkit export: error: no curation named 'nope'")


def test_dry_run_needs_push(tmp_path, capsys):
    write_curation(tmp_path / "store", limit=5, tables=("pairs",))
    argv = ["export", "pandalm", "--to", str(tmp_path / "out"), "--dry-run", "--store", str(tmp_path / "store")]
    assert main(argv) == 1
    assert "--dry-run applies to --push-to-hub" in capsys.readouterr().err


def test_bad_names_and_a_file_as_to_are_one_line_errors(tmp_path, capsys):
    write_curation(tmp_path / "store", limit=5, tables=("pairs",))
    (tmp_path / "taken").write_text("mine")
    cases = [
        (["export", "../../x", "--to", str(tmp_path / "out")], "curation name '../../x': use letters"),
        (["export", "pandalm", "--to", str(tmp_path / "taken")], "taken is a file"),
    ]
    for argv, message in cases:
        assert main([*argv, "--store", str(tmp_path / "store")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and "Traceback" not in err
