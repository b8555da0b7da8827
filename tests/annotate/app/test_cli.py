"""`prefkit app` and `prefkit hash-password`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from annotate.app import cli
from annotate.app.project import verify_password
from prefkit.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_help_has_examples(capsys):
    for command in ("app", "hash-password"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "Example:" in capsys.readouterr().out


def test_hash_password_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("s3cret\n"))
    assert main(["hash-password", "--stdin"]) == 0
    assert verify_password("s3cret", capsys.readouterr().out.strip())


def test_bad_project_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("tasks: [{kind: nope}]\n")
    assert main(["app", "--store", str(tmp_path / "s"), "--project", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "tasks[0].kind" in err


def test_demo_store_is_copied_once_and_the_original_untouched(tmp_path):
    source = tmp_path / "demo"
    (source / "judgements").mkdir(parents=True)
    (source / "judgements" / "x.parquet").write_bytes(b"data")
    copy = cli.demo_store(tmp_path / ".prefkit" / "demo-store", source)
    assert (copy / "judgements" / "x.parquet").read_bytes() == b"data"
    (copy / "judgements" / "y.parquet").write_bytes(b"new")
    assert cli.demo_store(copy, source) == copy and (copy / "judgements" / "y.parquet").exists()
    assert not (source / "judgements" / "y.parquet").exists()
    with pytest.raises(cli.AppError, match="missing"):
        cli.demo_store(tmp_path / "other", tmp_path / "nowhere")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prefkit_app_demo_serves_the_demo_store(tmp_path, monkeypatch):
    """`make app` runs `prefkit app --demo`: it must start without asking anything and print the URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefkit.cli", "app", "--demo", "--port", str(port)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the demo app did not come up")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    copy = tmp_path / ".prefkit" / "demo-store"
    assert (copy / "responses").is_dir()
    # the page the server would render for a visitor, on that copy, in open mode
    monkeypatch.setenv("PREFKIT_STORE", str(copy))
    monkeypatch.setenv("PREFKIT_PROJECT", str(cli.DEMO_PROJECT))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any(b.label == "Skip" for b in at.button) or any("Nothing left" in s.value for s in at.success)
