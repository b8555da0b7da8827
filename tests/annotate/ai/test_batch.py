"""--batch: the providers' Batch API through the loopback server and the official `openai` client."""

from __future__ import annotations

import json

from prefkit.annotate.store import Store

from prefkit.cli.ai import main
from tests.annotate.ai.conftest import fill
from tests.support.openai_server import OpenAIServer, Reply


def _answer(request):
    text = request["messages"][-1]["content"]
    if "ok" in text and "JSON" in text:
        return '{"ok": true}'
    return Reply("A\nfirst" if len(text) % 3 else "B\nsecond", top_logprobs={"A": -0.3, "B": -1.5, "tie": -3.0})


def _run(store_root, server, *args):
    return main(
        [
            *args,
            "--store",
            str(store_root),
            "--base-url",
            server.base_url,
            "--model",
            "batch-m",
            "--no-progress",
            "--timeout",
            "5",
            "--batch-poll",
            "0.02",
        ]
    )


def test_judge_batch_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-batch")
    store = fill(Store(tmp_path / "s"), prompts=3, responses=3)
    with OpenAIServer(_answer, batch_delay=0.05) as server:
        assert _run(store.root, server, "judge", "--batch") == 0
        out = capsys.readouterr()
        print(out)
        assert server.batch_api.repeated() == {}
