"""A labelling project: who may log in, which judgement kinds are asked for, how often, and under
which guidelines. Read from a YAML file (see data/demo-project.yaml and docs/annotating.md).

Passwords are stored as salted PBKDF2-SHA256 hashes (`prefkit hash-password` makes one); the
plain text never reaches the file. Hashes weaker than `MIN_ROUNDS` are refused when the file is read. A project with no users runs in *open mode*: one local user,
named in the file, for someone labelling on their own machine.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from prefkit.annotate.ids import content_hash

ROLES = ("annotator", "reviewer", "admin")
TASK_KINDS = ("pairwise", "ranking", "binary", "rating", "edit", "steps")
MODES = ("blind", "assist")
# PBKDF2-SHA256 rounds: OWASP's 2023 figure for new hashes; about 0.3-0.6 s per login on the 2-core
# machine prefkit is tested on (docs/security.md). Stored hashes below the minimum (prefkit's old
# default) are refused: each round an attacker does not have to pay makes guessing cheaper.
DEFAULT_ROUNDS = 600_000
MIN_ROUNDS = 200_000
# The keys a project file may hold; anything else is a typo that would silently change the work.
TOP_KEYS = (
    "name", "tasks", "overlap", "users", "open_user", "guidelines", "guidelines_id", "aspects",
    "rating_aspects", "rating_scale", "strength", "mode", "gold_rate", "min_seconds", "lease_minutes",
)  # fmt: skip
TASK_KEYS = ("kind", "overlap", "max_responses")
USER_KEYS = ("login", "role", "password_hash")
GUIDELINES_KEYS = ("file", "id")


class ProjectError(ValueError):
    """The project file is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True)
class User:
    login: str
    role: str = "annotator"
    password_hash: str = ""

    @property
    def can_review(self) -> bool:
        return self.role in ("reviewer", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Task:
    """One queue of the project: a judgement kind and how many people judge each item."""

    kind: str
    overlap: int = 1  # k: distinct annotators per item
    max_responses: int = 4  # ranking: at most this many responses per item


@dataclass
class Project:
    name: str = "local"
    tasks: list[Task] = field(default_factory=lambda: [Task("pairwise")])
    users: list[User] = field(default_factory=list)
    open_user: str = "local"  # the login used in open mode (no users listed)
    guidelines_text: str = ""
    guidelines_id: str = "guidelines"
    aspects: list[str] = field(default_factory=list)  # pairwise sub-questions, e.g. helpfulness
    rating_aspects: list[str] = field(default_factory=lambda: ["overall"])
    rating_scale: int = 5
    strength: bool = True  # pairwise: ask how much better (1-3)
    mode: str = "blind"  # blind: no AI verdict shown; assist: AI verdict and confidence shown
    gold_rate: float = 0.0  # share of served items that are gold items (when any exist)
    min_seconds: float = 2.0  # answers faster than this are stored with status 'flagged'
    lease_minutes: float = 30.0

    @property
    def open_mode(self) -> bool:
        return not self.users

    @property
    def guidelines(self) -> str:
        """The guidelines version written on every judgement: id plus content hash."""
        return f"{self.guidelines_id}@{content_hash(self.guidelines_text)[:12]}"

    def user(self, login: str) -> User | None:
        return next((u for u in self.users if u.login == login), None)

    def task(self, kind: str) -> Task:
        for task in self.tasks:
            if task.kind == kind:
                return task
        raise ProjectError(f"project {self.name!r} has no {kind!r} task; it has {[t.kind for t in self.tasks]}")


# -- passwords ----------------------------------------------------------------------------------

_SCHEME = "pbkdf2_sha256"
# Checked instead of a real hash when the login is unknown: the same work, so the time taken to say
# "wrong login or password" does not tell whether the login exists. Never matches any password.
_DUMMY_SALT = base64.b64encode(os.urandom(16)).decode()
_DUMMY_DIGEST = base64.b64encode(os.urandom(32)).decode()


def hash_password(password: str, *, salt: bytes | None = None, rounds: int = DEFAULT_ROUNDS) -> str:
    """`pbkdf2_sha256$ROUNDS$SALT$HASH` (base64), the form the project file stores."""
    if rounds < MIN_ROUNDS:
        raise ProjectError(f"{rounds} PBKDF2 rounds is below the minimum {MIN_ROUNDS}")
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, rounds)
    b64 = base64.b64encode
    return f"{_SCHEME}${rounds}${b64(salt).decode()}${b64(digest).decode()}"


def hash_rounds(stored: str) -> int | None:
    """The PBKDF2 round count of a stored hash; None when `stored` is not such a hash."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != _SCHEME or not parts[1].isdigit():
        return None
    return int(parts[1])


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`. A hash below MIN_ROUNDS never matches."""
    rounds = hash_rounds(stored)
    if rounds is None or rounds < MIN_ROUNDS:
        return False
    _, _, salt, digest = stored.split("$")
    try:
        salt_bytes, want = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except (ValueError, binascii.Error):
        return False
    got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt_bytes, rounds)
    return hmac.compare_digest(got, want)


def authenticate(project: Project, login: str, password: str) -> User | None:
    """The user when `password` is right, else None (same answer, and the same work, for an
    unknown login: a dummy hash with the project's own round count is checked instead)."""
    user = project.user(login.strip())
    if user is None:
        rounds = max((hash_rounds(u.password_hash) or MIN_ROUNDS for u in project.users), default=DEFAULT_ROUNDS)
        verify_password(password, f"{_SCHEME}${rounds}${_DUMMY_SALT}${_DUMMY_DIGEST}")
        return None
    return user if verify_password(password, user.password_hash) else None


