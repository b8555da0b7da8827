"""`prefkit demo` runs the loop on a copy of the demo store and says what each stage did."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_from_disk
from prefkit.annotate.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_the_whole_loop_without_a_server(tmp_path):
    out = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "demo", "--out", str(out), "--steps", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - started < 300  # the bound for a 2-core machine
    text = proc.stdout
    # it teaches: each stage's command is printed, and the skipped AI stages are explained
    for stage in ("curate", "export", "train dpo", "train kto", "score-pairs"):
        assert f"== {stage}: prefkit " in text
    assert "no --base-url" in text and "generate" not in [line.split(":")[0] for line in text.splitlines()]
    # and the files are there
    demo_store = Store(ROOT / "data" / "demo")
    store = Store(out / "store")
    pairs = load_from_disk(str(out / "export" / "preference"))
    assert pairs["train"].num_rows + pairs["test"].num_rows > 0
    assert (out / "runs" / "dpo" / "final" / "config.json").exists()
    assert (out / "runs" / "kto" / "final" / "config.json").exists()
    rows = [json.loads(x) for x in (out / "runs" / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 3
    # score-pairs wrote its disputed pairs back as AI judgements; the demo store itself is untouched
    assert store.count("judgements") > demo_store.count("judgements")
    assert store.count("prompts") == demo_store.count("prompts")


def test_demo_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "is not a demo folder" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_with_a_server_the_demo_also_generates_judges_and_revises(tmp_path):
    """The AI stages' commands are real commands (they parse), run before curation."""
    from prefkit.cli import build_parser
    from prefkit.demo import plan

    stages = plan(tmp_path, "http://127.0.0.1:9/v1", "some-model", steps=3)
    assert [s.title for s in stages][:4] == ["generate", "judge", "revise", "curate"]
    parser, _ = build_parser()
    for stage in stages:
        parser.parse_args(stage.argv)
    assert [s.title for s in plan(tmp_path, None, None, 3)][0] == "curate"


def test_the_stages_it_prints_never_show_the_servers_credentials(tmp_path):
    from prefkit.demo import command_line, plan

    stages = plan(tmp_path, "http://alice:s3cret@127.0.0.1:8000/v1", "m", steps=2)
    shown = [command_line(stage) for stage in stages]
    assert any("--base-url http://***@127.0.0.1:8000/v1" in line for line in shown)
    assert not any("s3cret" in line for line in shown)
    # The stages themselves still carry the credentials, which the AI client sends as auth.
    assert any("http://alice:s3cret@127.0.0.1:8000/v1" in stage.argv for stage in stages)
