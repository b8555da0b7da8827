"""The pages under Streamlit's AppTest: login, annotate, dashboard, review, learn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from prefkit.annotate.app import learn
from prefkit.annotate.store import Store
from streamlit.testing.v1 import AppTest

from tests.annotate.app.conftest import PASSWORDS, make_store, password_hash
from tests.support.factories import pairwise

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path, monkeypatch):
    store = make_store(tmp_path / "store", n_prompts=4)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    return store


def _login_project(tmp_path, monkeypatch) -> None:
    f = tmp_path / "project.yaml"
    users = [{"login": "alice", "password_hash": password_hash("right")}]
    users += [
        {"login": login, "role": role, "password_hash": password_hash(PASSWORDS[login])}
        for login, role in (("rita", "reviewer"), ("lee", "admin"))
    ]
    f.write_text(yaml.safe_dump({"name": "t", "min_seconds": 0, "users": users}))
    monkeypatch.setenv("PREFKIT_PROJECT", str(f))


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def test_wrong_password_gives_no_access_and_writes_nothing(env, tmp_path, monkeypatch):
    _login_project(tmp_path, monkeypatch)
    at = _app().run()
    at.text_input(key="login_name").input("alice")
    at.text_input(key="login_password").input("wrong")
    at.button[0].click().run()
    assert any("Wrong login or password" in e.value for e in at.error)
    assert not any(b.label == "Submit" for b in at.button)  # no annotate page
    assert "_authenticated_login" not in at.session_state
    assert env.is_empty("judgements") and not (env.root / "app").exists()

    at.text_input(key="login_password").input("right")
    at.button[0].click().run()
    assert any(b.label == "A is better" for b in at.button)


def _try_login(at: AppTest, login: str, password: str) -> AppTest:
    at.text_input(key="login_name").input(login)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def test_many_wrong_passwords_then_the_right_one_does_not_log_in(env, tmp_path, monkeypatch):
    """The back-off: after repeated failures even the right password is not checked until the wait
    is over, so guessing cannot go at full speed."""
    _login_project(tmp_path, monkeypatch)
    at = _app().run()
    for i in range(50):
        _try_login(at, "alice", f"guess {i}")
    assert any("Too many failed logins" in e.value for e in at.error)
    _try_login(at, "alice", "right")
    assert "_authenticated_login" not in at.session_state
    assert any("Too many failed logins. Try again in" in e.value for e in at.error)
    assert not any(b.label == "A is better" for b in at.button)
    # another person, from the same (shared) address, is not locked out by alice's back-off yet
    _try_login(at, "lee", PASSWORDS["lee"])
    assert at.session_state["_authenticated_login"] == "lee"


def test_a_mistyped_store_is_refused_not_created(tmp_path, monkeypatch):
    typo = tmp_path / "stroe"
    monkeypatch.setenv("PREFKIT_STORE", str(typo))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    at = _app().run()
    assert any("Cannot open the store" in e.value and str(typo) in e.value for e in at.error)
    assert not any("Nothing left" in s.value for s in at.success)
    assert not typo.exists()


def test_model_images_are_shown_as_links_not_loaded(tmp_path, monkeypatch):
    pixel = "http://127.0.0.1:9/pixel.png"
    texts = [f"Look: ![tracker]({pixel}) and ![ref][p]\n\n[p]: {pixel}", "Plain answer."]
    store = make_store(tmp_path / "store", n_prompts=1, texts=texts)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    at = _app().run()
    shown = " ".join(m.value for m in at.markdown)
    assert "tracker" in shown and pixel in shown  # the text and the address stay readable
    assert "![" not in shown  # but no Markdown image is left for the browser to fetch


def test_open_mode_annotate_submits_a_judgement(env):
    at = _app().run()
    assert not at.exception
    next(b for b in at.button if b.label == "Tie").click().run()
    next(b for b in at.button if b.label == "Submit").click().run()
    rows = Store(env.root).read("judgements").to_pylist()
    assert [(r["annotator"], r["scores"]) for r in rows] == [("local", [0.5, 0.5])]


def _labelled_store(store):
    con = store.connect()
    pairs = con.execute(
        "SELECT prompt_id, list_sort(list(response_id)) FROM responses GROUP BY 1 ORDER BY 1"
    ).fetchall()

    class P:
        def __init__(self, pid):
            self.prompt_id = pid

    class R:
        def __init__(self, rid):
            self.response_id = rid

    rows = []
    for n, (pid, (a, b)) in enumerate(pairs):
        rows.append(pairwise(P(pid), R(a), R(b), winner=0, annotator="alice"))
        rows.append(pairwise(P(pid), R(b), R(a), winner=0 if n % 2 else 1, annotator="bob"))  # disagrees on odd items
        rows.append(pairwise(P(pid), R(a), R(b), winner=0, annotator="ai:judge:t", annotator_type="ai"))
    store.append("judgements", rows)


def _dashboard():
    from prefkit.annotate.app.pages import dashboard

    dashboard.page()


def _review():
    from prefkit.annotate.app.pages import review

    review.page()


def test_dashboard_shows_agreement_and_biases(env):
    _labelled_store(env)
    at = AppTest.from_function(_dashboard, default_timeout=60).run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["percent agreement"] == "0.50"
    assert values["human vs AI (2 items)"] == "1.00"  # split items have no majority and are left out
    assert "Fleiss' κ" in values and "Krippendorff's α" in values and "left response wins" in values


def test_review_settles_a_disagreement_as_adjudicator(env):
    _labelled_store(env)
    at = AppTest.from_function(_review, default_timeout=60).run()
    assert not at.exception
    assert "2 items to settle" in " ".join(c.value for c in at.caption)
    seg = at.get("button_group")[0]
    seg.set_value("second").run()
    next(b for b in at.button if b.label == "Settle").click().run()
    adj = Store(env.root).read("judgements", "annotator_type = 'adjudicator'").to_pylist()
    assert len(adj) == 1 and adj[0]["scores"] == [0.0, 1.0] and adj[0]["annotator"] == "local"
    settled = json.loads(adj[0]["metadata"])["adjudicates"]
    assert len(settled) == 2 and adj[0]["response_ids"] == sorted(adj[0]["response_ids"])


def _dpo():
    from prefkit.annotate.app.pages import learn

    learn.dpo_page()


def _run():
    from prefkit.annotate.app.pages import learn

    learn.run_page()


def test_dpo_explorer_numbers():
    at = AppTest.from_function(_dpo, default_timeout=60).run()
    at.slider(key="beta").set_value(0.5).run()
    out = learn.dpo(0.5, 2.0, -1.0)
    assert at.metric[0].value == f"{float(out['loss']):.4f}"
    assert float(out["loss"]) == pytest.approx(-math.log(1 / (1 + math.exp(-1.5))))  # β·Δ = 0.5 · 3
    assert float(out["grad_weight"]) == pytest.approx(1 / (1 + math.exp(1.5)))


def test_run_page_follows_a_growing_metrics_file(tmp_path, monkeypatch):
    f = tmp_path / "metrics.jsonl"
    f.write_text(
        "".join(json.dumps({"step": i, "loss": 0.7 - i / 100, "rewards/margins": i / 10}) + "\n" for i in range(3))
    )
    rows, offset = learn.read_metrics(f)
    assert [r["step"] for r in rows] == [0, 1, 2]
    with open(f, "a") as fh:
        fh.write(json.dumps({"step": 3, "loss": 0.6}) + "\n" + '{"step": 4, "lo')  # last line still being written
    more, offset2 = learn.read_metrics(f, offset)
    assert [r["step"] for r in more] == [3] and offset2 < f.stat().st_size
    monkeypatch.setenv("PREFKIT_RUNS", str(tmp_path.parent))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)  # open mode: the local user is an admin
    at = AppTest.from_function(_run, default_timeout=60).run()
    at.text_input(key="run_dir").input(str(tmp_path)).run()
    assert not at.exception
    assert "4 logged steps" in " ".join(c.value for c in at.caption)
    at.text_input(key="run_dir").input(tmp_path.name).run()  # relative to the runs folder
    assert "4 logged steps" in " ".join(c.value for c in at.caption)


def test_run_page_reads_only_inside_the_runs_folder(tmp_path, monkeypatch):
    runs, outside = tmp_path / "runs", tmp_path / "secret"
    (runs / "ok").mkdir(parents=True)
    outside.mkdir()
    (outside / "metrics.jsonl").write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    (runs / "link").symlink_to(outside)
    monkeypatch.setenv("PREFKIT_RUNS", str(runs))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    at = AppTest.from_function(_run, default_timeout=60).run()
    for attempt in (str(outside), "../secret", "link", "/"):
        at.text_input(key="run_dir").input(attempt).run()
        assert not at.exception
        assert any("outside the runs folder" in e.value for e in at.error), attempt
        assert "logged steps" not in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize(
    "login, page, refused",
    [
        ("alice", "_dashboard", "Reviewers and admins only"),
        ("rita", "_run", "Admins only"),
        ("alice", "_run", "Admins only"),
    ],
)
def test_lead_pages_refuse_other_roles(env, tmp_path, monkeypatch, login, page, refused):
    _login_project(tmp_path, monkeypatch)
    _labelled_store(env)
    monkeypatch.setenv("PREFKIT_RUNS", str(tmp_path))
    at = AppTest.from_function(globals()[page], default_timeout=60)
    at.session_state["_authenticated_login"] = login
    at.run()
    assert any(refused in e.value for e in at.error)
    assert not at.metric and not at.text_input


def test_reviewers_see_the_dashboard_and_admins_the_run_page(env, tmp_path, monkeypatch):
    _login_project(tmp_path, monkeypatch)
    _labelled_store(env)
    monkeypatch.setenv("PREFKIT_RUNS", str(tmp_path))
    for login, page in (("rita", _dashboard), ("lee", _dashboard), ("lee", _run)):
        at = AppTest.from_function(page, default_timeout=60)
        at.session_state["_authenticated_login"] = login
        at.run()
        assert not at.exception and not at.error, (login, page)


def test_rating_and_skip_through_the_page(env):
    at = _app().run()  # no project file: open mode with every kind
    at.get("button_group")[0].set_value("rating").run()
    assert not at.exception
    rate = next(g for g in at.get("button_group") if "rate-overall" in (g.key or ""))
    rate.set_value(4).run()
    next(b for b in at.button if b.label == "Submit").click().run()
    at.selectbox[0].set_value("offensive content").run()
    next(b for b in at.button if b.label == "Skip").click().run()
    rows = Store(env.root).read("judgements").to_pylist()
    assert [(r["kind"], r["status"], r["scores"]) for r in rows] == [
        ("rating", "submitted", [4.0]),
        ("rating", "skipped", []),
    ]
    assert rows[1]["rationale"] == "offensive content"


def test_review_page_refuses_annotators(env, tmp_path, monkeypatch):
    _login_project(tmp_path, monkeypatch)
    _labelled_store(env)
    at = AppTest.from_function(_review, default_timeout=60)
    at.session_state["_authenticated_login"] = "alice"  # an annotator, logged in
    at.run()
    assert any("Reviewers only" in e.value for e in at.error)
    assert not any(b.label == "Settle" for b in at.button)


def test_an_item_leased_to_someone_else_is_not_called_the_end(tmp_path, monkeypatch):
    """One item, k = 1, leased to bob: alice is told it may come back, not that the work is done; once
    bob answers, the work is done for her too."""
    from prefkit.annotate.app.board import Board
    from prefkit.annotate.app.project import load_project
    from prefkit.annotate.app.submit import pairwise as vote

    store = make_store(tmp_path / "store", n_prompts=1)
    f = tmp_path / "project.yaml"
    users = [{"login": u, "password_hash": password_hash("pw")} for u in ("alice", "bob")]
    f.write_text(yaml.safe_dump({"name": "t", "min_seconds": 0, "lease_minutes": 7, "users": users}))
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.setenv("PREFKIT_PROJECT", str(f))
    board = Board(store, load_project(str(f)))
    shown = board.show("bob", "pairwise")
    assert shown is not None

    at = _try_login(_app().run(), "alice", "pw")
    (waiting,) = [i.value for i in at.info if "Nothing left to label" in i.value]
    assert "1 judgements are still open" in waiting and "after 7 minutes" in waiting
    assert not any("Thank you" in s.value for s in at.success)
    assert any(b.label == "Check again" for b in at.button)

    board.submit(shown, vote(board.project, shown, "A"))
    at = _try_login(_app().run(), "alice", "pw")
    assert any("Nothing left to label" in s.value and "Thank you" in s.value for s in at.success)
