"""bench/train_gpu.py's machinery for the one GPU call: what it installs, that one failing or overrunning
trainer leaves the others and the JSON, and that it imports prefkit from a bare copy of the tree."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import train_gpu  # noqa: E402


def _wheel(d: Path, name: str, version: str) -> Path:
    f = d / f"{name}-{version}-py3-none-any.whl"
    f.write_bytes(b"")  # only the name is read
    return f


def test_nothing_to_install_where_every_need_is_met(tmp_path):
    # Needs this venv meets (its own versions, so a newer trl on PyPI does not break CI): a no-op.
    from importlib.metadata import version

    needs = {name: f"=={version(name)}" for name in train_gpu.NEEDS}
    assert train_gpu.wheels_needed(tmp_path, needs) == []


def test_an_unmet_need_picks_the_wheel_that_meets_it(tmp_path):
    _wheel(tmp_path, "dill", "0.3.0")  # does not meet the need
    good = _wheel(tmp_path, "dill", "99.0")
    _wheel(tmp_path, "trl", "99.0")  # trl's need is met here: not installed
    needs = {"dill": ">=99", "trl": ">=0.1"}
    assert train_gpu.wheels_needed(tmp_path, needs) == [good]


def test_a_missing_package_is_installed_from_its_wheel(tmp_path):
    good = _wheel(tmp_path, "no_such_package_xyz", "1.0")
    assert train_gpu.wheels_needed(tmp_path, {"no-such-package-xyz": "==1.0"}) == [good]


def test_an_unmet_need_without_a_wheel_says_how_to_fetch_it(tmp_path):
    with pytest.raises(SystemExit, match=r"dill>=99 is needed .* no wheel .*gpu_run.sh fetch"):
        train_gpu.wheels_needed(tmp_path, {"dill": ">=99"})


def test_a_failing_trainer_is_a_row_with_its_error(tmp_path):
    code = "import sys; print('RESULT {\"tokens_per_s\": 5.0}'); sys.exit(0)"
    ok = train_gpu.run_worker("prefkit-dpo", 0, [sys.executable, "-c", code], 60, tmp_path, {})
    assert ok["tokens_per_s"] == 5.0 and "error" not in ok
    bad = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    row = train_gpu.run_worker("trl-dpo", 0, bad, 60, tmp_path, {})
    assert row["error"] == "exit status 3" and row["stderr_tail"] == "boom"
    assert "boom" in (tmp_path / "trl-dpo-0.log").read_text()


def test_an_overrunning_trainer_is_killed_with_its_children(tmp_path):
    # the child starts a grandchild (as inductor's compile workers are) and both hang
    pid_file = tmp_path / "pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    t = time.perf_counter()
    row = train_gpu.run_worker("prefkit-kto", 0, [sys.executable, "-c", code], 3, tmp_path, {})
    assert time.perf_counter() - t < 30
    assert row["error"] == "timed out after 3 s"
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # killed with the group; give the kernel a moment to reap it
        if not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the trainer's child outlived the time limit")


def _bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(ROOT / "bench" / "train_gpu.py"), "--device", "cpu", "--shape", "tiny"]
    argv += ["--steps", "4", "--variants", "trl-dpo,prefkit-kto", "--results", str(tmp_path), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_the_json_is_written_when_every_trainer_overruns(tmp_path):
    # each worker needs far longer than 1 s to import torch and TRL: all time out, the script goes on
    proc = _bench(tmp_path, "--timeout", "1")
    (path,) = tmp_path.glob("train_gpu-cpu-*.json")
    report = json.loads(path.read_text())
    assert report["smoke"] is True and report["environment"]["device"] == "CPU"
    assert report["environment"]["torch"] and report["environment"]["trl"]
    assert [(r["variant"], r["error"]) for r in report["rows"]] == [
        ("trl-dpo", "timed out after 1 s"),
        ("prefkit-kto", "timed out after 1 s"),
    ]
    assert report["summary"] == {}
    assert "failed: trl-dpo (timed out after 1 s), prefkit-kto (timed out after 1 s)" in proc.stdout


def test_trainers_past_the_budget_are_skipped_and_recorded(tmp_path):
    # building the model and data alone takes longer than what a 5 s budget leaves a trainer
    _bench(tmp_path, "--budget", "5")
    (path,) = tmp_path.glob("train_gpu-cpu-*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [(r["variant"], r["error"]) for r in rows] == [
        ("trl-dpo", "skipped: the --budget was spent"),
        ("prefkit-kto", "skipped: the --budget was spent"),
    ]


def test_prefkit_imports_from_a_copy_of_the_tree_that_is_not_installed():
    # the GPU machine gets the tree without `pip install`: drop the editable install's finder
    code = (
        "import importlib.util, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "assert importlib.util.find_spec('prefkit.train') is None, 'the editable finder is still there'\n"
        f"sys.path.insert(0, {str(ROOT / 'bench')!r})\n"
        "import train_gpu\n"
        "import prefkit.train.metrics\n"
        "print(prefkit.train.metrics.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert Path(out.stdout.strip()) == ROOT / "train" / "metrics.py"
