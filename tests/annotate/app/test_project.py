"""Project files and logins."""

from __future__ import annotations

import base64
import hashlib
import statistics
import time

import pytest
from prefkit.annotate.app.project import (
    DEFAULT_ROUNDS,
    MIN_ROUNDS,
    ProjectError,
    authenticate,
    hash_password,
    load_project,
    verify_password,
)

from tests.annotate.app.conftest import PASSWORDS, make_project, password_hash


def _reference_hash(password: str, rounds: int, salt: bytes = b"0123456789abcdef") -> str:
    """The stored form built by hand with hashlib, independently of hash_password."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    return f"pbkdf2_sha256${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_password_hash_round_trip_and_salt():
    h = password_hash("s3cret")
    assert verify_password("s3cret", h) and not verify_password("s3cret ", h)
    assert hash_password("s3cret", rounds=MIN_ROUNDS) != h  # salted
    assert "s3cret" not in h
    assert not verify_password("s3cret", "plain-text-in-the-file")
    assert verify_password("s3cret", _reference_hash("s3cret", MIN_ROUNDS))  # the same PBKDF2 as hashlib's


def test_new_hashes_use_owasps_round_count():
    h = hash_password("pw")
    rounds, salt = int(h.split("$")[1]), base64.b64decode(h.split("$")[2])
    assert rounds == DEFAULT_ROUNDS >= 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
    assert h == _reference_hash("pw", rounds, salt)


def test_a_weak_stored_hash_never_matches_and_the_file_is_refused(tmp_path):
    weak = _reference_hash("pw", 1)
    assert not verify_password("pw", weak)  # the right password, but a hash anyone can brute-force
    assert not verify_password("pw", _reference_hash("pw", MIN_ROUNDS - 1))
    with pytest.raises(ProjectError, match="below the minimum"):
        hash_password("pw", rounds=1000)
    f = tmp_path / "p.yaml"
    f.write_text(f"users:\n  - {{login: a, password_hash: '{weak}'}}\n")
    with pytest.raises(ProjectError) as err:
        load_project(f)
    msg = str(err.value)
    assert str(f) in msg and "users[0].password_hash" in msg and "1 PBKDF2 rounds" in msg
    assert str(MIN_ROUNDS) in msg and "`prefkit hash-password`" in msg


def test_authenticate_accepts_only_the_right_password():
    project = make_project()
    assert authenticate(project, "alice", PASSWORDS["alice"]).login == "alice"
    assert authenticate(project, "alice", PASSWORDS["bob"]) is None
    assert authenticate(project, "mallory", "anything") is None
    assert authenticate(project, "rita", PASSWORDS["rita"]).can_review


def test_refusing_an_unknown_login_takes_as_long_as_a_known_one():
    """Timing must not tell which accounts exist: medians within 2× of each other."""
    project = make_project()
    authenticate(project, "alice", "warm-up")
    known, unknown = [], []
    for _ in range(5):  # alternated, so load on the machine hits both alike
        t = time.perf_counter()
        assert authenticate(project, "alice", "wrong") is None
        known.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert authenticate(project, "nobody-here", "wrong") is None
        unknown.append(time.perf_counter() - t)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (known, unknown)


def test_project_file_loads_with_guidelines_version(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: x\nguidelines: Prefer correct answers.\ntasks:\n  - {kind: pairwise, overlap: 3}\n  - binary\n"
        f"users:\n  - {{login: ann, role: reviewer, password_hash: '{password_hash('pw')}'}}\n"
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
        ("tasks:\n  - {kind: ranking, max_responses: lots}\n", "tasks[0].max_responses"),
        ("min_seconds: soon\n", "min_seconds"),
    ],
)
def test_bad_project_file_names_file_and_field(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ProjectError) as err:
        load_project(f)
    assert str(f) in str(err.value) and field in str(err.value)


def test_missing_hash_names_the_real_command(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("users:\n  - {login: a}\n")
    with pytest.raises(ProjectError) as err:
        load_project(f)
    assert "`prefkit hash-password`" in str(err.value) and "app hash-password" not in str(err.value)


@pytest.mark.parametrize(
    "text, where, key, near",
    [
        ("tasks:\n  - {kind: pairwise, overlpa: 2}\n", "tasks[0]", "overlpa", "overlap"),
        ("name: x\nmin_second: 5\n", "top level", "min_second", "min_seconds"),
        ("taks:\n  - {kind: binary}\n", "top level", "taks", "tasks"),
        ("users:\n  - {login: a, rol: admin}\n", "users[0]", "rol", "role"),
        ("guidelines: {file: g.md, idd: v2}\n", "guidelines", "idd", "id"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path, text, where, key, near):
    """A typo must not silently change the work (`overlpa: 2` used to give overlap 1)."""
    f = tmp_path / "typo.yaml"
    f.write_text(text)
    with pytest.raises(ProjectError) as err:
        load_project(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: {where}: unknown key {key!r}") and f"did you mean {near!r}" in msg


def test_no_project_file_is_open_mode():
    p = load_project(None)
    assert p.open_mode and {t.kind for t in p.tasks} >= {"pairwise", "edit", "steps"}