# -- loading ------------------------------------------------------------------------------------


def _need(cond: bool, path: Path, where: str, problem: str) -> None:
    if not cond:
        raise ProjectError(f"{path}: {where}: {problem}")


def _known_keys(raw: dict, keys: tuple[str, ...], path: Path, where: str) -> None:
    """Refuse keys the project file does not know: a typo (`overlpa: 2`) must not be dropped."""
    unknown = [str(k) for k in raw if k not in keys]
    if unknown:
        near = difflib.get_close_matches(unknown[0], keys, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        _need(False, path, where, f"unknown key {', '.join(map(repr, unknown))}{hint}; known: {', '.join(keys)}")


def _number(raw: dict, key: str, default, kind: type, path: Path, where: str):
    value = raw.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or value == int(value))
    _need(ok, path, where, f"{value!r} is not {'a number' if kind is float else 'an integer'}")
    return kind(value)


def parse_project(data: dict, path: Path, base: Path | None = None) -> Project:
    _need(isinstance(data, dict), path, "top level", "expected a mapping (name:, tasks:, users:, ...)")
    _known_keys(data, TOP_KEYS, path, "top level")
    tasks = []
    for i, raw in enumerate(data.get("tasks") or [{"kind": "pairwise"}]):
        raw = {"kind": raw} if isinstance(raw, str) else raw
        _need(isinstance(raw, dict), path, f"tasks[{i}]", "expected a mapping with kind: and overlap:")
        _known_keys(raw, TASK_KEYS, path, f"tasks[{i}]")
        kind = raw.get("kind")
        _need(kind in TASK_KINDS, path, f"tasks[{i}].kind", f"{kind!r} is not one of {list(TASK_KINDS)}")
        overlap = raw.get("overlap", data.get("overlap", 1))
        _need(isinstance(overlap, int) and overlap >= 1, path, f"tasks[{i}].overlap", "must be an integer >= 1")
        max_responses = _number(raw, "max_responses", 4, int, path, f"tasks[{i}].max_responses")
        tasks.append(Task(kind, overlap, max_responses))
    _need(len({t.kind for t in tasks}) == len(tasks), path, "tasks", "each kind may appear once")

    users = []
    for i, raw in enumerate(data.get("users") or []):
        _need(isinstance(raw, dict) and raw.get("login"), path, f"users[{i}]", "needs login:")
        _known_keys(raw, USER_KEYS, path, f"users[{i}]")
        role = raw.get("role", "annotator")
        _need(role in ROLES, path, f"users[{i}].role", f"{role!r} is not one of {list(ROLES)}")
        pw = raw.get("password_hash", "")
        rounds = hash_rounds(pw) if isinstance(pw, str) else None
        where = f"users[{i}].password_hash"
        _need(rounds is not None, path, where, "missing or not a hash; make one with `prefkit hash-password`")
        _need(
            rounds >= MIN_ROUNDS,
            path,
            where,
            f"{rounds} PBKDF2 rounds is below the minimum {MIN_ROUNDS}: too cheap to guess; "
            "make a new hash with `prefkit hash-password`",
        )
        users.append(User(str(raw["login"]), role, pw))
    _need(len({u.login for u in users}) == len(users), path, "users", "logins must be unique")

    guidelines = data.get("guidelines", "")
    if isinstance(guidelines, dict):
        _known_keys(guidelines, GUIDELINES_KEYS, path, "guidelines")
        _need("file" in guidelines, path, "guidelines", "a mapping needs file: (and optionally id:)")
        gfile = (base or path.parent) / guidelines["file"]
        _need(gfile.is_file(), path, "guidelines.file", f"{gfile} does not exist")
        guidelines_text, guidelines_id = gfile.read_text(encoding="utf-8"), guidelines.get("id", gfile.stem)
    else:
        guidelines_text, guidelines_id = str(guidelines or ""), str(data.get("guidelines_id", "guidelines"))

    mode = data.get("mode", "blind")
    _need(mode in MODES, path, "mode", f"{mode!r} is not one of {list(MODES)}")
    gold_rate = _number(data, "gold_rate", 0.0, float, path, "gold_rate")
    _need(0.0 <= gold_rate < 1.0, path, "gold_rate", "must be in [0, 1)")
    return Project(
        name=str(data.get("name", path.stem)),
        tasks=tasks,
        users=users,
        open_user=str(data.get("open_user", "local")),
        guidelines_text=guidelines_text,
        guidelines_id=guidelines_id,
        aspects=list(data.get("aspects") or []),
        rating_aspects=list(data.get("rating_aspects") or ["overall"]),
        rating_scale=_number(data, "rating_scale", 5, int, path, "rating_scale"),
        strength=bool(data.get("strength", True)),
        mode=mode,
        gold_rate=gold_rate,
        min_seconds=_number(data, "min_seconds", 2.0, float, path, "min_seconds"),
        lease_minutes=_number(data, "lease_minutes", 30.0, float, path, "lease_minutes"),
    )


def load_project(path: str | os.PathLike | None) -> Project:
    """The project in `path`, or the default open-mode project (all kinds, k=1) when `path` is None."""
    if path is None:
        return Project(tasks=[Task(k) for k in TASK_KINDS], min_seconds=0.0)
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{path}: no such project file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not valid YAML: {exc}") from exc
    return parse_project(data, path)
