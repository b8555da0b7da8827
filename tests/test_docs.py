"""The docs cannot rot.

- Every `prefkit …` line in a code block of README.md or docs/*.md parses with the real command
  line parser, so a renamed command or flag fails here.
- The README's and the tutorial's `bash` blocks run as written, in a sandbox folder, against a
  loopback OpenAI-compatible server standing in for `http://localhost:8000/v1` and a tiny model
  standing in for `./models/sft`. (`text` blocks show commands that need a person, a browser, a
  GPU or a real provider; the app's own tests run `prefkit app`.)
- The AI-labelling and training guides' `bash` blocks run too, with every server URL (and OpenAI,
  where no `--base-url` is given) pointed at the loopback server and training capped at two steps.
  The importing, exporting and curating guides are run by their own stages' tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from prefkit.annotate.store import Store

from prefkit.cli import build_parser
from tests.support import scripted_model
from tests.support.openai_server import OpenAIServer
from tests.support.tiny_model import save_tiny

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
STAND_IN_SERVER = "http://localhost:8000/v1"


def blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced code block, with `\\` continuations joined."""
    out, lang, lines = [], None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = FENCE.match(line.strip())
        if match and lang is None:
            lang, lines = match.group(1), []
        elif line.strip() == "```" and lang is not None:
            out.append((lang, lines))
            lang = None
        elif lang is not None:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line)
    return out


def commands(path: Path) -> list[str]:
    found = []
    for lang, lines in blocks(path):
        if lang in ("yaml", "json", "python", "toml"):
            continue
        for line in lines:
            line = line.strip().removeprefix("$ ")
            if line.startswith("prefkit "):
                found.append(line.split(" #")[0].strip())
    return found


DOCUMENTED = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in commands(p)]


def test_the_docs_show_commands():
    assert len(DOCUMENTED) > 30


@pytest.mark.parametrize("where, command", DOCUMENTED, ids=[f"{w}:{c[:60]}" for w, c in DOCUMENTED])
def test_documented_command_parses(where, command):
    parser, _ = build_parser()
    argv = ["file.jsonl" if "*" in a else a for a in shlex.split(command)[1:]]  # a shell glob stands for files
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{command}` does not parse (exit {exc.code})")


AI_COMMANDS = ("generate", "judge", "critique", "revise")


def offline(line: str, server_url: str) -> str:
    """A documented command made to run here: AI jobs talk to the loopback server, training is short."""
    env, _, command = line.partition("prefkit ")
    words = shlex.split(command.split(" #")[0])
    if words and words[0] in AI_COMMANDS:
        if "--base-url" in words:
            words[words.index("--base-url") + 1] = server_url
        else:
            words += ["--base-url", server_url]
    if words and words[0] == "train" and "--max-steps" not in words:
        words += ["--max-steps", "2", "--batch-size", "4"]
    return env + "prefkit " + shlex.join(words)


def _run_bash_blocks(doc: Path, sandbox: Path, env: dict, server_url: str | None = None) -> str:
    script = ["set -euo pipefail"]
    for lang, lines in blocks(doc):
        if lang != "bash":
            continue
        for line in lines:  # the make commands are CI's own; the app's tests run `prefkit app`
            line = line.strip()
            is_command = line.startswith(("prefkit ", "export ")) or re.match(r"^[A-Z_]+=\S+ prefkit ", line)
            if not is_command or line.startswith("prefkit app"):
                continue
            script.append(offline(line, server_url) if server_url and "prefkit " in line else line)
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=sandbox, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{doc.name}'s commands failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture
def sandbox(tmp_path):
    """A folder laid out like a checkout beside ../shared, with prefkit on PATH."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(ROOT / "data")
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OPENAI_API_KEY": "sk-docs",
        "PREFKIT_STORE": str(work / "prefkit-store"),
        "PYTHONUNBUFFERED": "1",
    }
    return work, env


@pytest.mark.slow
def test_readme_commands_run(sandbox):
    work, env = sandbox
    out = _run_bash_blocks(ROOT / "README.md", work, env)
    assert "added: 170 prompts" in out
    assert (work / "exports" / "pandalm" / "preference" / "dataset_dict.json").exists()


@pytest.mark.slow
def test_tutorial_runs(sandbox):
    work, env = sandbox
    texts = [line for f in (ROOT / "data" / "demo-source").glob("*.jsonl") for line in f.read_text().split()]
    save_tiny(work / "models" / "sft", sorted(set(texts))[:3000])
    tutorial = ROOT / "docs" / "tutorial.md"
    with OpenAIServer(scripted_model.answer, latency=0.0) as server:
        text = tutorial.read_text(encoding="utf-8").replace(STAND_IN_SERVER, server.base_url)
        local = work / "tutorial.md"
        local.write_text(text, encoding="utf-8")
        _run_bash_blocks(local, work, env)
    assert (work / "tutorial-store" / "curated" / "tutorial" / "report.html").exists()
    for run in ("dpo", "kto"):
        assert (work / "runs" / run / "final" / "config.json").exists()


def _yaml_blocks(doc: Path, sandbox: Path, name: str) -> None:
    """Write the doc's first yaml block to `name` (the file its commands name)."""
    text = next("\n".join(lines) for lang, lines in blocks(doc) if lang == "yaml")
    (sandbox / name).write_text(text + "\n")


@pytest.mark.slow
def test_ai_labelling_guide_runs(sandbox):
    work, env = sandbox
    import shutil

    shutil.copytree(ROOT / "data" / "demo", work / "prefkit-store")
    (work / "prompts.jsonl").write_text('{"prompt": "Name a prime number."}\n{"prompt": "Say hello in French."}\n')
    save_tiny(work / "iteration-0", ["prime", "number", "hello", "French"])
    env = {**env, "TOGETHER_API_KEY": "sk-docs-together"}
    with OpenAIServer(scripted_model.answer, latency=0.0) as server:
        out = _run_bash_blocks(ROOT / "docs" / "ai-labelling.md", work, env, server.base_url)
    assert "agreement with the human majority" in out  # judge-eval ran on the PandaLM votes
    assert (work / "runs" / "iteration-1" / "final" / "config.json").exists()


@pytest.mark.slow
def test_training_guide_runs(sandbox):
    work, env = sandbox
    from prefkit.curate.pipeline import curate
    from prefkit.export.exporter import export_curated

    store = work / "prefkit-store"
    assert main_ok("import", *sorted((ROOT / "data" / "demo-source").glob("*.jsonl")), "--store", store)
    curate(Store(store), name="tutorial")
    export_curated(store, "tutorial", work / "exports" / "tutorial")
    save_tiny(work / "models" / "sft", ["the", "a", "is"])
    _yaml_blocks(ROOT / "docs" / "training.md", work, "kto.yaml")
    _run_bash_blocks(ROOT / "docs" / "training.md", work, env, "http://127.0.0.1:9/v1")
    for run in ("dpo", "kto", "rm"):
        assert (work / "runs" / run / "final" / "config.json").exists()


def main_ok(*argv) -> bool:
    from prefkit.cli import main

    return main([str(a) for a in argv]) == 0
