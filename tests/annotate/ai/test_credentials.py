"""`user:password@` in --base-url is sent to the server (as HTTP Basic auth) and saved nowhere: not in
run logs, the cache (capabilities are keyed by server), rows, generation metadata, error texts the
server echoes back, or what the commands print."""

from __future__ import annotations

import base64
import json

import pyarrow.parquet as pq
from prefkit.annotate.ai.transport import redact_url

from prefkit.cli.ai import main
from tests.support.openai_server import OpenAIServer, Reply

PASSWORD = "s3cr3t-pw"


def test_redact_url_strips_the_userinfo_of_every_url_in_a_text():
    assert redact_url("http://user:pw@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://token@host/v1|model") == "https://***@host/v1|model"
    assert redact_url("a p@ss@word in http://u:p@ss@h/x, then http://h/y@z") == (
        "a p@ss@word in http://***@h/x, then http://h/y@z"
    )
    assert redact_url("http://host/v1") == "http://host/v1" and redact_url("no url@all") == "no url@all"


def _everything_stored(root) -> list[tuple[str, bytes]]:
    """Every file's bytes, and every Parquet file's values decoded (its pages may be compressed)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        found.append((str(path), path.read_bytes()))
        if path.suffix == ".parquet":
            found.append((f"{path} (values)", json.dumps(pq.read_table(path).to_pylist(), default=str).encode()))
    return found


def test_credentials_in_the_base_url_are_used_but_never_saved_or_printed(store, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-credentials-test")

    def answer(request):
        text = request["messages"][-1]["content"]
        if request["model"] == "refused-m":
            return Reply(status=401, message=f"{secret_url} does not know you")
        if "Question number 1" in text:  # a server that echoes the URL it was called at in its errors
            return Reply(status=400, message=f"no route for {secret_url}/chat/completions")
        if "[Response A]" in text:
            return "A\nclearer"
        return '{"ok": true}' if '"ok"' in text else "a generated answer"

    with OpenAIServer(answer) as server:
        secret_url = server.base_url.replace("http://", f"http://user:{PASSWORD}@")

        def run(*args: str) -> int:
            return main(
                [*args, "--store", str(store.root), "--base-url", secret_url, "--no-progress", "--timeout", "5"]
            )

        assert run("judge", "--model", "cli-m") == 0
        assert run("generate", "--model", "cli-m", "-n", "1") == 1, "prompt 1 fails: exit 1, re-run to retry"
        assert run("judge", "--model", "refused-m", "--mode", "text") == 1
        auths = {entry.auth for entry in server.log}
    out, err = capsys.readouterr()

    # The credentials did reach the server: httpx turns a URL's userinfo into Basic auth.
    assert auths == {"Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()}
    con = store.connect()
    errors = [e for (e,) in con.execute("SELECT error FROM judgements WHERE status = 'error'").fetchall()]
    assert errors and all("no route for http://***@127.0.0.1" in e for e in errors), errors
    assert con.execute("SELECT count(*) FROM responses WHERE origin = 'generated'").fetchone()[0] == 3
    logs = sorted((store.root / "ai" / "runs").glob("*.json"))
    assert len(logs) == 2 and all(
        json.loads(p.read_text())["config"]["base_url"].startswith("http://***@") for p in logs
    )
    assert "does not know you" in err and "***@127.0.0.1" in err

    assert PASSWORD not in out + err
    leaks = [name for name, data in _everything_stored(store.root) if PASSWORD.encode() in data]
    assert leaks == [], f"the password is saved in {leaks}"
