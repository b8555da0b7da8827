"""Acceptance: the API key reaches the server and nothing else: no file in the store (Parquet, cache,
run logs), the console logs, or an exported dataset contains it — even when the server echoes it back
in an error message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefkit.annotate.store import Store

from tests.annotate.ai.conftest import fill
from tests.support.openai_server import OpenAIServer

SECRET = "sk-prefkit-test-0123456789abcdefSECRET"


def _run(args, logs: Path, name: str, env_name: str = "OPENAI_API_KEY"):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env[env_name] = SECRET
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        return subprocess.run(
            [sys.executable, "-m", "prefkit.cli.ai", *args], env=env, stdout=out, stderr=err, timeout=120
        ).returncode


def _files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow  # two job start-ups in subprocesses: about 20 s on a busy 2-core machine
def test_api_key_never_written(tmp_path):
    store_path, logs, export = tmp_path / "store", tmp_path / "logs", tmp_path / "export"
    logs.mkdir()
    fill(Store(store_path), prompts=3, responses=3)

    def answer(request):
        text = request["messages"][-1]["content"]
        if "Answer 2 to question 1" in text:
            raise PermissionError(f"invalid key {SECRET}")  # a server that echoes the key in its error
        return "A\nthe first"

    with OpenAIServer(answer) as server:
        common = ["--store", str(store_path), "--base-url", server.base_url, "--timeout", "5", "--max-retries", "1"]
        assert (
            _run(
                ["generate", *common, "--model", "gen-m", "-n", "1", "--api-key-env", "MY_KEY"],
                logs,
                "generate",
                "MY_KEY",
            )
            == 0
        )
        assert _run(["judge", *common, "--model", "judge-m", "--mode", "text"], logs, "judge") == 0
        seen = {e.auth for e in server.log}
    assert seen == {SECRET}, "the key was sent to the server (so the test below means something)"

    store = Store(store_path)
    errors = store.read("judgements", "status = 'error'").to_pylist()
    assert errors and all("invalid key ***" in e["error"] for e in errors), "the echoed key is masked"

    # An export of everything the AI jobs produced, as a dataset folder and as JSON lines.
    from datasets import Dataset

    rows = store.read("judgements").to_pylist() + store.read("responses").to_pylist()
    Dataset.from_list([{k: str(v) for k, v in r.items()} for r in rows]).save_to_disk(str(export / "hf"))
    Dataset.from_list([{k: str(v) for k, v in r.items()} for r in rows]).to_json(str(export / "all.jsonl"))

    for folder in (store_path, logs, export):
        assert list(folder.rglob("*.parquet")) or folder != store_path
        for needle in (SECRET.encode(), SECRET[3:20].encode()):
            assert _files_containing(folder, needle) == [], f"the key leaked into {folder}"
    assert list((store_path / "ai" / "runs").glob("*.json")), "run logs were written (and checked)"
    assert list((store_path / "ai" / "cache").glob("*.sqlite")), "the cache was written (and checked)"
