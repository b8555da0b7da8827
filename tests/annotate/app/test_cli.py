"""`prefkit app` and `prefkit hash-password`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prefkit.annotate.app import serve as cli
from prefkit.annotate.app.project import Project, verify_password
from streamlit.testing.v1 import AppTest

from prefkit.cli import main
from tests.annotate.app.conftest import make_project, make_store, password_hash
from tests.support.browser import stop_app
from tests.support.processes import MARKER, alive, marked_processes, stop

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


def test_a_changed_bundled_demo_gets_a_fresh_copy_and_the_old_one_is_kept(tmp_path):
    """An earlier copy (people's labels in it) must not hide a newer bundled demo, nor be thrown away."""
    source = tmp_path / "demo"
    (source / "judgements").mkdir(parents=True)
    (source / "judgements" / "x.parquet").write_bytes(b"old demo")
    said = []
    copy = cli.demo_store(tmp_path / ".prefkit" / "demo-store", source, echo=said.append)
    (copy / "judgements" / "mine.parquet").write_bytes(b"my labels")
    assert cli.demo_store(copy, source, echo=said.append) == copy and said == []  # unchanged: the same copy
    (source / "judgements" / "x.parquet").unlink()
    (source / "judgements" / "z.parquet").write_bytes(b"new demo")  # prefkit upgraded: a rebuilt demo
    assert cli.demo_store(copy, source, echo=said.append) == copy
    assert sorted(p.name for p in (copy / "judgements").iterdir()) == ["z.parquet"]
    (kept,) = [p for p in copy.parent.iterdir() if p.name.startswith("demo-store-before-")]
    assert (kept / "judgements" / "mine.parquet").read_bytes() == b"my labels"
    assert len(said) == 1 and str(kept) in said[0]
    (tmp_path / "old-copy" / "judgements").mkdir(parents=True)  # a copy made before copies were stamped
    assert cli.demo_store(tmp_path / "old-copy", source) == tmp_path / "old-copy"
    assert (tmp_path / "old-copy" / "judgements" / "z.parquet").exists()


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
        stop_app(proc)
    copy = tmp_path / ".prefkit" / "demo-store"
    assert (copy / "responses").is_dir()
    # the page the server would render for a visitor, on that copy, in open mode
    monkeypatch.setenv("PREFKIT_STORE", str(copy))
    monkeypatch.setenv("PREFKIT_PROJECT", str(cli.DEMO_PROJECT))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any(b.label == "Skip" for b in at.button) or any("Nothing left" in s.value for s in at.success)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_prefkit_app_stops_its_server(tmp_path, sig):
    """systemd, Docker and supervisors stop a service by signalling the pid they started: the
    Streamlit server `prefkit app` started must go too (on SIGKILL, by the kernel's parent-death
    signal), and the port stop answering."""
    store = make_store(tmp_path / "store", n_prompts=2)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefkit.cli", "app", "--store", str(store.root), "--port", str(port)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    servers: list[int] = []
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        assert "open mode" in proc.stdout.readline()  # who can write: everyone who reaches it
        deadline = time.time() + 60
        while not _answers(port):
            assert proc.poll() is None and time.time() < deadline, "the app did not come up"
            time.sleep(0.3)
        servers = _children(proc.pid)
        assert servers, "prefkit app runs the server as its child"
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) in (0, -signal.SIGKILL)
        deadline = time.time() + 20
        while (_answers(port) or any(alive(p) for p in servers)) and time.time() < deadline:
            time.sleep(0.2)
        assert not _answers(port), "the server still answers after prefkit app was stopped"
        assert not any(alive(p) for p in servers), "the server outlived prefkit app"
    finally:
        stop([proc.pid, *servers])  # never leave a server behind, whatever failed above


def test_the_suite_finds_a_process_that_outlived_its_parent():
    """The check in tests/conftest.py: an orphan (re-parented to pid 1) still carries the marker."""
    parent = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True)
    orphan = int(parent.stdout.readline())
    parent.wait(timeout=10)
    try:
        found = marked_processes(os.environ[MARKER])
        assert orphan in found and "sleep 300" in found[orphan]
    finally:
        stop([orphan])
    assert orphan not in marked_processes(os.environ[MARKER])


def test_streamlit_is_told_to_hide_error_details():
    cmd = cli.streamlit_command(8501, "127.0.0.1")
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"


def test_a_missing_store_is_refused_before_starting(tmp_path, capsys):
    typo = tmp_path / "stroe"
    assert main(["app", "--store", str(typo)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("prefkit app: error: no store at") and str(typo) in err and "prefkit import" in err
    assert not typo.exists()


def test_a_store_that_is_a_file_is_refused_before_starting(tmp_path, capsys):
    f = tmp_path / "store.parquet"
    f.write_bytes(b"PAR1")
    assert main(["app", "--store", str(f)]) == 1
    err = capsys.readouterr().err
    assert "is a file, not a store folder" in err and str(f) in err and len(err.splitlines()) == 1


def test_a_folder_that_is_not_a_store_is_refused(tmp_path, capsys):
    assert main(["app", "--store", str(tmp_path)]) == 1
    assert "not a prefkit store" in capsys.readouterr().err
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "labelling.example.org"])
def test_open_mode_on_a_network_address_is_refused(tmp_path, capsys, host):
    store = make_store(tmp_path / "store", n_prompts=1)
    assert main(["app", "--store", str(store.root), "--host", host]) == 1
    err = capsys.readouterr().err
    assert "open mode" in err and "admin" in err and "--open-to-network" in err


def test_what_counts_as_this_machine_only():
    assert all(cli.is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(cli.is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "example.org", ""))


def test_who_can_write_is_said_at_start():
    line = cli.who_can_write(Project(open_user="me"), "http://0.0.0.0:1")
    assert "everyone who can reach http://0.0.0.0:1 labels as 'me', an admin" in line
    line = cli.who_can_write(make_project(), "http://x:1")
    assert line.startswith("3 login(s) may write") and "rita (reviewer)" in line


def test_a_run_dir_outside_the_runs_folder_is_refused(tmp_path, capsys):
    store = make_store(tmp_path / "store", n_prompts=1)
    project = tmp_path / "p.yaml"
    project.write_text(yaml.safe_dump({"users": [{"login": "a", "password_hash": password_hash("pw")}]}))
    (tmp_path / "runs").mkdir()
    args = ["app", "--store", str(store.root), "--project", str(project), "--runs", str(tmp_path / "runs")]
    assert main([*args, "--run-dir", str(tmp_path / "elsewhere")]) == 1
    assert "outside the runs folder" in capsys.readouterr().err
