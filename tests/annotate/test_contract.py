import uuid

import pyarrow as pa
import pytest
from prefkit.annotate.contract import JUDGEMENTS, PROMPTS, RESPONSES, Judgement
from prefkit.annotate.ids import import_judgement_id, new_judgement_id, prompt_id, request_id, response_id
from prefkit.annotate.validate import ContractError, to_table

from tests.support.factories import pairwise, prompt, response


def test_schemas_have_design_columns():
    assert PROMPTS.names == ["prompt_id", "messages", "source", "metadata", "created_at"]
    assert RESPONSES.names == [
        "response_id",
        "prompt_id",
        "content",
        "model",
        "origin",
        "parent_id",
        "generation",
        "created_at",
    ]
    assert JUDGEMENTS.field("response_ids").type == pa.list_(pa.string())
    assert JUDGEMENTS.field("strength").type == pa.int8()
    assert JUDGEMENTS.field("created_at").type == pa.timestamp("us", tz="UTC")


def test_content_ids_are_stable_and_distinct():
    m = [{"role": "user", "content": "hi"}]
    assert prompt_id(m) == prompt_id([dict(content="hi", role="user")])
    assert prompt_id(m) != prompt_id([{"role": "user", "content": "hi "}])
    assert response_id("p", "a") != response_id("p", "b")
    assert response_id("p", "a") != response_id("q", "a")
    assert request_id({"model": "x", "temperature": 0}) == request_id({"temperature": 0, "model": "x"})
    assert import_judgement_id({"a": 1}, "ann1", 0) != import_judgement_id({"a": 1}, "ann1", 1)


def test_uuid7_is_version_7_and_time_ordered():
    ids = [new_judgement_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 50
    # the first 48 bits are milliseconds, so ids made later never sort earlier
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_valid_rows_convert():
    p = prompt()
    a, b = response(p, "4"), response(p, "5")
    t = to_table("judgements", [pairwise(p, a, b)])
    assert t.schema == JUDGEMENTS and t.num_rows == 1


def _bad(**changes):
    p = prompt()
    a, b = response(p, "4"), response(p, "5")
    j = pairwise(p, a, b)
    for k, v in changes.items():
        setattr(j, k, v)
    return j


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(kind="thumbs"), "kind"),
        (dict(annotator_type="robot"), "annotator_type"),
        (dict(scores=[1.0]), "scores"),
        (dict(scores=[float("nan"), 0.0]), "scores"),
        (dict(strength=5), "strength"),
        (dict(confidence=1.5), "confidence"),
        (dict(status="error", error=None), "error"),
        (dict(annotator=""), "annotator"),
        (dict(metadata="not json"), "metadata"),
        (dict(step_labels=[0, 2]), "step_labels"),
        (dict(scores="1,0"), "scores"),
    ],
)
def test_bad_judgement_names_table_row_field(changes, field):
    good = _bad()
    with pytest.raises(ContractError) as err:
        to_table("judgements", [good, _bad(**changes)])
    assert err.value.table == "judgements"
    assert err.value.field == field
    assert err.value.row == 1
    assert f"judgements row 1, field '{field}'" in str(err.value)


def test_bad_prompts_and_responses():
    with pytest.raises(ContractError, match="field 'messages'.*role"):
        to_table("prompts", [prompt(), prompt_row_with_role("robot")])
    with pytest.raises(ContractError, match="row 0, field 'content': is empty"):
        to_table(
            "responses",
            [dict(response_id="r", prompt_id="p", content="  ", model="m", origin="imported", generation="{}")],
        )
    with pytest.raises(ContractError, match="parent_id"):
        to_table(
            "responses",
            [dict(response_id="r", prompt_id="p", content="x", model="m", origin="human_edit", generation="{}")],
        )
    with pytest.raises(ContractError, match="not a column"):
        to_table("prompts", [dict(prompt_id="p", messages=[], source="s", metadata="{}", colour="red")])


def prompt_row_with_role(role):
    return dict(prompt_id="p2", messages=[{"role": role, "content": "x"}], source="s", metadata="{}")


def test_duplicate_ids_in_a_batch_are_rejected():
    p = prompt()
    with pytest.raises(ContractError, match="row 1, field 'prompt_id': repeats"):
        to_table("prompts", [p, p])


def test_error_rows_may_have_no_scores():
    j = Judgement(
        judgement_id="r1",
        prompt_id="p",
        kind="pairwise",
        annotator="ai:m:t",
        annotator_type="ai",
        response_ids=["a", "b"],
        scores=[],
        status="error",
        error="timeout after 3 retries",
    )
    assert to_table("judgements", [j]).num_rows == 1
