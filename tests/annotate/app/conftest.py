"""Small stores and projects for the app's tests (real Parquet, real SQLite)."""

from __future__ import annotations

import functools

import pytest
from prefkit.annotate.app.project import MIN_ROUNDS, Project, Task, User, hash_password
from prefkit.annotate.contract import Prompt, Response
from prefkit.annotate.store import Store

PASSWORDS = {"alice": "wonderland", "bob": "builder", "rita": "reviewer!", "lee": "the lead"}


@functools.cache
def password_hash(password: str) -> str:
    """A hash at the weakest strength the app accepts, made once per test process (each costs
    about 0.1 s here; the app refuses anything cheaper, so tests cannot go lower)."""
    return hash_password(password, rounds=MIN_ROUNDS)


def make_store(path, n_prompts: int = 20, n_responses: int = 2, texts=None) -> Store:
    store = Store(path)
    prompts, responses = [], []
    for i in range(n_prompts):
        p = Prompt(messages=[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}], source="test")
        prompts.append(p)
        for j in range(n_responses):
            text = texts[j] if texts else f"Answer {j} to {i}: it is {2 * i + j}. Step 1: add.\n\nStep 2: done."
            responses.append(Response(prompt_id=p.prompt_id, content=text, model=f"model-{j}"))
    if prompts:
        with store.batch() as b:
            b.append("prompts", prompts)
            b.append("responses", responses)
    return store


def make_project(kinds=("pairwise",), overlap: int = 1, **kw) -> Project:
    users = [
        User("alice", "annotator", password_hash(PASSWORDS["alice"])),
        User("bob", "annotator", password_hash(PASSWORDS["bob"])),
        User("rita", "reviewer", password_hash(PASSWORDS["rita"])),
    ]
    kw.setdefault("min_seconds", 0.0)
    return Project(name="t", tasks=[Task(k, overlap) for k in kinds], users=users, **kw)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


@pytest.fixture(autouse=True)
def fresh_login_guard():
    """The login back-off is one per process (st.cache_resource): start every test without the
    failures of the tests before it."""
    from prefkit.annotate.app import ui

    ui._login_guard.clear()
    yield
    ui._login_guard.clear()
