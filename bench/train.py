"""`prefkit train dpo` against TRL's `DPOTrainer`, side by side on the same tiny model, data, batch and dtype.

    python bench/train.py [--repeats 3] [--pairs 128] [--threads 1]

Each run is its own process (so peak memory is its own), the variants alternate within each repeat,
and the table shows medians over repeats and ratios against TRL:

- trl: `DPOTrainer` with bf16 and gradient checkpointing off (NOTES.md: both hurt on CPU), reference
  forward every step (its default), fp32.
- prefkit on-the-fly: `--ref on-the-fly`, the same work as TRL (policy + reference forward per step).
- prefkit cached: the default: reference log-probs computed in one pass first (its time is shown and
  counted in the "incl. ref pass" column), then policy-only steps.

tokens/s counts the non-pad tokens of prompt+chosen and prompt+rejected (TRL: its own
`num_input_tokens_seen`, non-padding), steady state after 2 warm-up steps, and over the whole epoch
(all optimizer steps with data collation, plus prefkit's reference pass). Peak memory is the process's peak RSS above its RSS
after importing the libraries (before the model loads). Step-1 losses must agree within 1e-4 (ln 2 for
both: the reference starts equal to the policy).
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
VARIANTS = ("trl", "prefkit-on-the-fly", "prefkit-cached")
WARMUP = 2  # steps left out of the steady-state figure (allocator, lazy initialisation)
WORDS = [f"w{i}" for i in range(200)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_world(d: Path, pairs: int, hidden: int, layers: int) -> None:
    from datasets import Dataset, DatasetDict
    from prefkit.train.tiny import save_tiny

    save_tiny(d / "model", extra_words=WORDS, hidden=hidden, layers=layers, heads=4)
    rng = random.Random(0)

    def text(lo, hi):
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))

    rows = [{"prompt": text(8, 48), "chosen": text(4, 64), "rejected": text(4, 64)} for _ in range(pairs)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(d / "data"))


def epoch_tokens(d: Path) -> int:
    from prefkit.train.data import Tokenise, load_splits
    from transformers import AutoTokenizer

    tokenise = Tokenise(AutoTokenizer.from_pretrained(d / "model"), 512, 256)
    total = 0
    for r in load_splits(d / "data")["train"].to_list():
        for c in ("chosen", "rejected"):
            p, comp = tokenise(r["prompt"], r[c])
            total += len(p) + len(comp)
    return total


def worker(variant: str, d: Path, threads: int, batch: int, lr: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    base = rss_mb()
    out = Path(tempfile.mkdtemp(prefix=f"bench-{variant}-"))
    if variant == "trl":
        from prefkit.train.data import load_splits
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import DPOConfig, DPOTrainer

        marks: dict[str, float] = {}
        steps: list[tuple[float, int]] = []

        class Clock(TrainerCallback):
            def on_train_begin(self, *a, **k):
                marks["begin"] = time.perf_counter()

            def on_step_end(self, args, state, control, **k):
                steps.append((time.perf_counter(), state.num_input_tokens_seen))

            def on_train_end(self, *a, **k):
                marks["end"] = time.perf_counter()

        model = AutoModelForCausalLM.from_pretrained(d / "model", dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(d / "model")
        args = DPOConfig(
            output_dir=str(out),
            per_device_train_batch_size=batch,
            num_train_epochs=1,
            learning_rate=lr,
            lr_scheduler_type="constant",
            bf16=False,
            gradient_checkpointing=False,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            beta=0.1,
            max_length=512,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
            include_num_input_tokens_seen="non_padding",
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=load_splits(d / "data")["train"],
            processing_class=tok,
            callbacks=[Clock()],
        )
        trainer.train()
        seconds = marks["end"] - marks["begin"]
        (t0, k0), (t1, k1) = steps[WARMUP - 1], steps[-1]
        steady = (k1 - k0) / (t1 - t0)
        step1 = next(r["loss"] for r in trainer.state.log_history if "loss" in r)
        ref_pass = 0.0
    else:
        from prefkit.train.config import TrainConfig
        from prefkit.train.trainer import read_metrics, train

        cfg = TrainConfig(
            method="dpo",
            data=str(d / "data"),
            model=str(d / "model"),
            out=str(out),
            lr=lr,
            batch_size=batch,
            epochs=1,
            warmup_ratio=0.0,
            progress=False,
            threads=threads,
            max_length=512,
            max_prompt_length=256,
            ref="cached" if variant == "prefkit-cached" else "on-the-fly",
            ref_cache_dir=str(out / "cache"),
        )
        train(cfg)
        rows = [r for r in read_metrics(out) if "loss" in r]
        seconds = sum(r["seconds"] for r in rows)
        steady = sum(r["tokens"] for r in rows[WARMUP:]) / sum(r["seconds"] for r in rows[WARMUP:])
        step1 = rows[0]["loss"]
        ref_pass = rows[0].get("ref_pass_s", 0.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "steady_tokens_per_s": steady,
        "ref_pass_s": ref_pass,
        "step1_loss": step1,
        "peak_mb": peak - base,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, Path(a.dir), a.threads, a.batch, a.lr)))
        return
    d = Path(tempfile.mkdtemp(prefix="bench-train-"))
    make_world(d, a.pairs, a.hidden, a.layers)
    tokens = epoch_tokens(d)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for rep in range(a.repeats):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]  # alternate, so drifting load hits all alike
        for v in order:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    v,
                    "--dir",
                    str(d),
                    "--threads",
                    str(a.threads),
                    "--batch",
                    str(a.batch),
                    "--lr",
                    str(a.lr),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{v} failed:\n{proc.stderr[-3000:]}")
            results[v].append(json.loads(line[7:]))
            print(f"  repeat {rep + 1} {v}: {json.loads(line[7:])}", file=sys.stderr)
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in results.items()}
    trl = med["trl"]
    print(
        f"tiny Llama hidden {a.hidden}, {a.layers} layers; {a.pairs} pairs, batch {a.batch}, fp32, "
        f"{a.threads} thread(s), {tokens} tokens/epoch; medians of {a.repeats} alternating runs\n"
    )
    print(
        "| trainer | steady tokens/s (after step 2) | × TRL | epoch tokens/s (all steps + ref pass) | × TRL "
        "| peak RSS above baseline (MB) | × TRL | step-1 loss |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    trl_epoch = tokens / (trl["seconds"] + trl["ref_pass_s"])
    for v in VARIANTS:
        m = med[v]
        epoch = tokens / (m["seconds"] + m["ref_pass_s"])
        print(
            f"| {v} | {m['steady_tokens_per_s']:,.0f} | {m['steady_tokens_per_s'] / trl['steady_tokens_per_s']:.2f} | "
            f"{epoch:,.0f} | {epoch / trl_epoch:.2f} | {m['peak_mb']:.0f} | {m['peak_mb'] / trl['peak_mb']:.2f} | "
            f"{m['step1_loss']:.6f} |"
        )
    diff = max(abs(med[v]["step1_loss"] - trl["step1_loss"]) for v in VARIANTS)
    print(
        f"\nstep-1 loss difference from TRL: {diff:.2e} ({'within' if diff <= 1e-4 else 'OVER'} 1e-4; "
        "TRL logs losses rounded to 4 decimals)"
    )


if __name__ == "__main__":
    main()
