"""`prefkit train dpo|kto` against TRL's `DPOTrainer`/`KTOTrainer` on one GPU, side by side.

    python bench/train_gpu.py                          # one CUDA GPU: Llama-3.2-1B's shape, bf16
    python bench/train_gpu.py --device cpu --shape tiny  # the same script end to end on a CPU (a smoke run)

Everything is built locally, nothing is downloaded: a model of Llama-3.2-1B's shape (hidden 2048,
16 layers, 32 heads / 8 KV heads, MLP 8192, vocab 128,256, tied embeddings) with random weights saved in
bf16, a word-level tokenizer over the whole vocabulary, and pairs whose prompt and completion lengths
are each uniform in 64–512 tokens. 8 pairs per step (KTO: 16 completions per step). Each trainer runs in
its own process; the variants alternate over repeats. Printed per trainer: tokens/s (non-pad tokens of
prompt+chosen and prompt+rejected, steady state after the warm-up steps), MFU (6·N FLOPs per token
+2·N for a reference forward, over the GPU's bf16 peak), peak GPU memory (CPU: peak RSS above the
import baseline), and the step-1 loss (ln 2 for DPO: the reference starts equal to the policy).

- trl-dpo: `DPOTrainer`, bf16, gradient checkpointing off; trl-dpo-defaults: TRL's own defaults
  (gradient checkpointing on); prefkit-dpo: `prefkit train dpo` defaults (packed, compiled on CUDA,
  cached reference log-probs; the reference pass is timed separately and shown).
- trl-kto / prefkit-kto: the same for KTO.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    # Llama-3.2-1B (config.json of meta-llama/Llama-3.2-1B)
    "1b": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
        rope_theta=500000.0,
        max_position_embeddings=2048,
        lengths=(64, 512),
    ),
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        max_position_embeddings=512,
        lengths=(8, 64),
    ),
}
VARIANTS = ("trl-dpo", "trl-dpo-defaults", "prefkit-dpo", "trl-kto", "prefkit-kto")


def build(d: Path, shape: str, pairs: int, seed: int = 0) -> None:
    import torch
    from datasets import Dataset, DatasetDict
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    spec = dict(SHAPES[shape])
    lo, hi = spec.pop("lengths")
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(special + [f"w{i}" for i in range(spec["vocab_size"] - len(special))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(d / "model")
    torch.manual_seed(seed)
    config = LlamaConfig(**spec, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(d / "model")
    rng = random.Random(seed)
    n_words = spec["vocab_size"] - len(special)

    def text():
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(rng.randint(lo, hi)))

    rows = [{"prompt": text(), "chosen": text(), "rejected": text()} for _ in range(pairs)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(d / "pairs"))
    unpaired = [
        {"prompt": r["prompt"], "completion": r[c], "label": c == "chosen"}
        for r in rows
        for c in ("chosen", "rejected")
    ]
    rng.shuffle(unpaired)
    DatasetDict({"train": Dataset.from_list(unpaired)}).save_to_disk(str(d / "unpaired"))


def _peak(device: str, base_rss: float) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss) / 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(variant: str, d: Path, device: str, steps: int, warmup: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import transformers  # noqa: F401
    import trl  # noqa: F401

    base = _rss_mb()
    out = Path(tempfile.mkdtemp(prefix=f"gpu-bench-{variant}-"))
    kto = variant.endswith("kto")
    batch = 16 if kto else 8  # 8 pairs = 16 sequences; KTO: 16 completions (+16 KL rows)
    bf16 = device == "cuda"
    if variant.startswith("trl"):
        from prefkit.train.data import load_splits
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

        marks: list[tuple[float, int]] = []

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if device == "cuda":
                    torch.cuda.synchronize()
                marks.append((time.perf_counter(), state.num_input_tokens_seen))

        model = AutoModelForCausalLM.from_pretrained(d / "model", dtype=torch.bfloat16 if bf16 else torch.float32)
        tok = AutoTokenizer.from_pretrained(d / "model")
        common = dict(
            output_dir=str(out),
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-6,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=device == "cpu",
            beta=0.1,
            max_length=2048,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",
            bf16=bf16,
        )
        if not variant.endswith("defaults"):
            common["gradient_checkpointing"] = False
        if kto:
            from trl import KTOConfig, KTOTrainer

            trainer = KTOTrainer(
                model=model,
                args=KTOConfig(**common),
                train_dataset=load_splits(d / "unpaired")["train"],
                processing_class=tok,
                callbacks=[Clock()],
            )
        else:
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                args=DPOConfig(**common),
                train_dataset=load_splits(d / "pairs")["train"],
                processing_class=tok,
                callbacks=[Clock()],
            )
        trainer.train()
        (t0, k0), (t1, k1) = marks[warmup - 1], marks[-1]
        tokens_per_s = (k1 - k0) / (t1 - t0) if k1 > k0 else float("nan")
        step1 = next(r["loss"] for r in trainer.state.log_history if "loss" in r)
        ref_pass = 0.0
        n_params = sum(p.numel() for p in model.parameters())
        ref_forward = True
    else:
        from prefkit.train.config import TrainConfig
        from prefkit.train.trainer import read_metrics, train

        cfg = TrainConfig(
            method="kto" if kto else "dpo",
            data=str(d / ("unpaired" if kto else "pairs")),
            model=str(d / "model"),
            out=str(out),
            lr=1e-6,
            batch_size=batch,
            max_steps=steps,
            warmup_ratio=0.0,
            progress=False,
            threads=threads,
            max_length=2048,
            max_prompt_length=1024,
            device=device,
            model_dtype="bfloat16" if bf16 else "float32",
            ref_cache_dir=str(out / "cache"),
        )
        train(cfg)
        rows = [r for r in read_metrics(out) if "loss" in r]
        steady = rows[warmup:]
        tokens_per_s = sum(r["tokens"] for r in steady) / sum(r["seconds"] for r in steady)
        step1 = rows[0]["loss"]
        ref_pass = rows[0].get("ref_pass_s", 0.0)
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):  # count parameters without allocating them
            n_params = sum(
                p.numel()
                for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d / "model")).parameters()
            )
        ref_forward = False  # the reference log-probs were cached before the first step
    from prefkit.train.metrics import mfu

    util = mfu(n_params, tokens_per_s, torch.device(device), ref_forward=ref_forward)
    return {
        "tokens_per_s": tokens_per_s,
        "mfu": util,
        "peak": _peak(device, base),
        "step1_loss": step1,
        "ref_pass_s": ref_pass,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--shape", default="1b", choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 30 on GPU, 6 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of tokens/s (compilation, allocator)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    steps = a.steps or (30 if a.device == "cuda" else 6)
    warmup = a.warmup or (5 if a.device == "cuda" else 2)
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, Path(a.dir), a.device, steps, warmup, a.threads)))
        return
    d = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    build(d, a.shape, pairs=steps * 8)
    variants = a.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    for rep in range(a.repeats):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    v,
                    "--dir",
                    str(d),
                    "--device",
                    a.device,
                    "--steps",
                    str(steps),
                    "--warmup",
                    str(warmup),
                    "--threads",
                    str(a.threads),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{v} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            results[v].append(json.loads(line[7:]))
            print(f"  {v}: {results[v][-1]}", file=sys.stderr)
    import torch
    import transformers

    gpu = torch.cuda.get_device_name() if a.device == "cuda" else "CPU"
    print(
        f"{gpu}; torch {torch.__version__}, transformers {transformers.__version__}; shape {a.shape}; "
        f"{steps} steps, tokens/s after {warmup} warm-up steps; medians of {a.repeats}\n"
    )
    unit = "GiB" if a.device == "cuda" else "GiB RSS"
    print(f"| trainer | tokens/s | × TRL | MFU | peak ({unit}) | step-1 loss | reference pass (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    med = {
        v: {k: statistics.median(r[k] if r[k] is not None else float("nan") for r in rs) for k in rs[0]}
        for v, rs in results.items()
        if rs
    }
    for v, m in med.items():
        base = med.get("trl-kto" if v.endswith("kto") else "trl-dpo")
        ratio = m["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        util = f"{m['mfu']:.0%}" if m["mfu"] == m["mfu"] else "n/a"
        print(
            f"| {v} | {m['tokens_per_s']:,.0f} | {ratio:.2f} | {util} | {m['peak']:.2f} | {m['step1_loss']:.6f} | "
            f"{m['ref_pass_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
