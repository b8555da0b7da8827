"""Project files and logins."""

from __future__ import annotations

import pytest

from annotate.app.project import ProjectError, authenticate, hash_password, load_project, verify_password
from tests.annotate.app.conftest import PASSWORDS, make_project


def test_password_hash_round_trip_and_salt():
    h = hash_password("s3cret", rounds=1000)
    assert verify_password("s3cret", h) and not verify_password("s3cret ", h)
    assert hash_password("s3cret", rounds=1000) != h  # salted
    assert "s3cret" not in h
    assert not verify_password("s3cret", "plain-text-in-the-file")


def test_authenticate_accepts_only_the_right_password():
    project = make_project()
    assert authenticate(project, "alice", PASSWORDS["alice"]).login == "alice"
    assert authenticate(project, "alice", PASSWORDS["bob"]) is None
    assert authenticate(project, "mallory", "anything") is None
    assert authenticate(project, "rita", PASSWORDS["rita"]).can_review


def test_project_file_loads_with_guidelines_version(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: x\nguidelines: Prefer correct answers.\ntasks:\n  - {kind: pairwise, overlap: 3}\n  - binary\n"
        f"users:\n  - {{login: ann, role: reviewer, password_hash: '{hash_password('pw', rounds=1000)}'}}\n"
    )
    p = load_project(f)
    assert [(t.kind, t.overlap) for t in p.tasks] == [("pairwise", 3), ("binary", 1)]
    assert p.guidelines.startswith("guidelines@") and not p.open_mode
    f.write_text(f.read_text().replace("Prefer correct", "Prefer right"))
    assert load_project(f).guidelines != p.guidelines  # a new version of the guidelines


@pytest.mark.parametrize(
    "text, field",
    [
        ("tasks:\n  - {kind: vibes}\n", "tasks[0].kind"),
        ("tasks:\n  - {kind: pairwise, overlap: 0}\n", "tasks[0].overlap"),
        ("users:\n  - {login: a, password_hash: hunter2}\n", "users[0].password_hash"),
        ("users:\n  - {login: a, role: boss, password_hash: 'pbkdf2_sha256$1$a$b'}\n", "users[0].role"),
        ("mode: psychic\n", "mode"),
    ],
)
def test_bad_project_file_names_file_and_field(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ProjectError) as err:
        load_project(f)
    assert str(f) in str(err.value) and field in str(err.value)


def test_no_project_file_is_open_mode():
    p = load_project(None)
    assert p.open_mode and {t.kind for t in p.tasks} >= {"pairwise", "edit", "steps"}
