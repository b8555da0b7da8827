"""The labelling app end to end in headless Chromium: log in, label every kind by keyboard and by
clicks, and read exactly those judgements back from the Parquet store. Model text carrying
<script> and <img onerror> shows as text, and no dialog ever opens; a Markdown image in it is never
fetched; a crash shows visitors no traceback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prefkit.annotate.app.items import split_steps
from prefkit.annotate.app.project import MIN_ROUNDS, hash_password
from prefkit.annotate.contract import Prompt, Response
from prefkit.annotate.store import Store

from tests.support.browser import (
    ITEM_JS,
    chromium,
    current_item,
    log_in,
    press_until,
    serve_app,
    until,
    wait_next_item,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # one Chromium session, ~45 s on 2 cores
ROOT = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script> and <img src=x onerror=alert(1)>"
PASSWORD = "correct horse"
# True while Streamlit reruns the script (its status widget shows) or still shows elements of the
# previous run (marked data-stale="true").
BUSY_JS = (
    "() => !!document.querySelector('[data-testid=stStatusWidget]') || !!document.querySelector('[data-stale=true]')"
)


def _texts(i: int, n: int) -> list[str]:
    return [f"Reply {j} to Q{i}: {XSS}\n\nStep 2: the answer is {i + j}." for j in range(n)]


class Pixel:
    """A loopback HTTP server that counts every request: the address a tracking image points to."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pixel.gif"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pixel():
    p = Pixel()
    yield p
    p.close()


def _make_store(path: Path, image_url: str) -> Store:
    store = Store(path)
    prompts, responses = [], []
    for i in range(12):  # Q0-Q7: two responses (pairwise); Q8-Q11: three (ranking)
        text = f"Q{i}: what is {i} plus one? See ![the chart]({image_url}?q={i})"
        p = Prompt(messages=[{"role": "user", "content": text}], source="e2e")
        prompts.append(p)
        responses += [Response(prompt_id=p.prompt_id, content=t) for t in _texts(i, 2 if i < 8 else 3)]
    with store.batch() as b:
        b.append("prompts", prompts)
        b.append("responses", responses)
    return store


@pytest.fixture(scope="module")
def server(tmp_path_factory, pixel):
    tmp = tmp_path_factory.mktemp("app")
    store = _make_store(tmp / "store", pixel.url)
    project = tmp / "project.yaml"
    project.write_text(
        yaml.safe_dump(
            {
                "name": "e2e",
                "min_seconds": 0,
                "strength": False,
                "tasks": [{"kind": k, "overlap": 1} for k in ("pairwise", "ranking", "binary", "edit", "steps")],
                "users": [
                    {"login": "alice", "role": "annotator", "password_hash": hash_password(PASSWORD, rounds=MIN_ROUNDS)}
                ],
            }
        )
    )
    with serve_app(store.root, project) as url:
        yield url, store


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _read_ids(page, by_text: dict[str, str], letters: str) -> list[str]:
    ids = []
    for letter in letters:
        text = page.locator(f".st-key-response-{letter}").first.inner_text(timeout=5_000).strip()
        label = next(line for line in text.splitlines() if line.startswith("Reply "))
        ids.append(by_text[label.split(":")[0]])
    return ids


def _response_ids(page, store: Store, letters: str, tries: int = 40) -> list[str]:
    """The ids of the responses shown under A, B, … (read off the page and looked up by text), once
    the shown item has settled: under load the page may still be rerunning onto the next item, its
    old responses still on screen (or half replaced). So the item key and the ids must read the
    same twice in a row, 300 ms apart, with no rerun in progress and no stale element shown."""
    from playwright.sync_api import Error as PlaywrightError

    by_text = {r["content"].split(":")[0]: r["response_id"] for r in store.read("responses").to_pylist()}
    last = None
    for _ in range(tries):
        try:
            busy = page.evaluate(BUSY_JS)
            seen = (page.evaluate(ITEM_JS), _read_ids(page, by_text, letters), page.evaluate(ITEM_JS))
        except (PlaywrightError, StopIteration, KeyError):  # an element swapped out while read
            busy, seen = True, None
        if not busy and seen is not None and seen[0] == seen[2] and seen == last:
            return seen[1]
        last = None if busy else seen
        page.wait_for_timeout(300)
    raise AssertionError(f"the responses shown never settled (last read: {last})")


