import pytest
from prefkit.export import export_curated

from tests.export.curated import write_curation


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export of every format from 60 real PandaLM records (standard prompts), with JSONL."""
    root = tmp_path_factory.mktemp("exported")
    write_curation(root / "store", limit=60)
    result = export_curated(root / "store", "pandalm", root / "out", jsonl=True)
    return root, result


@pytest.fixture(scope="module")
def exported_conversational(tmp_path_factory):
    """The preference and unpaired formats from prompts of which every third has a system message."""
    root = tmp_path_factory.mktemp("exported-conv")
    write_curation(root / "store", limit=60, system_every=3)
    result = export_curated(root / "store", "pandalm", root / "out", formats=["preference", "unpaired"])
    return root, result
