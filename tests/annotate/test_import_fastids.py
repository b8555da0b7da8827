"""The importer's hand-written canonical JSON gives exactly the contract's ids."""

import random

from prefkit.annotate import ids
from prefkit.annotate.importers import fastids

AWKWARD = [
    "plain",
    "",
    'quote " and backslash \\',
    "tab\tnew\nline\r",
    "control \x00\x01\x1f",
    "DEL \x7f",
    "café ☕ 中文 🙂",
    "mixed é and \x7f",
    "\u2028 line separator",
    "emoji 👍🏽 and \\u escapes",
    "</script>",
]


def test_same_ids_as_the_contract():
    rng = random.Random(0)
    texts = AWKWARD + ["".join(rng.choice(AWKWARD) for _ in range(5)) for _ in range(200)]
    for text in texts:
        msgs = [
            {"role": "system", "content": "s " + text},
            {"role": "user", "content": text or "x"},
            {"role": "assistant", "content": text[::-1] or "y"},
        ]
        assert fastids.prompt_id(msgs) == ids.prompt_id(msgs)
        assert fastids.prompt_id(msgs[1:2]) == ids.prompt_id(msgs[1:2])
        pid = ids.prompt_id(msgs)
        assert fastids.response_id(pid, text) == ids.response_id(pid, text)


def test_same_import_judgement_ids_as_the_contract():
    for text in AWKWARD:
        for occurrence in (0, 1, 17):
            assert fastids.import_judgement_id(text, "src:" + text, occurrence) == ids.import_judgement_id(
                text, "src:" + text, occurrence
            )
