"""The demo store's team: five people's pairwise votes over a week and an AI judge's verdicts.

Everything here is a seeded simulation that perturbs the demo author's reference ranks (the truth of
data/demo-source): no person and no model made these labels, and every row says so
(`metadata.simulated`). It exists so that every page of the app has something to show on first run:

- people (`TEAM`) vote on the app's pairwise items (a prompt's two responses with the smallest ids,
  as the app's item list has them), `OVERLAP` of them per item, over five days; each has an accuracy,
  a typical time on task and, for some, a habit (favouring the response shown first, or the longer
  one). Hard items (about a third, drawn per prompt) split them more often.
- answers faster than `MIN_SECONDS` are stored `flagged`, as the app stores them; some items are
  skipped (a skip uses no slot, so someone else fills it); a few people change a vote a day later
  (the later row wins, `prefkit.annotate.agreement.latest_vote_sql`); three people also answer the
  aspect sub-questions (extra rows with the same status and metadata, as the app writes them).
- one prompt per category is a gold item (prompt metadata `gold.preferred`, the reference winner);
  each person meets a few of them between other items, and their rows carry `gold` and `correct`.
- the AI judge (`JUDGE`) judges every pair of responses of every prompt in both display orders, with
  a first-token probability as `confidence` (P(the first shown wins), as `prefkit judge` in logprobs
  mode writes it), a pull towards the first shown and the longer response, and one error row.

Two numbers mirror data/demo-project.yaml (`min_seconds`, the pairwise `overlap`); a test checks.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prefkit.annotate.ai.rows import ai_error, ai_judgement
from prefkit.annotate.ai.verdicts import SCORES
from prefkit.annotate.contract import Judgement, Prompt, Response
from prefkit.annotate.ids import content_hash

MIN_SECONDS = 2.0  # data/demo-project.yaml `min_seconds`
OVERLAP = 3  # data/demo-project.yaml pairwise `overlap`
ASPECTS = ("helpfulness", "harmlessness", "honesty")  # data/demo-project.yaml `aspects`
GUIDELINES = "demo-guidelines@simulated"
JUDGE = "ai:simulated-judge:pairwise"
DAY0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)  # Monday 09:00: the team's first day
DAYS = 5
LABELLED = 26  # non-gold items that get all OVERLAP votes; a few more get some; the rest none
PARTLY = 5


@dataclass(frozen=True)
class Person:
    login: str
    accuracy: float  # chance of preferring the reference winner on an easy pair
    median_s: float  # typical time on task, seconds
    first_bias: float = 0.0  # chance of simply picking the response shown first
    longer_bias: float = 0.0  # chance of simply picking the longer response
    skip_rate: float = 0.0
    aspects: bool = False  # answers the aspect sub-questions too
    from_day: int = 0  # joined the project on this day


TEAM = (
    Person("ana", 0.93, 26.0, aspects=True),
    Person("ben", 0.86, 19.0, aspects=True),
    Person("chen", 0.8, 34.0, skip_rate=0.12, aspects=True),
    Person("dara", 0.74, 12.0, first_bias=0.5),
    Person("eli", 0.66, 2.3, longer_bias=0.35, skip_rate=0.06, from_day=1),
)


@dataclass(frozen=True)
class Pair:
    """One comparison of the source: its prompt, the two responses (ids sorted) and their reference ranks."""

    prompt_id: str
    category: str
    ids: tuple[str, str]
    ranks: tuple[int, int]
    lengths: tuple[int, int]

    @property
    def better(self) -> str:
        return self.ids[0] if self.ranks[0] < self.ranks[1] else self.ids[1]


def _rng(*parts: object) -> random.Random:
    return random.Random(content_hash(["demo-team", *parts]))


def _uuid7(at: datetime, *parts: object) -> str:
    """A UUIDv7 like `ids.new_judgement_id`'s, but its random bits come from `parts`: the build is repeatable."""
    ms = int(at.timestamp() * 1000)
    rand = int(content_hash(parts)[:20], 16)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | ((rand >> 68) & 0xFFF) << 64 | 0b10 << 62
    return str(uuid.UUID(int=value | rand & ((1 << 62) - 1)))


