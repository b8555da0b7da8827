"""Shared builders for the AI tests: a small store of prompts with several responses each."""

from __future__ import annotations

import pytest
from prefkit.annotate.store import Store

from tests.support.factories import prompt, response


def fill(store: Store, prompts: int, responses: int) -> Store:
    ps = [prompt(f"Question number {i}: what is {i} + {i}?") for i in range(prompts)]
    store.append("prompts", ps)
    store.append(
        "responses",
        [response(p, f"Answer {k} to question {i}: {i + i + k}") for i, p in enumerate(ps) for k in range(responses)],
    )
    return store


@pytest.fixture
def store(tmp_path):
    return fill(Store(tmp_path / "store"), prompts=4, responses=3)
