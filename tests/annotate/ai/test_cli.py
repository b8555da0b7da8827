"""The AI commands end to end through their command line (in-process), as the docs show them."""

import json

import pytest

from prefkit.cli.ai import main
from tests.support.openai_server import OpenAIServer, Reply


def _answer(request):
    text = request["messages"][-1]["content"]
    if "[Response A]" in text:
        return "A\nclearer"
    if "[Response to improve]" in text:
        original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        return f"One word.<revision>{original} indeed</revision>"
    if "Score:" in text or "Score the response" in text:
        return "Good.\nScore: 4"
    if "Rewrite" in text:
        return request["messages"][-4]["content"] + " (revised)"
    return '{"ok": true}' if "ok" in text else "A critique."


@pytest.fixture
def server():
    with OpenAIServer(_answer) as s:
        yield s


def _run(store, server, *args):
    return main(
        [
            *args,
            "--store",
            str(store.root),
            "--base-url",
            server.base_url,
            "--model",
            "cli-m",
            "--no-progress",
            "--timeout",
            "5",
        ]
    )


def test_commands_as_documented(store, server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
    assert _run(store, server, "judge", "--dry-run", "--price-in", "1", "--price-out", "1") == 0
    out = capsys.readouterr().out
    assert "24 requests planned" in out and "24 not in the cache would be sent" in out
    assert server.stats()["requests"] == 2, "a dry run sends only the capability probes"

    assert _run(store, server, "judge") == 0
    assert "judged (logprobs): 24 rows written (0 errors)" in capsys.readouterr().out
    assert _run(store, server, "judge", "--method", "rubric", "--template", "self_rewarding") == 0
    assert _run(store, server, "generate", "-n", "2", "--temperature", "0.9") == 0
    assert _run(store, server, "critique", "--rounds", "1", "--limit", "3") == 0
    assert "critique: 3 revisions written" in capsys.readouterr().out.split("generated")[-1]
    assert _run(store, server, "revise", "--clair", "--limit", "2") == 0
    assert "revise --clair: 2 revisions written" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["judge-eval", "--store", str(store.root), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    # No people in this store, but position bias needs none: this judge always says "A".
    assert report["comparisons"] == 0 and report["accuracy"] is None
    assert report["position_consistency"] == 0.0 and report["first_position_rate"] == 1.0

    con = store.connect()
    kinds = dict(con.execute("SELECT kind, count(*) FROM judgements GROUP BY kind").fetchall())
    assert kinds == {"pairwise": 24, "rating": 12, "revision": 5}
    origins = dict(con.execute("SELECT origin, count(*) FROM responses GROUP BY origin").fetchall())
    assert origins["critique_revision"] == 3 and origins["clair_revision"] == 2 and origins["generated"] >= 4
    runs = sorted((store.root / "ai" / "runs").glob("*.json"))
    assert len(runs) == 5 and all(json.loads(p.read_text())["config"]["api_key_env"] == "OPENAI_API_KEY" for p in runs)


def test_bad_input_is_one_line(store, capsys):
    assert main(["judge", "--store", str(store.root), "--model", "m", "--shard", "3/2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "prefkit judge: error: --shard '3/2': K must be between 1 and N"
    assert main(["revise", "--store", str(store.root), "--model", "m"]) == 1
    assert "--clair" in capsys.readouterr().err
    bad = store.root.parent / "constitution.yaml"
    bad.write_text("name: x\nprinciples:\n  - name: only-a-name\n")
    assert main(["critique", "--store", str(store.root), "--model", "m", "--constitution", str(bad)]) == 1
    assert "principle 1 needs `name`, `critique` and `revision`" in capsys.readouterr().err
    assert main(["judge", "--store", str(store.root), "--model", "m", "--template", "nope"]) == 1
    assert "no template 'nope'" in capsys.readouterr().err


def test_refused_key_stops_the_job_with_one_line(store, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123456")
    with OpenAIServer(lambda r: Reply(status=401, message="Incorrect API key provided: sk-wrong-key-123456")) as s:
        code = main(
            [
                "judge",
                "--store",
                str(store.root),
                "--base-url",
                s.base_url,
                "--model",
                "m",
                "--mode",
                "text",
                "--no-progress",
                "--concurrency",
                "2",
            ]
        )
        sent = s.stats()["requests"]
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "HTTP 401" in err and "sk-wrong" not in err
    assert sent <= 4, "the job stopped instead of failing every item"
    assert store.count("judgements") == 0