def _pick(page, key_part: str, text: str) -> None:
    """Click the option `text` of the segmented control whose key contains `key_part`."""
    page.locator(f"[class*='{key_part}']").get_by_text(text, exact=True).first.click()


def test_label_every_kind_and_read_it_back(server, browser):
    url, store = server
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)

    # a wrong password: no access, nothing written
    page.get_by_role("textbox", name="Login").fill("alice")
    page.get_by_role("textbox", name="Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong login or password.").wait_for(timeout=20_000)
    assert page.locator(".st-key-prompt").count() == 0
    assert store.is_empty("judgements")

    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    question = current_item(page)

    # model text shows as text: the payload is visible, and no script ran
    assert "<script>alert(1)</script>" in page.locator(".st-key-response-A").inner_text()
    assert "<img src=x onerror=alert(1)>" in page.locator(".st-key-response-A").inner_text()
    assert page.locator(".st-key-response-A img").count() == 0

    expected = []
    # five pairwise items: keyboard (digit, Enter) and clicks, alternating
    plan = [("key", "1"), ("click", "B is better"), ("key", "3"), ("click", "Both bad"), ("key", "2")]
    scores = {"1": [1.0, 0.0], "2": [0.0, 1.0], "3": [0.5, 0.5], "B is better": [0.0, 1.0], "Both bad": [0.0, 0.0]}
    for how, what in plan:
        ids = _response_ids(page, store, "AB")
        # again until it shows: on a loaded machine a key or click can land while the page reruns
        if how == "key":
            selected = (
                page.get_by_text("Selected: ").filter(has_text="is better").or_(page.get_by_text("Selected: Tie"))
            )
            press_until(page, what, selected.is_visible)
            page.locator("body").press("Enter")
        else:
            button = page.get_by_role("button", name=what)
            until(button.click, page.get_by_text(f"Selected: {what}").is_visible)
            page.get_by_role("button", name="Submit").click()
        expected.append(("pairwise", ids, scores[what]))
        wait_next_item(page, question)
        question = current_item(page)

    # one ranking: C first, A and B tied second
    _pick(page, "st-key-task", "ranking")
    question = current_item(page, "ranking")
    ids = _response_ids(page, store, "ABC")
    for i, rank in enumerate([2, 2, 1]):
        _pick(page, f"-rank-{i}", str(rank))
        page.wait_for_timeout(300)
    page.get_by_role("button", name="Submit").click()
    expected.append(("ranking", ids, [-2.0, -2.0, -1.0]))
    wait_next_item(page, question)

    # one binary, by keyboard: 2 = bad
    _pick(page, "st-key-task", "binary")
    question = current_item(page, "binary")
    ids = _response_ids(page, store, "A")
    page.evaluate("document.activeElement.blur()")  # keys go to the page, not the task button just clicked
    press_until(page, "2", lambda: page.get_by_text("Selected: 👎 Bad").is_visible())  # after a task switch
    page.locator("body").press("Enter")
    expected.append(("binary", ids, [0.0]))
    wait_next_item(page, question)

    # one edit: rewrite the response, see the diff, submit
    _pick(page, "st-key-task", "edit")
    question = current_item(page, "edit")
    box = page.locator("[class*='-edit'] textarea")
    original_id = _response_ids(page, store, "A")[0]
    original = store.read("responses", "response_id = ?", [original_id]).column("content")[0].as_py()
    revised = original.replace("Step 2: the answer is", "Step 2: the corrected answer is")
    box.fill(revised)
    box.press("Control+Enter")
    page.get_by_text("{+corrected +}").wait_for(timeout=20_000)
    page.get_by_role("button", name="Submit edit").click()
    expected.append(("revision", [original_id, None], [0.0, 1.0]))
    wait_next_item(page, question)

    # one steps item: step 1 right, step 2 wrong
    _pick(page, "st-key-task", "steps")
    question = current_item(page, "steps")
    step_id = _response_ids(page, store, "A")[0]
    _pick(page, "-step-0", "right")
    page.wait_for_timeout(300)
    _pick(page, "-step-1", "wrong")
    page.wait_for_timeout(300)
    page.get_by_role("button", name="Submit").click()
    expected.append(("steps", [step_id], [0.5]))
    wait_next_item(page, question)

    assert dialogs == []
    rows = store.read("judgements").to_pylist()
    assert [r["kind"] for r in rows] == [e[0] for e in expected], [(r["kind"], r["status"], r["scores"]) for r in rows]
    for row, (kind, ids, want) in zip(rows, expected, strict=True):
        assert (row["kind"], row["annotator"], row["annotator_type"], row["status"]) == (
            kind,
            "alice",
            "human",
            "submitted",
        )
        assert row["scores"] == want
        if kind != "revision":  # the revised id is only known once stored; checked below
            assert row["response_ids"] == ids
        assert row["duration_ms"] > 0
    edit_row, steps_row = rows[-2], rows[-1]
    new = store.read("responses", "origin = 'human_edit'").to_pylist()
    assert len(new) == 1 and new[0]["content"] == revised and new[0]["parent_id"] == original_id
    assert new[0]["model"] == "human:alice"
    assert edit_row["response_ids"] == [original_id, new[0]["response_id"]]
    assert steps_row["step_labels"] == [1, -1]
    step_text = store.read("responses", "response_id = ?", [step_id]).column("content")[0].as_py()
    assert json.loads(steps_row["metadata"])["steps"] == split_steps(step_text)
    assert len(split_steps(step_text)) == 2


