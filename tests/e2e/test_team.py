"""A labelling team across app servers: three `prefkit app` servers share one PostgreSQL queue and
one store on S3 (SeaweedFS, tests/support/s3.py); sixty annotators — 58 processes through the
library's board interface, two through headless Chromium against the servers — label 20 items
with overlap 2. Mid-run one server is killed with SIGKILL while a browser annotator holds a lease
through it. Afterwards: exactly 40 judgements, every item judged twice, nobody twice, the dead
server's lease served again to others, every acknowledged answer in the store, and the store
reads whole (no half-written object)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import yaml
from prefkit.annotate.app.items import judgement_item_key
from prefkit.annotate.app.project import MIN_ROUNDS, hash_password
from prefkit.annotate.store import Store

from tests.annotate.app.conftest import make_store
from tests.e2e import team_workers
from tests.support.browser import chromium, current_item, free_port, log_in, press_until, until, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
N_ITEMS, K, N_BOARD, BROWSERS = 20, 2, 58, ("web0", "web1")
PASSWORD = "team password"
LEASE_SECONDS = 15  # long enough for a browser on a loaded machine, short enough to wait out


def _project(path: Path) -> Path:
    pw = hash_password(PASSWORD, rounds=MIN_ROUNDS)  # one hash for all: each costs 0.1 s
    logins = [f"b{i:02d}" for i in range(N_BOARD)] + list(BROWSERS)
    path.write_text(
        yaml.safe_dump(
            {
                "name": "team",
                "min_seconds": 0,
                "strength": False,
                "lease_minutes": LEASE_SECONDS / 60,
                "tasks": [{"kind": "pairwise", "overlap": K}],
                "users": [{"login": u, "role": "annotator", "password_hash": pw} for u in logins],
            }
        )
    )
    return path


def _server(store: str, project: Path, queue: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "prefkit.cli", "app", "--store", store, "--project", str(project)]
    cmd += ["--queue", queue, "--port", str(port)]
    out = open(log, "w")  # a file, not a pipe: nobody has to keep reading it
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    out.close()
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NEXT_JS = """b => { const e = document.querySelector('[class*=st-key-item-]');
    return (e && e.className !== b) || document.body.innerText.includes('Nothing left to label'); }"""


def _answer(page) -> bool:
    """Press 1 and Enter on the item shown; True once the next item (or the end) is on screen."""
    if page.get_by_text("Nothing left to label").is_visible():
        return False
    before = current_item(page)
    selected = page.get_by_text("Selected: ").filter(has_text="is better")
    left = page.get_by_text("Nothing left to label")
    try:  # the item can go meanwhile: a lease that ran out while the page waited, taken by others
        press_until(page, "1", lambda: selected.is_visible() or left.is_visible())
    except AssertionError:
        raise AssertionError(f"pressing 1 selects nothing; the page says:\n{page.locator('body').inner_text()}")  # noqa: B904
    if left.is_visible():
        return False
    # Enter again until the page moves on: on a loaded machine a key can land while the page reruns
    # (a second Enter on the next item does nothing: nothing is selected there yet)
    until(lambda: page.locator("body").press("Enter"), lambda: page.evaluate(NEXT_JS, before), tries=20, pause=1.0)
    return True


def _lease(queue: str, login: str) -> str | None:
    with psycopg.connect(queue) as con:
        row = con.execute(
            "SELECT item FROM prefkit_leases WHERE annotator = %s AND expires > clock_timestamp()", (login,)
        ).fetchone()
    return row[0] if row else None


def _counted(queue: str) -> int:
    with psycopg.connect(queue) as con:
        return con.execute("SELECT count(*) FROM prefkit_done WHERE status IN ('submitted', 'flagged')").fetchone()[0]


@pytest.fixture
def s3_store(s3_server, monkeypatch, tmp_path) -> str:
    """A store in a fresh bucket; every process this test starts inherits the AWS variables."""
    for name in ("AWS_PROFILE", "PREFKIT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFKIT_STATE_DIR", str(tmp_path / "state"))
    url = f"s3://{s3_server.bucket()}/team"
    make_store(url, n_prompts=N_ITEMS)
    return url


def test_three_servers_sixty_annotators_one_queue(tmp_path, postgres_server, s3_store):  # noqa: F811
    started = time.monotonic()
    store = s3_store
    project = _project(tmp_path / "project.yaml")
    queue = postgres_server.create_database()
    servers = [_server(store, project, queue, tmp_path / f"app{i}.log") for i in range(3)]
    acks, stop_file = tmp_path / "acks", tmp_path / "stop"
    acks.mkdir()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["prefkit.annotate.app.board", "prefkit.annotate.app.queue_pg", "tests.e2e.team_workers"]
    )
    go, ready = ctx.Event(), ctx.Queue()
    budget = 90  # seconds of labelling, from `go`
    phases = {}
    logins = [f"b{i:02d}" for i in range(N_BOARD)]
    spawner = ctx.Process(
        target=team_workers.team,
        args=(str(store), str(project), queue, logins, str(acks), ready, go, str(stop_file), budget),
    )
    browser_acks: Counter = Counter()
    try:
        for proc, url in servers:
            wait_http(f"{url}/_stcore/health", proc, timeout=180)
        phases["servers up"] = time.monotonic() - started
        spawner.start()  # it reads the store once and forks the 58; each says so and waits for `go`
        for _ in logins:
            ready.get(timeout=180)
        phases["annotators ready"] = time.monotonic() - started
        (_, url0), (victim, url1), _ = servers
        with chromium() as browser:
            page0, page1 = browser.new_page(), browser.new_page()
            log_in(page0, url0, "web0", PASSWORD)
            log_in(page1, url1, "web1", PASSWORD)
            current_item(page0), current_item(page1)
            browser_acks["web0"] += _answer(page0)
            browser_acks["web1"] += _answer(page1)  # acknowledged through the server about to die
            current_item(page1)
            orphan = _lease(queue, "web1")  # what web1 holds through that server
            assert orphan is not None and browser_acks["web1"] == 1
            phases["browsers in"] = time.monotonic() - started
            go.set()  # the 58 start labelling
            deadline = time.time() + budget
            os.kill(victim.pid, signal.SIGKILL)  # mid-run: its Streamlit server dies with it
            victim.wait(timeout=30)
            while _answer(page0):  # web0 labels on through its own server until nothing is left
                browser_acks["web0"] += 1
            phases["web0 done"] = time.monotonic() - started
            while _counted(queue) < N_ITEMS * K and time.time() < deadline:
                time.sleep(0.5)  # the orphaned lease has to run out first; then someone takes it
            phases["all 40"] = time.monotonic() - started
        stop_file.touch()
        spawner.join(timeout=90)
    finally:
        stop_file.touch()
        go.set()
        if spawner.pid is not None:
            spawner.join(timeout=60)
            if spawner.is_alive():
                spawner.kill()
        for proc, _ in servers:
            _stop(proc)

    errors = {p.name: p.read_text() for p in acks.glob("*.error")}
    assert errors == {}, next(iter(errors.values()))
    assert spawner.exitcode == 0 and sorted(p.name for p in acks.iterdir()) == logins

    reread = Store(store)
    assert reread.problems(deep=True) == []  # no half-written part anywhere
    rows = reread.read("judgements").to_pylist()
    keys = [judgement_item_key(r["kind"], r["prompt_id"], r["response_ids"]) for r in rows]
    counted = [k for k, r in zip(keys, rows, strict=True) if r["status"] in ("submitted", "flagged")]
    assert len(counted) == N_ITEMS * K == 40
    assert Counter(counted) == {k: K for k in set(counted)} and len(set(counted)) == N_ITEMS  # none past k
    pairs = Counter(zip(keys, (r["annotator"] for r in rows), strict=True))
    assert max(pairs.values()) == 1, "somebody judged an item twice"
    # the lease web1 held through the killed server went to two other people
    judges = {r["annotator"] for k, r in zip(keys, rows, strict=True) if k == orphan}
    assert len(judges) == K and "web1" not in judges
    # every acknowledged answer is there: the board processes' ids, and the browsers' counts
    acked = [line for p in acks.iterdir() for line in p.read_text().split()]
    ids = Counter(r["judgement_id"] for r in rows)
    assert all(ids[j] == 1 for j in acked) and len(acked) == len(set(acked))
    by_annotator = Counter(r["annotator"] for r in rows)
    for login in BROWSERS:
        assert by_annotator[login] == browser_acks[login], login
    assert len(acked) + sum(browser_acks.values()) == len(rows)
    print(f"team test: {time.monotonic() - started:.1f} s {phases}; browser answers {dict(browser_acks)}")
