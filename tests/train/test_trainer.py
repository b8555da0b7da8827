"""The training loop end to end on a tiny model: learning, accumulation, DDP, resume, LoRA, CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from prefkit.train.config import TrainConfig
from prefkit.train.trainer import read_metrics, train

from tests.train.synth import pairs, save_dataset, tiny_model, unpaired

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    tiny_model(d / "model")
    save_dataset(d / "pairs", pairs(128, 0), pairs(32, 1))
    save_dataset(d / "kto", unpaired(64, 0), pairs(32, 1))  # unpaired train split, held-out pairs
    return d


def cfg(world: Path, out: str, **kw) -> TrainConfig:
    base = dict(
        data=str(world / "pairs"),
        model=str(world / "model"),
        out=str(world / out),
        lr=5e-3,
        max_steps=30,
        batch_size=8,
        ref_cache_dir=str(world / "cache"),
        progress=False,
        threads=1,
    )
    return TrainConfig(**{**base, **kw})


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def train_rows(run: Path) -> list[dict]:
    return [r for r in read_metrics(run) if "loss" in r]


def assert_weights_close(a: Path, b: Path, atol: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("method", ["dpo", "ipo", "apo-zero", "kto", "rm"])
def test_method_learns_the_synthetic_preference_on_held_out_pairs(world, method):
    data = world / ("kto" if method == "kto" else "pairs")
    final = train(cfg(world, method, method=method, data=str(data), eval_steps=30))
    rows = read_metrics(world / method)
    evals = [r for r in rows if "eval/rewards/accuracies" in r]
    assert evals[-1]["step"] == 30
    assert evals[-1]["eval/rewards/accuracies"] >= 0.9, evals[-1]
    first = rows[0]
    if method != "rm":  # the reference is the starting policy: step 1 has ln 2 (DPO) and zero rewards
        assert first["rewards/margins" if method != "kto" else "rewards/chosen"] == pytest.approx(0, abs=1e-6)
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    keys = {"step", "loss", "rewards/chosen", "rewards/rejected", "tokens_per_s", "lr"}
    keys |= {"kl", "logps/chosen"} if method == "kto" else {"rewards/margins", "rewards/accuracies"}
    assert keys <= set(first)
    assert 0 < first["memory/estimated_gib"] < 1  # a tiny model: estimated up front, logged with step 1
    saved = yaml.safe_load((world / method / "config.yaml").read_text())
    assert saved["method"] == method and saved["lr"] == 5e-3
    if method == "dpo":
        from transformers import AutoModelForCausalLM

        assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
        AutoModelForCausalLM.from_pretrained(final)


def test_batch_8_equals_batch_1_times_8_accumulation(world):
    a = train(cfg(world, "acc8", max_steps=2, lr=1e-3))
    b = train(cfg(world, "acc1", max_steps=2, lr=1e-3, micro_batch_size=1, packing=False))
    la, lb = train_rows(world / "acc8"), train_rows(world / "acc1")
    for ra, rb in zip(la, lb, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-4)
    assert la[1]["loss"] != pytest.approx(la[0]["loss"], abs=1e-6)  # it did learn between steps
    assert_weights_close(a, b, atol=1e-4)


def test_kto_batch_8_equals_batch_1_times_8_accumulation(world):
    # KTO's reference point z0 is the mean over the step's KL rows: with z0 taken per micro-batch
    # (as before), 8 forwards of one example gave another loss and other weights than one of 8
    common = dict(method="kto", data=str(world / "kto"), max_steps=4, lr=1e-3, eval_steps=2)
    a = train(cfg(world, "kto_acc8", **common))
    b = train(cfg(world, "kto_acc1", micro_batch_size=1, packing=False, **common))
    c = train(cfg(world, "kto_tok", max_tokens=70, **common))  # uneven micro-batches by token budget
    # the reference run every step (its KL rows too), in micro-batches of 3: the same again
    d = train(cfg(world, "kto_fly", ref="on-the-fly", micro_batch_size=3, **common))
    runs = ("kto_acc8", "kto_acc1", "kto_tok", "kto_fly")
    for ra, *others in zip(*[read_metrics(world / run) for run in runs], strict=True):
        for k in ("loss", "kl", "rewards/chosen", "eval/rewards/accuracies", "eval/rewards/margins"):
            if k in ra:
                assert [r[k] for r in others] == pytest.approx([ra[k]] * 3, abs=1e-5), (ra["step"], k)
    assert max(r["kl"] for r in train_rows(world / "kto_acc8")) > 0.05  # a step where z0 is not clamped to 0
    assert_weights_close(a, b, atol=1e-5)
    assert_weights_close(a, c, atol=1e-5)
    assert_weights_close(a, d, atol=1e-5)


def test_gradient_checkpointing_changes_memory_not_the_result(world):
    a = train(cfg(world, "gc_off", max_steps=1, lr=1e-3))
    b = train(cfg(world, "gc_on", max_steps=1, lr=1e-3, gradient_checkpointing=True))
    assert_weights_close(a, b, atol=1e-5)


def test_token_budget_micro_batches_equal_one_batch(world):
    a = train(cfg(world, "tok_full", max_steps=2, lr=1e-3))
    b = train(cfg(world, "tok_budget", max_steps=2, lr=1e-3, max_tokens=60))
    assert_weights_close(a, b, atol=1e-4)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PREFKIT_DIST_BACKEND": "gloo"}


def torchrun_train(port: int, *args: str, method: str = "dpo") -> subprocess.CompletedProcess:
    """`prefkit train METHOD ARGS` under torchrun, 2 gloo processes on CPU; fails the test if it fails."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    proc = subprocess.run(
        [*launch, "-m", "prefkit.cli", "train", method, *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # torchrun + 2 processes importing torch/transformers: ~25 s on 2 busy cores
@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_ddp_two_gloo_processes_equal_one_process(world, method, tmp_path):
    # KTO with batch 5: 3 examples on one process and 2 on the other; its z0 is the mean over all 5 KL
    # rows (a mean of the two processes' means, or z0 per process, would differ)
    data = world / ("kto" if method == "kto" else "pairs")
    batch = "5" if method == "kto" else "8"
    steps = "4" if method == "kto" else "2"  # by step 4, KTO's z0 is above 0 (not clamped)
    flags = dict(method=method, data=str(data), max_steps=int(steps), lr=1e-3, batch_size=int(batch))
    one = train(cfg(world, f"ddp1_{method}", **flags))
    args = [
        *("--data", str(data), "--model", str(world / "model"), "--out", str(tmp_path / "ddp2")),
        *("--lr", "1e-3", "--max-steps", steps, "--batch-size", batch, "--ref-cache-dir", str(world / "cache")),
        *("--device", "cpu", "--threads", "1", "--no-progress"),
    ]
    torchrun_train(29533 if method == "dpo" else 29536, *args, method=method)
    assert_weights_close(one, tmp_path / "ddp2" / "final", atol=1e-4)
    rows1, rows2 = train_rows(world / f"ddp1_{method}"), train_rows(tmp_path / "ddp2")
    for r1, r2 in zip(rows1, rows2, strict=True):
        for k in ("loss", "kl", "rewards/chosen", "rewards/rejected"):
            if k in r1:
                assert r2[k] == pytest.approx(r1[k], abs=1e-5), (r1["step"], k)
    if method == "kto":
        assert max(r["kl"] for r in rows1) > 0.05  # a step where z0 is not clamped to 0


@pytest.mark.slow  # torchrun + 2 processes importing torch/transformers: ~25 s on 2 busy cores
def test_fsdp_two_gloo_processes_equal_one_process(world, tmp_path):
    # Batch 5 in micro-batches of 2: one process gets 3 examples (2 forwards), the other 2 (1 forward
    # plus a zero-weighted stand-in, since sharded forwards are collectives). A fresh reference cache
    # makes the sharded policy compute it, and evaluating every step puts no-gradient forwards between
    # training steps: both once left the optimizer holding gathered copies instead of the shards.
    one = train(cfg(world, "fsdp1", max_steps=2, lr=1e-3, batch_size=5, eval_steps=1))
    args = [
        *("--data", str(world / "pairs"), "--model", str(world / "model"), "--out", str(world / "fsdp2")),
        *("--lr", "1e-3", "--max-steps", "2", "--batch-size", "5", "--micro-batch-size", "2", "--eval-steps", "1"),
        *("--ref-cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--threads", "1", "--no-progress"),
        *("--sharding", "fsdp"),
    ]
    proc = torchrun_train(29534, *args)
    assert "FSDP2 over 2 processes: 2 decoder layers sharded" in proc.stderr
    assert "reference log-probs for 128 examples computed" in proc.stderr
    assert_weights_close(one, world / "fsdp2" / "final", atol=1e-4)
    rows1, rows2 = read_metrics(world / "fsdp1"), read_metrics(world / "fsdp2")
    assert [r["step"] for r in rows2] == [r["step"] for r in rows1] == [1, 1, 2, 2]  # train, eval, train, eval
    # (not accuracies: at step 1 policy = reference, and the margins' signs are rounding noise)
    keys = ("loss", "rewards/margins", "logps/chosen", "grad_norm", "tokens", "eval/loss", "eval/rewards/margins")
    for r1, r2 in zip(rows1, rows2, strict=True):
        for k in keys:
            if k in r1:
                assert r2[k] == pytest.approx(r1[k], abs=1e-4), (r1["step"], k)
    assert rows2[2]["loss"] != pytest.approx(rows2[0]["loss"], abs=1e-6)  # it learned between the steps
    assert rows2[0]["memory/estimated_gib"] < rows1[0]["memory/estimated_gib"]  # weights and AdamW state halved


@pytest.mark.slow  # torchrun + 2 processes importing torch/transformers: ~25 s on 2 busy cores
def test_fsdp_kto_two_gloo_processes_equal_one_process(world, tmp_path):
    # Batch 5 in micro-batches of 2: the KL rows' forwards (before the step's) are collectives too, so
    # the process with 2 examples runs a zero-weighted stand-in there as well; z0 is over all 5 rows.
    flags = dict(method="kto", data=str(world / "kto"), max_steps=4, lr=1e-3, batch_size=5, micro_batch_size=2)
    one = train(cfg(world, "fsdp_kto1", **flags))
    args = [
        *("--data", str(world / "kto"), "--model", str(world / "model"), "--out", str(tmp_path / "fsdp_kto2")),
        *("--lr", "1e-3", "--max-steps", "4", "--batch-size", "5", "--micro-batch-size", "2"),
        *("--ref-cache-dir", str(world / "cache"), "--device", "cpu", "--threads", "1", "--no-progress"),
        *("--sharding", "fsdp"),
    ]
    torchrun_train(29537, *args, method="kto")
    assert_weights_close(one, tmp_path / "fsdp_kto2" / "final", atol=1e-4)
    rows1, rows2 = train_rows(world / "fsdp_kto1"), train_rows(tmp_path / "fsdp_kto2")
    for r1, r2 in zip(rows1, rows2, strict=True):
        for k in ("loss", "kl", "rewards/chosen", "tokens"):
            assert r2[k] == pytest.approx(r1[k], abs=1e-5), (r1["step"], k)
    assert max(r["kl"] for r in rows1) > 0.05  # a step where z0 is not clamped to 0


@pytest.mark.slow  # torchrun + 2 processes importing torch/transformers/peft: ~25 s on 2 busy cores
def test_fsdp_lora_with_on_the_fly_reference_equals_one_process(world):
    # The reference is the sharded policy with its adapter off, run again before each backward; the
    # saved model is merged from sharded LoRA weights, then gathered.
    flags = dict(max_steps=2, lr=1e-2, lora=True, lora_r=4, ref="on-the-fly")
    one = train(cfg(world, "fsdp_lora1", **flags))
    args = [
        *("--data", str(world / "pairs"), "--model", str(world / "model"), "--out", str(world / "fsdp_lora2")),
        *("--lr", "1e-2", "--max-steps", "2", "--lora", "--lora-r", "4", "--ref", "on-the-fly"),
        *("--device", "cpu", "--threads", "1", "--no-progress", "--sharding", "fsdp"),
    ]
    proc = torchrun_train(29535, *args)
    assert "FSDP2 over 2 processes" in proc.stderr
    assert_weights_close(one, world / "fsdp_lora2" / "final", atol=1e-4)
    assert weights(world / "fsdp_lora2" / "final").keys() == weights(world / "model").keys()  # merged, plain
    rows1, rows2 = train_rows(world / "fsdp_lora1"), train_rows(world / "fsdp_lora2")
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r2["loss"] == pytest.approx(r1["loss"], abs=1e-4)
    assert rows2[1]["rewards/margins"] > 1e-3  # the adapter moved the policy away from its reference


@pytest.mark.slow  # a subprocess that imports torch/transformers and is SIGKILLed: ~20-40 s on 2 busy cores
def test_killed_and_resumed_equals_uninterrupted(world):
    whole = train(cfg(world, "whole", max_steps=6, lr=1e-3))
    c = cfg(world, "killed", max_steps=6, lr=1e-3, save_steps=2)
    script = (
        "import os, signal, sys\n"
        "from prefkit.train.config import TrainConfig\n"
        "from prefkit.train.trainer import train\n"
        f"cfg = TrainConfig(**{c.to_dict()!r})\n"
        "train(cfg, on_step=lambda step, row: step == 3 and os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (world / "killed" / "checkpoint" / "state.pt").exists() and not (world / "killed" / "final").exists()
    c.resume = True
    resumed = train(c)
    assert_weights_close(whole, resumed, atol=1e-5)
    assert [r["step"] for r in train_rows(world / "killed")] == [1, 2, 3, 4, 5, 6]


def test_lora_uses_the_adapter_disabled_model_as_reference(world):
    final = train(cfg(world, "lora", max_steps=3, lr=1e-2, lora=True, lora_r=4))
    rows = train_rows(world / "lora")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # adapter B starts at 0: policy == reference
    assert rows[-1]["rewards/margins"] > 0
    merged, base = weights(final), weights(world / "model")
    assert set(merged) == set(base)  # merged back into a plain model
    assert any(not torch.equal(merged[k], base[k]) for k in base)


def test_cli_yaml_equals_flags_and_flags_win(world, capsys):
    from prefkit.cli import main

    conf = world / "conf.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "beta": 0.2,
                "lr": 2e-3,
                "max_steps": 2,
                "batch_size": 4,
                "progress": False,
                "ref_cache_dir": str(world / "cache"),
                "threads": 1,
            }
        )
    )
    common = ["train", "dpo", "--data", str(world / "pairs"), "--model", str(world / "model")]
    assert main([*common, "--out", str(world / "cli_yaml"), "--config", str(conf), "--max-steps", "3"]) == 0
    assert (
        main(
            [
                *common,
                "--out",
                str(world / "cli_flags"),
                "--beta",
                "0.2",
                "--lr",
                "2e-3",
                "--max-steps",
                "3",
                "--batch-size",
                "4",
                "--no-progress",
                "--ref-cache-dir",
                str(world / "cache"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    a = yaml.safe_load((world / "cli_yaml" / "config.yaml").read_text())
    b = yaml.safe_load((world / "cli_flags" / "config.yaml").read_text())
    assert a["max_steps"] == 3 and a["beta"] == 0.2
    assert {k: v for k, v in a.items() if k != "out"} == {k: v for k, v in b.items() if k != "out"}
    assert_weights_close(world / "cli_yaml" / "final", world / "cli_flags" / "final", atol=0)


def test_cli_bad_input_is_one_line(world, tmp_path, capsys):
    from prefkit.cli import main

    code = main(
        [
            "train",
            "dpo",
            "--data",
            str(world / "kto"),
            "--model",
            str(world / "model"),
            "--out",
            str(tmp_path / "x"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("prefkit train: error:") and "use `kto`" in err[-1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("betta: 0.1\n")
    assert main(["train", "dpo", "--config", str(bad)]) == 1
    assert "unknown key(s) betta" in capsys.readouterr().err


BAD_VALUES = [
    (["--lr=-1e-3"], "lr: must be above 0, got -0.001"),
    (["--lr", "0"], "lr: must be above 0, got 0.0"),
    (["--label-smoothing", "0.5"], "label_smoothing: the probability that a label is flipped must be in [0, 0.5)"),
    (["--beta=-0.5"], "beta: must be above 0, got -0.5"),
    (["--max-length", "1"], "max_length: must be at least 2"),
    (
        ["--max-length", "256", "--max-prompt-length", "300"],
        "max_prompt_length: must be at least 1 and below max_length (256)",
    ),
    (["--epochs", "0"], "epochs: must be above 0 (or give max_steps), got 0.0"),
    (["--warmup-ratio", "5"], "warmup_ratio: a fraction of the steps, in [0, 1], got 5.0"),
    (["--lr", "nan"], "lr: must be a finite number, got nan"),
    (["--undesirable-weight", "0"], "undesirable_weight: must be above 0, got 0.0"),
]


@pytest.mark.parametrize("flags, message", BAD_VALUES, ids=[" ".join(f) for f, _ in BAD_VALUES])
def test_cli_rejects_values_that_cannot_be_meant_before_loading_anything(world, tmp_path, capsys, flags, message):
    from prefkit.cli import main

    method = "robust" if "--label-smoothing" in flags else "dpo"
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--data", str(world / "pairs"), "--model", str(world / "model"), "--out", str(out)]
    code = main(["train", method, *common, "--ref-cache-dir", str(cache), "--no-progress", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("prefkit train: error:"), err
    assert message in err[0]
    assert not out.exists() and not cache.exists()  # refused before the model load and the reference pass


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("lr: -1.0e-3\n", "lr: must be above 0"),
        ("lr: fast\n", "lr: expected float | null, got 'fast'"),
        ("max_length: 128\nmax_prompt_length: 128\n", "max_prompt_length: must be at least 1 and below max_length"),
        ("batch_size: 8.5\n", "batch_size: expected int, got 8.5"),
        ("packing: maybe\n", "packing: expected bool, got 'maybe'"),
    ],
)
def test_a_yaml_config_is_checked_like_the_flags(world, tmp_path, capsys, yaml_text, message):
    from prefkit.cli import main

    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml_text)
    out = tmp_path / "run"
    common = ["--data", str(world / "pairs"), "--model", str(world / "model"), "--out", str(out)]
    assert main(["train", "dpo", *common, "--config", str(conf)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_train_help_shows_every_flag_as_text(capsys):
    from prefkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "recompute activations in backward (less memory, ~30% slower) (default: False)" in text
    assert "option_strings" not in text


def test_cli_names_a_missing_model_folder_and_an_out_that_is_a_file(world, tmp_path, capsys):
    from prefkit.cli import main

    common = ["train", "dpo", "--data", str(world / "pairs"), "--no-progress"]
    for model in ("./no-such-model", str(tmp_path / "missing" / "model"), "~/no/such/model"):
        assert main([*common, "--model", model, "--out", str(tmp_path / "run")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"prefkit train: error: --model {model}: no such folder"]
    assert (
        main([*common, "--model", str(world / "model"), "--ref-model", "./gone", "--out", str(tmp_path / "run")]) == 1
    )
    assert capsys.readouterr().err.strip() == "prefkit train: error: --ref-model ./gone: no such folder"
    assert not (tmp_path / "run").exists()
    (tmp_path / "taken").write_text("a file")
    assert main([*common, "--model", str(world / "model"), "--out", str(tmp_path / "taken")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"prefkit train: error: --out {tmp_path / 'taken'}: is a file; give a folder for the run (it is created if missing)"
    ]
    assert main([*common, "--model", str(world / "model"), "--out", str(tmp_path / "taken" / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {tmp_path / 'taken' / 'run'}: cannot create the run folder" in err[0]
    assert (tmp_path / "taken").read_text() == "a file"


def test_metrics_are_one_json_object_per_line(world):
    train(cfg(world, "m", max_steps=3, eval_steps=2))
    lines = (world / "m" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 3]


def test_conversational_data_trains_through_the_chat_template(world, tmp_path):
    save_dataset(tmp_path / "chat", pairs(64, 0, conversational=True), pairs(16, 1, conversational=True))
    train(cfg(world, "chat", data=str(tmp_path / "chat"), max_steps=15, eval_steps=15))
    rows = read_metrics(world / "chat")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert rows[-1]["eval/rewards/accuracies"] >= 0.9


def test_reference_log_probs_come_from_the_model_in_eval_mode(world, tmp_path):
    from prefkit.train.forward import SequenceLogps
    from prefkit.train.refcache import compute
    from prefkit.train.trainer import prepare_data
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tiny_model(tmp_path / "dropout_model")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))  # noisy in train mode
    c = cfg(world, "dropout", model=str(model_dir), max_steps=1, ref_cache_dir=str(tmp_path / "cache"))
    train(c)
    cached = [torch.load(p, weights_only=True) for p in (tmp_path / "cache").glob("*.pt")]
    cached = next(t for t in cached if len(t) == 128)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    train_ex, _, _ = prepare_data(c, tok)
    fresh = compute(SequenceLogps(model), train_ex, packed=False, pad_id=tok.pad_token_id, device="cpu")
    torch.testing.assert_close(cached, fresh, atol=1e-5, rtol=0)
    model.train()
    noisy = compute(SequenceLogps(model), train_ex[:8], packed=False, pad_id=tok.pad_token_id, device="cpu")
    assert not torch.allclose(noisy, fresh[:8], atol=1e-3)  # dropout would have shown
