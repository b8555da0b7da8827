"""Every import shape and file format lands as the right prompts, responses and judgements."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate.ids import prompt_id, response_id
from prefkit.annotate.importers import ImportFailed, import_files
from prefkit.annotate.store import Store


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rows(store, table):
    return store.read(table).to_pylist()


def one_judgement_view(store):
    """(prompt messages, [response contents in shown order], scores, kind, annotator, aspect) per judgement."""
    con = store.connect()
    texts = dict(con.execute("SELECT response_id, content FROM responses").fetchall())
    got = con.execute(
        """SELECT p.messages, j.response_ids, j.scores, j.kind, j.annotator, j.aspect
           FROM judgements j JOIN prompts p USING (prompt_id) ORDER BY j.created_at, j.judgement_id"""
    ).fetchall()
    return [
        (msgs, [texts[r] for r in rids], scores, kind, who, aspect) for msgs, rids, scores, kind, who, aspect in got
    ]


def user(text):
    return [{"role": "user", "content": text}]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def test_pairs_text(store, tmp_path):
    f = write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": "2+2?", "chosen": "4", "rejected": "5", "id": 7},
            {"prompt": "2+2?", "chosen": "Four.", "rejected": "5"},
        ],
    )
    result = import_files(store, [f])
    assert result.files[0].shape == "pairs" and "text" in result.files[0].why
    assert result.added == {"prompts": 1, "responses": 3, "judgements": 2}
    got = one_judgement_view(store)
    assert sorted((c, s) for _, c, s, *_ in got) == [(["4", "5"], [1.0, 0.0]), (["Four.", "5"], [1.0, 0.0])]
    assert {g[3] for g in got} == {"pairwise"} and {g[4] for g in got} == {"prefs.jsonl"}
    # ids are the contract's content hashes, and unknown fields are kept in the judgement's metadata
    pid = prompt_id(user("2+2?"))
    assert {r["response_id"] for r in rows(store, "responses")} == {response_id(pid, t) for t in ("4", "Four.", "5")}
    metas = [json.loads(j["metadata"]) for j in rows(store, "judgements")]
    assert {"id": 7} in metas
    assert all(j["annotator_type"] == "import" for j in rows(store, "judgements"))


def test_pairs_conversational_multi_turn(store, tmp_path):
    convo = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Another?"},
    ]
    f = tmp_path / "conv.json"
    f.write_text(
        json.dumps(
            [
                # TRL conversational: the answers as one-message lists
                {
                    "prompt": convo,
                    "chosen": [{"role": "assistant", "content": "3"}],
                    "rejected": [{"role": "assistant", "content": "4"}],
                },
                # some datasets repeat the prompt inside chosen/rejected: the prefix is dropped
                {
                    "prompt": convo,
                    "chosen": [*convo, {"role": "assistant", "content": "5"}],
                    "rejected": [*convo, {"role": "assistant", "content": "9"}],
                },
            ],
            indent=2,
        )
    )
    result = import_files(store, [f])
    assert result.files[0].shape == "pairs" and "conversational" in result.files[0].why
    assert result.added == {"prompts": 1, "responses": 4, "judgements": 2}
    (p,) = rows(store, "prompts")
    assert p["messages"] == convo
    assert sorted(c for _, c, *_ in one_judgement_view(store)) == [["3", "4"], ["5", "9"]]


def test_pairs_implicit_prompt_conversational_and_text(store, tmp_path):
    shared = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]
    f1 = write_jsonl(
        tmp_path / "implicit.jsonl",
        [
            {
                "chosen": [*shared, {"role": "assistant", "content": "Paris."}],
                "rejected": [*shared, {"role": "assistant", "content": "Lyon."}],
            },
        ],
    )
    f2 = write_jsonl(
        tmp_path / "implicit-text.jsonl",
        [
            {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        ],
    )
    result = import_files(store, [f1, f2])
    assert [f.shape for f in result.files] == ["pairs", "pairs"]
    assert all("implicit" in f.why for f in result.files)
    got = {tuple(m["content"] for m in msgs): c for msgs, c, *_ in one_judgement_view(store)}
    assert got == {("Hi", "Hello!", "Capital of France?"): ["Paris.", "Lyon."], ("The sky is ",): ["blue.", "green."]}


def test_hh_multi_turn_from_parquet(store, tmp_path):
    prefix = "\n\nHuman: How do I boil an egg?\n\nAssistant: Put it in boiling water.\n\nHuman: For how long?"
    table = pa.table(
        {
            "chosen": [prefix + "\n\nAssistant: About 9 minutes for hard-boiled."],
            "rejected": [prefix + "\n\nAssistant: An hour."],
        }
    )
    pq.write_table(table, tmp_path / "hh.parquet")
    result = import_files(store, [tmp_path / "hh.parquet"])
    assert (result.files[0].format, result.files[0].shape) == ("parquet", "hh")
    ((msgs, contents, scores, *_),) = one_judgement_view(store)
    assert msgs == [
        {"role": "user", "content": "How do I boil an egg?"},
        {"role": "assistant", "content": "Put it in boiling water."},
        {"role": "user", "content": "For how long?"},
    ]
    assert contents == ["About 9 minutes for hard-boiled.", "An hour."] and scores == [1.0, 0.0]


def test_hh_with_separate_prompt_column(store, tmp_path):
    f = write_jsonl(
        tmp_path / "hh2.jsonl",
        [
            {"prompt": "\n\nHuman: Say hi.\n\nAssistant:", "chosen": " Hi!", "rejected": " No."},
        ],
    )
    assert import_files(store, [f]).files[0].shape == "hh"
    ((msgs, contents, *_),) = one_judgement_view(store)
    assert msgs == user("Say hi.") and contents == ["Hi!", "No."]


def test_unpaired_from_csv(store, tmp_path):
    f = tmp_path / "thumbs.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "completion", "label"])
        w.writerows(
            [
                ["Say hi", "Hi!", "true"],
                ["Say hi", "Go away.", "false"],
                ["Add 1+1", "2", "1"],
                ["Add 1+1", "It is\n3", "down"],
            ]
        )
    result = import_files(store, [f])
    assert (result.files[0].format, result.files[0].shape) == ("csv", "unpaired")
    got = sorted((c[0], s, kind) for _, c, s, kind, *_ in one_judgement_view(store))
    assert got == [
        ("2", [1.0], "binary"),
        ("Go away.", [0.0], "binary"),
        ("Hi!", [1.0], "binary"),
        ("It is\n3", [0.0], "binary"),
    ]


def test_ratings_ultrafeedback_like(store, tmp_path):
    f = tmp_path / "uf.json"
    f.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "instruction": "Write a haiku about rain.",
                        "source": "evol",
                        "completions": [
                            {
                                "model": "m-big",
                                "response": "Soft rain on the roof…",
                                "annotations": {
                                    "Helpfulness": {"Rating": "5", "Rationale": "vivid"},
                                    "Honesty": {"Rating": "N/A", "Rationale": "n/a"},
                                },
                                "overall_score": 8.5,
                            },
                            {"model": "m-small", "response": "Rain is wet.", "ratings": {"helpfulness": 2}},
                        ],
                    }
                ]
            }
        )
    )
    result = import_files(store, [f])
    assert result.files[0].shape == "ratings"
    assert result.added == {"prompts": 1, "responses": 2, "judgements": 3}  # the N/A rating is left out
    got = sorted((c[0], aspect, s[0], kind) for _, c, s, kind, _, aspect in one_judgement_view(store))
    assert got == [
        ("Rain is wet.", "helpfulness", 2.0, "rating"),
        ("Soft rain on the roof…", "helpfulness", 5.0, "rating"),
        ("Soft rain on the roof…", "overall", 8.5, "rating"),
    ]
    assert {r["model"] for r in rows(store, "responses")} == {"m-big", "m-small"}
    assert "vivid" in {j["rationale"] for j in rows(store, "judgements")}


def test_votes_with_a_missing_vote(store, tmp_path):
    f = write_jsonl(
        tmp_path / "votes.jsonl",
        [
            {
                "instruction": "Pick a colour.",
                "input": "",
                "response1": "Blue",
                "response2": "Colourless",
                "annotator1": 1,
                "annotator2": 0,
                "annotator3": None,
            },
        ],
    )
    result = import_files(store, [f], source="panel")
    assert result.files[0].shape == "votes"
    got = sorted((who, s) for _, c, s, _, who, _ in one_judgement_view(store))
    assert got == [("panel:annotator1", [1.0, 0.0]), ("panel:annotator2", [0.5, 0.5])]


def test_bare_prompts_keep_their_fields_as_metadata(store, tmp_path):
    f = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "Explain recursion.", "category": "coding"},
            {"messages": user("Plan a trip."), "metadata": {"category": "advice", "tags": ["travel"]}},
        ],
    )
    result = import_files(store, [f])
    assert result.files[0].shape == "prompts"
    assert result.added == {"prompts": 2, "responses": 0, "judgements": 0}
    metas = sorted((p["messages"][0]["content"], json.loads(p["metadata"])) for p in rows(store, "prompts"))
    assert metas == [
        ("Explain recursion.", {"category": "coding"}),
        ("Plan a trip.", {"category": "advice", "tags": ["travel"]}),
    ]


def test_map_renames_columns(store, tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [{"question": "Capital of Italy?", "good": "Rome", "bad": "Milan"}])
    with pytest.raises(ImportFailed, match="match no known shape"):
        import_files(store, [f])
    result = import_files(store, [f], mapping={"question": "prompt", "good": "chosen", "bad": "rejected"})
    assert result.files[0].shape == "pairs"
    ((msgs, contents, *_),) = one_judgement_view(store)
    assert msgs == user("Capital of Italy?") and contents == ["Rome", "Milan"]
    with pytest.raises(ImportFailed, match="'questoin'.*does not have"):
        import_files(store, [f], mapping={"questoin": "prompt"})


def test_format_forces_a_shape(store, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "chosen": "Hello", "rejected": "Bye"}])
    result = import_files(store, [f], fmt="prompts")
    assert (result.files[0].shape, result.files[0].why) == ("prompts", "forced by --format")
    assert result.added == {"prompts": 1, "responses": 0, "judgements": 0}


def test_hf_save_to_disk_and_parquet_folder(store, tmp_path):
    from datasets import Dataset, DatasetDict

    records = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    DatasetDict({"train": Dataset.from_list(records[:4]), "test": Dataset.from_list(records[4:])}).save_to_disk(
        tmp_path / "dd"
    )
    result = import_files(store, [tmp_path / "dd"])
    assert (result.files[0].format, result.files[0].shape, result.files[0].records) == ("hf", "pairs", 6)
    assert result.added == {"prompts": 6, "responses": 12, "judgements": 6}
    (tmp_path / "hub" / "data").mkdir(parents=True)
    Dataset.from_list(records).to_parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    again = import_files(store, [tmp_path / "hub"])
    assert again.files[0].records == 6
    # same content, so no new prompts or responses; a different file is a different source of judgements
    assert again.added == {"prompts": 0, "responses": 0, "judgements": 6}


def test_reimport_of_every_shape_adds_nothing(store, tmp_path):
    files = [
        write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x", "chosen": "y", "rejected": "z"}] * 2),  # repeated record
        write_jsonl(tmp_path / "b.jsonl", [{"prompt": "x", "completion": "y", "label": True}]),
        write_jsonl(tmp_path / "c.jsonl", [{"prompt": "x", "completions": [{"text": "y", "ratings": {"a": 1}}]}]),
        write_jsonl(tmp_path / "d.jsonl", [{"prompt": "x", "response1": "y", "response2": "z", "annotator1": 2}]),
        write_jsonl(
            tmp_path / "e.jsonl",
            [{"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": "\n\nHuman: x\n\nAssistant: z"}],
        ),
        write_jsonl(tmp_path / "f.jsonl", [{"prompt": "fresh"}]),
    ]
    first = import_files(store, files)
    assert [f.shape for f in first.files] == ["pairs", "unpaired", "ratings", "votes", "hh", "prompts"]
    assert first.files[0].added["judgements"] == 2  # a genuine repeat stays two judgements
    again = import_files(store, files)
    assert again.added == {"prompts": 0, "responses": 0, "judgements": 0}
    assert store.count("judgements") == sum(first.added.values()) - first.added["prompts"] - first.added["responses"]


def test_empty_file_imports_nothing(store, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    result = import_files(store, [tmp_path / "empty.jsonl"])
    assert result.added == {"prompts": 0, "responses": 0, "judgements": 0} and result.files[0].shape == "empty"


def test_progress_bar_when_asked(store, tmp_path, capsys):
    f = write_jsonl(tmp_path / "bar.jsonl", [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(50)])
    import_files(store, [f], progress=True)
    assert "bar.jsonl" in capsys.readouterr().err
    import_files(Store(tmp_path / "quiet"), [f])
    assert capsys.readouterr().err == ""


def test_ranked_responses_make_one_ranking_judgement(tmp_path):
    """The demo source's own shape: messages + responses with a rank each (1 = best)."""
    import json as _json

    from prefkit.annotate.importers import import_files
    from prefkit.annotate.store import Store

    src = tmp_path / "ranked.jsonl"
    src.write_text(
        _json.dumps(
            {
                "messages": [{"role": "user", "content": "Q?"}],
                "responses": [
                    {"model": "a", "content": "good", "rank": 1},
                    {"model": "b", "content": "bad", "rank": 2},
                    {"model": "c", "content": "also bad", "rank": 2},
                ],
            }
        )
        + "\n"
    )
    store = Store(tmp_path / "s")
    result = import_files(store, [src])
    assert result.files[0].shape == "ratings"
    (row,) = store.read("judgements").to_pylist()
    contents = {r["response_id"]: r["content"] for r in store.read("responses").to_pylist()}
    assert row["kind"] == "ranking" and row["annotator_type"] == "import"
    assert [contents[i] for i in row["response_ids"]] == ["good", "bad", "also bad"]
    assert row["scores"] == [-1.0, -2.0, -2.0]