def pairs(items: list[dict], prompts: list[Prompt], responses: list[Response]) -> list[list[Pair]]:
    """Every pair of responses of each prompt (ids sorted); each prompt's first pair is its app item."""
    out = []
    for item, prompt in zip(items, prompts, strict=True):
        shown = [r for r in responses if r.prompt_id == prompt.prompt_id]
        info = sorted(
            (r.response_id, src["rank"], len(r.content)) for r, src in zip(shown, item["responses"], strict=True)
        )
        out.append(
            [
                Pair(prompt.prompt_id, item["category"], (a[0], b[0]), (a[1], b[1]), (a[2], b[2]))
                for a, b in itertools.combinations(info, 2)
            ]
        )
    return out


def gold_items(items: list[dict]) -> set[str]:
    """Source ids of the gold items: the first item of each category."""
    first: dict[str, str] = {}
    for item in items:
        first.setdefault(item["category"], item["id"])
    return set(first.values())


def mark_gold(items: list[dict], prompts: list[Prompt], responses: list[Response]) -> None:
    """Make the gold items gold: their prompt's metadata names the reference winner of the app's
    pairwise item (`gold.preferred`), which is how the app knows a gold item."""
    chosen = gold_items(items)
    for item, prompt, ps in zip(items, prompts, pairs(items, prompts, responses), strict=True):
        if item["id"] in chosen:
            meta = {**json.loads(prompt.metadata), "gold": {"preferred": ps[0].better}}
            prompt.metadata = json.dumps(meta, ensure_ascii=False, sort_keys=True)


def team_rows(items: list[dict], prompts: list[Prompt], responses: list[Response]) -> list[Judgement]:
    """The people's rows and the judge's rows for the demo source (prompts' gold metadata already set)."""
    all_pairs = pairs(items, prompts, responses)
    gold = {p.prompt_id for p in prompts if "gold" in json.loads(p.metadata)}
    app_items = [ps[0] for ps in all_pairs]
    return _people(app_items, gold) + _judge([p for ps in all_pairs for p in ps])


# -- people -----------------------------------------------------------------------------------------


def _choice(person: Person, pair: Pair, order: tuple[str, str]) -> str:
    """A / B / tie / both_bad for the pair shown in `order`."""
    rng = _rng("choice", person.login, pair.prompt_id, order)
    hard = _rng("hard", pair.prompt_id).random() < 0.3  # about a third of the items split people
    draw = rng.random()
    if draw < 0.015:
        return "both_bad"
    if draw < 0.05 + (0.06 if hard else 0.0):
        return "tie"
    if rng.random() < person.first_bias:
        return "A"
    longer = pair.ids[0] if pair.lengths[0] > pair.lengths[1] else pair.ids[1]
    if rng.random() < person.longer_bias:
        return "A" if order[0] == longer else "B"
    p_right = 0.5 + (person.accuracy - 0.5) * (0.55 if hard else 1.0)
    winner = pair.better if rng.random() < p_right else next(r for r in pair.ids if r != pair.better)
    return "A" if order[0] == winner else "B"


def _scores(choice: str) -> list[float]:
    return {"A": [1.0, 0.0], "B": [0.0, 1.0], "tie": [0.5, 0.5], "both_bad": [0.0, 0.0]}[choice]


class _Clock:
    """Each person's working time: from 09:00 on the item's day, one item after another."""

    def __init__(self) -> None:
        self.now: dict[str, datetime] = {}

    def advance(self, person: Person, day: int, seconds: float, rng: random.Random) -> datetime:
        start = DAY0 + timedelta(days=max(day, person.from_day), minutes=rng.randint(0, 40))
        t = max(self.now.get(person.login, start), start)
        t += timedelta(seconds=seconds + rng.uniform(15, 120))  # reading, scrolling, a sip of coffee
        self.now[person.login] = t
        return t


