"""One namespace: the wheel holds `prefkit` and nothing else at its top, and a user's own `train.py` or
`export.py` beside a notebook never shadows prefkit's stages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("annotate", "curate", "export", "train")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the checkout's files: setuptools writes build/ into the tree it builds,
    # and a stale build/ would put deleted modules into the wheel.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # No build isolation: the venv's setuptools builds it, so nothing is fetched.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("prefkit-*.whl")
    return found


def test_the_wheels_only_top_level_package_is_prefkit(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"prefkit"}
    for stage in STAGES:
        assert f"prefkit/{stage}/__init__.py" in names


def test_every_package_folder_is_in_the_wheel(wheel: Path) -> None:
    """A subpackage left out of pyproject's list would install without its modules."""
    names = set(zipfile.ZipFile(wheel).namelist())
    folders = [p.parent for stage in STAGES for p in (ROOT / stage).rglob("__init__.py")]
    folders += [p.parent for p in (ROOT / "prefkit").rglob("__init__.py")]
    for folder in folders:
        rel = folder.relative_to(ROOT).as_posix()
        inside = rel if rel.startswith("prefkit") else f"prefkit/{rel}"
        for module in folder.glob("*.py"):
            assert f"{inside}/{module.name}" in names, f"{module.relative_to(ROOT)} is not in the wheel"


def test_a_users_train_and_export_modules_do_not_shadow_prefkits(tmp_path: Path) -> None:
    for name in ("train", "export", "curate", "annotate"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    prefkit = Path(sys.executable).with_name("prefkit")
    helped = subprocess.run(
        [str(prefkit), "train", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    assert "--method" in helped.stdout or "METHOD" in helped.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import prefkit.train, prefkit.export, prefkit.curate, prefkit.annotate; print('ok')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "ok"
    # The user's modules are still theirs to import.
    theirs = subprocess.run([sys.executable, "-c", "import train"], cwd=tmp_path, capture_output=True, text=True)
    assert "the user's own train.py" in theirs.stderr
