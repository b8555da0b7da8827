"""A checkpoint or reference cache from someone else must not run code when prefkit reads it.

Each attack file is a real pickle whose `__reduce__` calls `os.system` to create a marker file, the
way a crafted `state.pt` ran code through `torch.load(..., weights_only=False)`.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from prefkit.train.config import TrainConfig
from prefkit.train.refcache import cached
from prefkit.train.safeload import UnsafeFileError
from prefkit.train.trainer import TrainError, _load_checkpoint, _save_checkpoint, train

from tests.train.synth import pairs, save_dataset, tiny_model

torch.set_num_threads(1)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("untrusted")
    tiny_model(d / "model")
    save_dataset(d / "pairs", pairs(16, 0), pairs(4, 1))
    return d


def _cfg(world: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(world / "pairs"), model=str(world / "model"), out=str(out), lr=1e-3, max_steps=2)
    base.update(batch_size=4, ref_cache_dir=str(world / "cache"), progress=False, threads=1)
    return TrainConfig(**{**base, **kw})


def _scheduler_state() -> dict:
    opt = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0).state_dict()


def test_resume_refuses_a_checkpoint_that_carries_code(world, tmp_path):
    marker = tmp_path / "marker"
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": 1, "sharding": "ddp", "scheduler": _scheduler_state()}))
    torch.save({"model": _RunsCode(marker), "optimizer": {}}, ckpt / "state.pt")
    with pytest.raises(TrainError, match=r"state\.pt: refused, not a file of tensors only .*posix\.system"):
        train(_cfg(world, tmp_path / "run", resume=True))
    assert not marker.exists()
    assert not (tmp_path / "run" / "final").exists()


def test_a_cache_file_that_carries_code_is_refused(world, tmp_path):
    marker = tmp_path / "marker"
    cache = tmp_path / "cache"
    train(_cfg(world, tmp_path / "first", ref_cache_dir=str(cache), max_steps=1))
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 2  # train and test splits
    for f in files:  # replace the genuine cache files by ones that run code when unpickled
        torch.save(_RunsCode(marker), f)
    with pytest.raises(TrainError, match=r"refused, not a file of tensors only .*delete the file"):
        train(_cfg(world, tmp_path / "second", ref_cache_dir=str(cache), max_steps=1))
    assert not marker.exists()
    # the cache reader refuses it on its own too, and a tensor of the wrong shape as well
    with pytest.raises(UnsafeFileError, match="posix.system"):
        cached(files[0].stem, cache, make=lambda: torch.zeros(1, 2))
    torch.save({"not": "a tensor"}, files[0])
    with pytest.raises(UnsafeFileError, match=r"expected an \(n, 2\) tensor"):
        cached(files[0].stem, cache, make=lambda: torch.zeros(1, 2))
    assert not marker.exists()


def test_a_genuine_checkpoint_keeps_its_state_in_json_and_tensors(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched.step()
    _save_checkpoint(tmp_path / "ckpt", model, opt, sched, 7, main=True, fsdp=False)
    meta = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert meta["step"] == 7 and meta["sharding"] == "ddp" and meta["scheduler"]["last_epoch"] == 1
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1 / (s + 1))
    assert _load_checkpoint(tmp_path / "ckpt", model2, opt2, sched2, fsdp=False) == 7
    torch.testing.assert_close(model2.weight, model.weight, rtol=0, atol=0)
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_a_checkpoint_without_its_json_is_named(tmp_path):
    (tmp_path / "ckpt").mkdir()
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "ckpt" / "state.pt")
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(TrainError, match="no state.json"):
        _load_checkpoint(tmp_path / "ckpt", model, opt, sched, fsdp=False)