def _vote(person: Person, pair: Pair, clock: _Clock, day: int, gold: str | None, tag: str) -> list[Judgement]:
    rng = _rng("vote", person.login, pair.prompt_id, tag)
    order = tuple(pair.ids) if rng.random() < 0.5 else (pair.ids[1], pair.ids[0])
    ms = max(400, int(1000 * person.median_s * math.exp(rng.gauss(0, 0.55))))
    at = clock.advance(person, day, ms / 1000, rng)
    meta: dict = {"simulated": True}
    skipping = rng.random() < person.skip_rate and gold is None
    choice = "skip" if skipping else _choice(person, pair, order)
    status = "skipped" if skipping else "submitted"
    if gold is not None:
        meta.update(gold=True, correct={"A": order[0], "B": order[1]}.get(choice) == gold)
    if status == "submitted" and ms < MIN_SECONDS * 1000:  # as the app flags a fast answer
        status = "flagged"
        meta["flag"] = f"fast: {ms / 1000:.1f} s < {MIN_SECONDS:g} s"
    base = dict(
        prompt_id=pair.prompt_id,
        kind="pairwise",
        annotator=person.login,
        annotator_type="human",
        response_ids=list(order),
        guidelines=GUIDELINES,
        duration_ms=ms,
        status=status,
        metadata=json.dumps(meta, sort_keys=True),
        created_at=at,
    )
    if skipping:
        why = "I cannot check this code without running it" if pair.category == "coding" else "not sure: both read well"
        return [Judgement(_uuid7(at, person.login, pair.prompt_id, tag), scores=[], rationale=why, **base)]
    strength = None if choice in ("tie", "both_bad") else rng.choice((1, 2, 2, 3))
    rows = [
        Judgement(
            _uuid7(at, person.login, pair.prompt_id, tag),
            scores=_scores(choice),
            both_bad=choice == "both_bad",
            strength=strength,
            **base,
        )
    ]
    if person.aspects and choice != "both_bad":
        for n, aspect in enumerate(ASPECTS):
            # helpfulness mostly follows the overall verdict; the other two are mostly "no difference"
            same = rng.random() < (0.85, 0.35, 0.3)[n]
            answer = choice if same else "tie"
            rows.append(
                Judgement(
                    _uuid7(at, person.login, pair.prompt_id, tag, aspect),
                    scores=_scores(answer),
                    aspect=aspect,
                    **base,
                )
            )
    return rows


