"""Every command that takes --store, on `--store s3://bucket/prefix`, through the real command line
against the SeaweedFS server (tests/support/s3.py), with the AWS variables pointing at it: import,
the AI jobs, compact, check, curate, export and the app; and bad S3 input as one line, exit 1,
nothing written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefkit.annotate.store import Store
from streamlit.testing.v1 import AppTest

from prefkit.cli import main
from tests.annotate.ai.test_cli import _answer
from tests.support.openai_server import OpenAIServer
from tests.support.processes import stop
from tests.support.s3 import free_ports

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    {"prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": f"It is {2 * i + 1}."} for i in range(6)
]


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "PREFKIT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "PREFKIT_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # nothing lands in the checkout; a default ./prefkit-store would show
    return s3_server


@pytest.fixture
def pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return f


def _tables(keys: list[str], prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in keys:
        table = k[len(prefix) + 1 :].split("/")[0]
        out[table] = out.get(table, 0) + 1
    return out


def test_the_pipeline_on_s3(s3_env, pairs_file, tmp_path, capsys, monkeypatch):
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/team/prefs"
    assert main(["import", str(pairs_file), "--store", url]) == 0
    assert "6" in capsys.readouterr().out
    assert _tables(s3_env.keys(bucket), f"{bucket}/team/prefs") == {"prompts": 1, "responses": 1, "judgements": 1}
    assert main(["import", str(pairs_file), "--store", url]) == 0  # again: nothing new
    store = Store(url, create=False)
    assert [store.count(t) for t in ("prompts", "responses", "judgements")] == [6, 12, 6]

    # the AI jobs write through the store; their cache and run logs go to its local state folder
    monkeypatch.setenv("OPENAI_API_KEY", "sk-s3")
    with OpenAIServer(_answer) as server:
        common = ["--store", url, "--base-url", server.base_url, "--model", "s3-m", "--no-progress", "--timeout", "5"]
        assert main(["judge", *common]) == 0
        assert "rows written (0 errors)" in capsys.readouterr().out
        assert main(["generate", "-n", "1", *common]) == 0
        assert main(["critique", "--rounds", "1", "--limit", "2", *common]) == 0
        assert main(["revise", "--clair", "--limit", "1", *common]) == 0
        assert main(["judge", *common]) == 0  # the new responses' pairs
        capsys.readouterr()
        assert main(["judge", *common]) == 0  # a re-run finds every pair judged, on S3
        assert " 0 requests sent" in capsys.readouterr().out
    capsys.readouterr()
    con = Store(url, create=False).connect()
    kinds = dict(con.execute("SELECT annotator LIKE 'ai:%', count(*) FROM judgements GROUP BY 1").fetchall())
    assert kinds[False] == 6 and kinds[True] >= 12
    origins = dict(con.execute("SELECT origin, count(*) FROM responses GROUP BY origin").fetchall())
    assert origins["generated"] == 6 and origins["critique_revision"] == 2 and origins["clair_revision"] == 1
    state = store.state_dir
    assert state.parent == tmp_path / "state"
    (cache,) = (state / "ai" / "cache").glob("*.sqlite")
    with sqlite3.connect(cache) as db:  # every paid answer is kept on this machine
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] >= kinds[True]
    assert len(list((state / "ai" / "runs").glob("*.json"))) == 6  # one run log per job
    assert not any(k.endswith((".sqlite", ".json")) for k in s3_env.keys(bucket))  # none of it on S3

    # compact: one object per table and day, the same rows
    before = {t: store.count(t) for t in ("prompts", "responses", "judgements")}
    assert main(["compact", "--store", url]) == 0
    assert "merged" in capsys.readouterr().out
    per_table = _tables(s3_env.keys(bucket), f"{bucket}/team/prefs")
    assert per_table == {"prompts": 1, "responses": 1, "judgements": 1}
    assert {t: store.count(t) for t in before} == before

    assert main(["check", "--store", url]) == 0
    assert f"{url}: every part is readable" in capsys.readouterr().out
    assert main(["stats", "--store", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)

    # curate reads S3; the curation goes to the state folder, where export finds it by --store
    assert main(["curate", "--store", url, "--out", "team"]) == 0
    out = capsys.readouterr().out
    assert str(state / "curated" / "team") in out
    pairs = __import__("pyarrow.parquet", fromlist=["x"]).read_table(state / "curated" / "team" / "pairs.parquet")
    assert pairs.num_rows >= 6
    assert main(["export", "team", "--to", str(tmp_path / "exports"), "--store", url, "--format", "preference"]) == 0
    from datasets import load_from_disk

    exported = load_from_disk(str(tmp_path / "exports" / "preference"))
    assert sum(len(split) for split in exported.values()) == pairs.num_rows
    # an explicit --out-dir still wins
    assert main(["curate", "--store", url, "--out", "elsewhere", "--out-dir", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "curated" / "elsewhere" / "pairs.parquet").exists()
    assert not (tmp_path / "prefkit-store").exists()


def test_batch_jobs_resume_on_s3(s3_env, capsys, monkeypatch):
    """`judge --batch --no-wait`, then `prefkit batches resume`: the job's record lives in the local
    cache of the store's state folder, and the resumed job writes to the store on S3."""
    from tests.annotate.ai.conftest import fill
    from tests.annotate.ai.test_batch import answer, rows, run

    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch")
    url = f"s3://{s3_env.bucket()}/batch"
    store = fill(Store(url), prompts=3, responses=3)
    with OpenAIServer(answer, batch_delay=0.3) as server:
        assert run(url, server, "judge", "--mode", "text", "--batch", "--no-wait") == 0
        assert "submitted: 18 requests" in capsys.readouterr().out
        assert store.count("judgements") == 0
        assert main(["batches", "resume", "--store", url, "--no-progress"]) == 0
        assert "rows written" in capsys.readouterr().out
    assert len(rows(store, "judgements")) == 18