def test_images_in_model_text_are_not_fetched(server, browser, pixel):
    """A Markdown image in a prompt or response must not make the annotator's browser call its
    author's server (who labels, when, from where); it shows as a link instead. An annotator sees
    neither the lead pages nor the page that reads run folders on the server."""
    url, _ = server
    page = browser.new_page()
    log_in(page, url, "alice", PASSWORD)
    current_item(page)
    page.get_by_text("plus one? See").first.wait_for(timeout=20_000)
    page.wait_for_timeout(1500)  # time enough for an <img> to be requested
    assert pixel.hits == []
    assert page.get_by_role("link", name="the chart").count() >= 1  # shown as a link instead
    assert page.locator("[class*=st-key-item-] img").count() == 0
    nav = page.locator("[data-testid=stSidebarNav]").inner_text()
    assert "Annotate" in nav and "Dashboard" not in nav and "Training run" not in nav and "Review" not in nav
    page.close()


def test_a_crash_shows_visitors_no_traceback(tmp_path, browser):
    """Before anyone logs in, a failing page must not hand out the stack trace (paths, code, the
    error's text); the details stay in the server's log."""
    store = Store(tmp_path / "store")
    store.append("prompts", [Prompt(messages=[{"role": "user", "content": "Q"}], source="e2e")])
    project = tmp_path / "project.yaml"
    users = [{"login": "alice", "password_hash": hash_password(PASSWORD, rounds=MIN_ROUNDS)}]
    project.write_text(yaml.safe_dump({"name": "crash", "users": users}))
    with serve_app(store.root, project) as url:
        project.write_text("users: [{login: alice, password_hash: SECRET-HASH-TEXT}]\n")  # broken meanwhile
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("This app has encountered an error").wait_for(timeout=30_000)
        text = page.locator("body").inner_text()
        page.close()
    for leak in ("Traceback", "ProjectError", str(project), "SECRET-HASH-TEXT", "project.py"):
        assert leak not in text, leak