def _people(app_items: list[Pair], gold: set[str]) -> list[Judgement]:
    queue = [p for p in app_items if p.prompt_id not in gold]
    _rng("queue").shuffle(queue)
    gold_pairs = [p for p in app_items if p.prompt_id in gold]
    work = LABELLED + PARTLY
    events: list[tuple[float, Person, Pair, str | None]] = []
    planned: dict[str, set[str]] = {}
    for i, pair in enumerate(queue[:work]):
        day = i * DAYS // work
        ready = [p for p in TEAM if p.from_day <= day]
        votes = OVERLAP if i < LABELLED else 1 + i % 2
        # the skippers' skips use no slot: whoever skips is replaced by someone who answers
        chosen = _rng("who", pair.prompt_id).sample(ready, votes)
        planned[pair.prompt_id] = {p.login for p in chosen}
        events += [(i, person, pair, None) for person in chosen]
    for person in TEAM:  # gold items come between the others, a few per person
        mine = list(gold_pairs)
        _rng("gold", person.login).shuffle(mine)
        start = next(i for i in range(work) if i * DAYS // work >= person.from_day)
        count = 3 if person.from_day else 4
        for j, pair in enumerate(mine[:count]):
            events.append((start + (j + 0.5) * (work - start) / count, person, pair, pair.better))
    events.sort(key=lambda e: (e[0], e[1].login))

    clock, rows, votes = _Clock(), [], []
    for pos, person, pair, preferred in events:
        day = min(DAYS - 1, int(pos) * DAYS // work)
        made = _vote(person, pair, clock, day, preferred, "first")
        while made[0].status == "skipped":  # someone not yet on this item answers instead
            rows += made
            taken = {r.annotator for r in rows if r.prompt_id == pair.prompt_id} | planned.get(pair.prompt_id, set())
            others = [p for p in TEAM if p.login not in taken and p.from_day <= day]
            if not others:
                made = []
                break
            person = _rng("stand-in", pair.prompt_id, len(taken)).choice(others)
            made = _vote(person, pair, clock, day, preferred, "first")
        rows += made
        if made:
            votes.append((person, pair, made[0], preferred))
    return rows + _revotes(votes)


def _revotes(votes: list[tuple[Person, Pair, Judgement, str | None]]) -> list[Judgement]:
    """A day later a few people change their vote: five who had picked the reference loser switch to
    the winner, and one who had picked the winner settles for a tie (the latest vote counts, right or not)."""
    to_winner, to_tie = [], []
    for person, pair, first, preferred in votes:
        if first.status != "submitted" or first.scores[0] == first.scores[1]:
            continue
        picked = first.response_ids[0 if first.scores[0] > first.scores[1] else 1]
        if picked != pair.better and len(to_winner) < 5 and _rng("revote", person.login, pair.prompt_id).random() < 0.5:
            to_winner.append((person, pair, first, preferred, pair.better))
        elif picked == pair.better and not to_tie:
            to_tie.append((person, pair, first, preferred, None))
    out = []
    for person, pair, first, preferred, winner in to_winner + to_tie:
        shown = first.response_ids
        choice = "tie" if winner is None else "A" if shown[0] == winner else "B"
        at = first.created_at + timedelta(days=1, minutes=7)
        meta: dict = {"simulated": True}
        if preferred is not None:
            meta.update(gold=True, correct=winner == preferred)
        out.append(
            Judgement(
                _uuid7(at, person.login, pair.prompt_id, "revote"),
                prompt_id=pair.prompt_id,
                kind="pairwise",
                annotator=person.login,
                annotator_type="human",
                response_ids=list(shown),
                scores=_scores(choice),
                strength=None if winner is None else 2,
                rationale="re-read both: changed my vote",
                guidelines=GUIDELINES,
                duration_ms=int(first.duration_ms or 0) + 9000,
                metadata=json.dumps(meta, sort_keys=True),
                created_at=at,
            )
        )
    return out


# -- the AI judge ----------------------------------------------------------------------------------


def _judge(all_pairs: list[Pair]) -> list[Judgement]:
    rows = []
    at = DAY0 - timedelta(hours=13)  # the evening before the team starts
    for n, pair in enumerate(all_pairs):
        order_key = content_hash(["pairwise", pair.prompt_id, *pair.ids, GUIDELINES, JUDGE, 0])
        shared = _rng("judge", order_key).gauss(0, 1.3)  # how this judge reads the pair, in either order
        for order in ("ab", "ba"):
            first, second = pair.ids if order == "ab" else pair.ids[::-1]
            rank = dict(zip(pair.ids, pair.ranks, strict=True))
            length = dict(zip(pair.ids, pair.lengths, strict=True))
            rng = _rng("judge", order_key, order)
            sign = 1.0 if rank[first] < rank[second] else -1.0
            logit = sign * (1.4 * abs(rank[first] - rank[second]) + shared)  # belief in the better one
            logit += 0.45 + 0.6 * (1 if length[first] > length[second] else -1) + rng.gauss(0, 0.35)
            tie = 0.04 + 0.3 * math.exp(-abs(logit))
            p_first = (1 - tie) / (1 + math.exp(-logit))
            mass = {"first": p_first, "second": 1 - tie - p_first, "tie": tie}
            verdict = max(mass, key=mass.get)
            key = content_hash(["simulated-request", order_key, order])
            meta = {"order_key": order_key, "order": order, "sample": 0, "mode": "logprobs", "simulated": True}
            created = at + timedelta(seconds=3 * (2 * n + (order == "ba")))
            if n == 7 and order == "ba":  # one failed request, recorded as `prefkit judge` records it
                raw = "Both responses have merits; it depends on what the user values."
                reason = f"unreadable verdict, also after one repair request: {raw[:200]!r}"
                shown = [first, second]
                rows.append(
                    ai_error(
                        key, reason, pair.prompt_id, "pairwise", JUDGE, shown, GUIDELINES, raw, meta, created_at=created
                    )
                )
                continue
            meta.update(fingerprint="simulated", cached=False, verdict=verdict, repaired=False, repair_raw=None)
            rows.append(
                ai_judgement(
                    key,
                    pair.prompt_id,
                    "pairwise",
                    JUDGE,
                    [first, second],
                    GUIDELINES,
                    meta,
                    scores=SCORES[verdict],
                    confidence=round(mass["first"] / sum(mass.values()), 4),
                    rationale=f"simulated verdict ({verdict}): no model was called for the demo store",
                    duration_ms=600 + rng.randint(0, 1200),
                    raw={"first": "A", "second": "B", "tie": "tie"}[verdict],
                    created_at=created,
                )
            )
    return rows