def test_the_app_reads_items_and_writes_judgements_on_s3(s3_env, pairs_file, monkeypatch):
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/app"
    assert main(["import", str(pairs_file), "--store", url]) == 0
    monkeypatch.setenv("PREFKIT_STORE", url)
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    monkeypatch.delenv("PREFKIT_QUEUE", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    next(b for b in at.button if b.label == "Tie").click().run()
    next(b for b in at.button if b.label == "Submit").click().run()
    assert not at.exception
    rows = Store(url, create=False).read("judgements").to_pylist()
    assert [(r["annotator"], r["scores"]) for r in rows if r["annotator"] == "local"] == [("local", [0.5, 0.5])]
    # the SQLite queue of a store on S3 without --queue lives in the state folder on this machine
    assert (Store(url, create=False).state_dir / "app" / "assign.sqlite").exists()


def test_prefkit_app_serves_an_s3_store(s3_env, pairs_file):
    bucket = s3_env.bucket()
    url = f"s3://{bucket}/served"
    assert main(["import", str(pairs_file), "--store", url]) == 0
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefkit.cli", "app", "--store", url, "--port", str(port)],
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the app did not come up"
                time.sleep(0.3)
    finally:
        stop([proc.pid])
        proc.wait(timeout=10)


# -- bad input ------------------------------------------------------------------------------------


def _one_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"prefkit {command}: error: ")
    return lines[0]


@pytest.mark.parametrize("command", ["import", "compact", "curate", "app", "judge"])
def test_a_missing_bucket_is_one_line(s3_env, pairs_file, capsys, command, tmp_path):
    url = "s3://no-such-bucket-here/prefs"
    args = {
        "import": ["import", str(pairs_file)],
        "compact": ["compact"],
        "curate": ["curate", "--out", "x"],
        "app": ["app"],
        "judge": ["judge", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"],
    }[command]
    assert main([*args, "--store", url]) == 1
    line = _one_line(capsys, command)
    assert "no-such-bucket-here" in line and "does not exist" in line and "create it" in line
    assert "no-such-bucket-here" not in s3_env.filesystem().ls("")  # not made on the way
    assert not (tmp_path / "state").exists()  # nothing local either


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AWS_SECRET_ACCESS_KEY", "not-the-secret"), ("AWS_ACCESS_KEY_ID", "nobody")],
)
def test_wrong_credentials_are_one_line(s3_env, pairs_file, capsys, monkeypatch, variable, value, tmp_path):
    bucket = s3_env.bucket()
    monkeypatch.setenv(variable, value)
    assert main(["import", str(pairs_file), "--store", f"s3://{bucket}/prefs"]) == 1
    line = _one_line(capsys, "import")
    assert "refused the credentials" in line and "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    assert value not in line  # a secret is never echoed
    assert s3_env.keys(bucket) == [] and not (tmp_path / "state").exists()


def test_an_unreachable_endpoint_is_one_line_and_quick(s3_env, pairs_file, capsys, monkeypatch, tmp_path):
    bucket = s3_env.bucket()
    nowhere = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens: connection refused
    monkeypatch.setenv("PREFKIT_S3_ENDPOINT", nowhere)  # the override wins over AWS_ENDPOINT_URL
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    started = time.monotonic()
    assert main(["import", str(pairs_file), "--store", f"s3://{bucket}/prefs"]) == 1
    assert time.monotonic() - started < 15
    line = _one_line(capsys, "import")
    assert f"cannot reach the S3 endpoint {nowhere}" in line and "PREFKIT_S3_ENDPOINT" in line
    assert s3_env.keys(bucket) == [] and not (tmp_path / "state").exists()


def test_the_endpoint_override_is_used(s3_env, pairs_file, capsys, monkeypatch):
    """PREFKIT_S3_ENDPOINT alone (no AWS_ENDPOINT_URL) reaches the service."""
    bucket = s3_env.bucket()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("PREFKIT_S3_ENDPOINT", s3_env.endpoint_url)
    assert main(["import", str(pairs_file), "--store", f"s3://{bucket}/prefs"]) == 0
    assert len(s3_env.keys(bucket)) == 3


def test_a_store_url_without_a_bucket_is_one_line(s3_env, capsys):
    assert main(["compact", "--store", "s3://"]) == 1
    assert "name a bucket" in _one_line(capsys, "compact")
