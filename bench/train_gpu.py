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

Also kept per trainer: the reference-pass time (prefkit: its one cached pass over the data; TRL: its
reference forwards summed over the run, which cover the same examples), torch.compile's graph count
and the graphs compiled after the warm-up (recompilations that the steady figure paid for), and with
`--profile` a `torch.profiler` table of the last steps (left out of tokens/s).

Each trainer runs in its own process with its own time limit (`--timeout`, and `--budget` for the
whole run): one that fails or runs out of time is recorded as such and the others still run. After
every trainer the JSON `<results>/train_gpu-<device>-<date>.json` is rewritten (device name, CUDA,
torch, transformers, trl and datasets versions, every row), so whatever finished is on disk even if the
whole script is killed. `bench/gpu_run.sh` is the one-call driver for the lent GPU machine.
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


def _use_checkout() -> None:
    """Where prefkit is not installed (the GPU machine gets a bare copy of the tree), map
    `prefkit.<stage>` to the stage folders at the root, as pyproject's package-dir does."""
    import importlib.util

    import prefkit

    if importlib.util.find_spec("prefkit.train") is None:
        prefkit.__path__.append(str(ROOT))


_use_checkout()

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

# What the bench needs beyond the GPU machine's image (torch, transformers, accelerate, tokenizers, ...):
# TRL at the version the issue's figures came from, datasets, and the packages datasets pins that the
# image lacks or may hold at another version. `bash bench/gpu_run.sh fetch` downloads these wheels.
NEEDS = {
    "trl": "==1.16.0",
    "datasets": "==5.2.0",
    "dill": ">=0.3.0,<0.4.2",
    "multiprocess": ">=0.70.19,<0.70.20",
    "fsspec": ">=2023.1.0,<=2026.9.0",
    "pyarrow": ">=24.0.0",
}


def wheels_needed(wheel_dir: Path, needs: dict[str, str] = NEEDS) -> list[Path]:
    """The wheels in `wheel_dir` to install for each need this Python does not meet (none when all are
    met). An unmet need without a matching wheel is an error naming the package and how to fetch it."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name, parse_wheel_filename

    wheels = []
    for f in sorted(Path(wheel_dir).glob("*.whl")) if Path(wheel_dir).is_dir() else []:
        name, ver, _, _ = parse_wheel_filename(f.name)
        wheels.append((canonicalize_name(name), ver, f))
    picked = []
    for name, spec in needs.items():
        want = SpecifierSet(spec)
        try:
            if want.contains(version(name), prereleases=True):
                continue
        except PackageNotFoundError:
            pass
        match = [f for n, v, f in wheels if n == canonicalize_name(name) and want.contains(v, prereleases=True)]
        if not match:
            raise SystemExit(
                f"{name}{spec} is needed and {wheel_dir} has no wheel for it: run `bash bench/gpu_run.sh fetch` here"
            )
        picked.append(match[-1])
    return picked


def build(d: Path, shape: str, pairs: int, seed: int = 0, device: str = "cpu") -> None:
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
    with torch.device(device):  # 1.2B random weights initialise in seconds on a GPU, a minute on its CPU
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(d / "model")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # the workers need the memory, and each measures its own peak
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


PROFILE_TAIL = 3  # profiled steps at the end (one profiler warm-up + two recorded), left out of tokens/s


class _Profile:
    """`torch.profiler` over the last PROFILE_TAIL steps; `step()` after each optimizer step. Writes the
    kernel table (by self device time) to `path` when the recorded steps end."""

    def __init__(self, path: Path | None, device: str, steps: int):
        self.prof = None
        if path is None:
            return
        from torch.profiler import ProfilerActivity, profile, schedule

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        sched = schedule(wait=steps - PROFILE_TAIL, warmup=1, active=PROFILE_TAIL - 1)
        self.path, self.device = path, device
        self.prof = profile(activities=acts, schedule=sched, on_trace_ready=self._write, record_shapes=False)

    def _write(self, prof) -> None:
        keys = ("self_device_time_total", "self_cuda_time_total") if self.device == "cuda" else ("self_cpu_time_total",)
        for key in keys:  # torch renamed the CUDA columns to "device"; older releases have only the old name
            try:
                self.path.write_text(prof.key_averages().table(sort_by=key, row_limit=40))
                return
            except (AttributeError, KeyError, ValueError):
                continue

    def __enter__(self):
        if self.prof is not None:
            self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        if self.prof is not None:
            self.prof.__exit__(*exc)

    def step(self) -> None:
        if self.prof is not None:
            self.prof.step()


def _dynamo_counts() -> tuple[int, int]:
    """(graphs compiled, frames dynamo was asked to convert) so far in this process."""
    import torch

    if not hasattr(torch, "_dynamo"):
        return 0, 0
    counters = torch._dynamo.utils.counters
    return int(counters["stats"]["unique_graphs"]), int(counters["frames"]["total"])


def worker(variant: str, d: Path, device: str, steps: int, warmup: int, threads: int, profile: Path | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    import transformers  # noqa: F401
    import trl  # noqa: F401

    base = _rss_mb()
    out = Path(tempfile.mkdtemp(prefix=f"gpu-bench-{variant}-"))
    kto = variant.endswith("kto")
    batch = 16 if kto else 8  # 8 pairs = 16 sequences; KTO: 16 completions (+16 KL rows)
    bf16 = device == "cuda"
    end = steps - (PROFILE_TAIL if profile else 0)  # the steps tokens/s is taken over: (warmup, end]
    if end - warmup < 1:
        raise SystemExit(f"--steps {steps} leaves no steady step after {warmup} warm-up steps (and the profiled tail)")

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    t_start = time.perf_counter()
    prof = _Profile(profile, device, steps)
    graphs_at_warmup = None
    if variant.startswith("trl"):
        from prefkit.train.data import load_splits
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

        marks: list[tuple[float, int]] = []

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                sync()
                marks.append((time.perf_counter(), state.num_input_tokens_seen))
                prof.step()

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
        # TRL runs its reference model inside each step: time those forwards, to set beside prefkit's one pass
        ref_seconds = [0.0]
        ref_model = getattr(trainer, "ref_model", None)
        if ref_model is not None:
            inner = ref_model.forward

            def timed_forward(*args, **kw):
                sync()
                t = time.perf_counter()
                result = inner(*args, **kw)
                sync()
                ref_seconds[0] += time.perf_counter() - t
                return result

            ref_model.forward = timed_forward
        with prof:
            trainer.train()
        (t0, k0), (t1, k1) = marks[warmup - 1], marks[end - 1]
        tokens_per_s = (k1 - k0) / (t1 - t0) if k1 > k0 else float("nan")
        step1 = next(r["loss"] for r in trainer.state.log_history if "loss" in r)
        ref_pass = ref_seconds[0] if ref_model is not None else None
        n_params = sum(p.numel() for p in model.parameters())
        ref_forward = ref_model is not None
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

        def on_step(step: int, row: dict) -> None:
            nonlocal graphs_at_warmup
            if step == warmup:
                graphs_at_warmup = _dynamo_counts()[0]
            prof.step()

        with prof:
            train(cfg, on_step=on_step)
        rows = [r for r in read_metrics(out) if "loss" in r]
        steady = rows[warmup:end]
        tokens_per_s = sum(r["tokens"] for r in steady) / sum(r["seconds"] for r in steady)
        step1 = rows[0]["loss"]
        ref_pass = rows[0].get("ref_pass_s")
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):  # count parameters without allocating them
            n_params = sum(
                p.numel()
                for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d / "model")).parameters()
            )
        ref_forward = False  # the reference log-probs were cached before the first step
    from prefkit.train.metrics import mfu, peak_flops

    graphs, frames = _dynamo_counts()
    util = mfu(n_params, tokens_per_s, torch.device(device), ref_forward=ref_forward)
    peak_flops_s = peak_flops(torch.device(device))
    return {
        "tokens_per_s": tokens_per_s,
        "mfu": util,
        "peak_bf16_tflops": peak_flops_s / 1e12 if peak_flops_s else None,
        "peak_gib": _peak(device, base),
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if device == "cuda" else None,
        "step1_loss": step1,
        "ref_pass_s": ref_pass,
        "compile_graphs": graphs,
        "dynamo_frames": frames,
        # graphs compiled during the steady steps: each one is a recompilation the figure paid for
        "recompiles_after_warmup": graphs - graphs_at_warmup if graphs_at_warmup is not None else 0,
        "n_params": n_params,
        "steps": steps,
        "measured_steps": end - warmup,
        "wall_s": time.perf_counter() - t_start,
    }


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "device"


def environment(device: str) -> dict:
    """What the figures were taken on: the device by name, CUDA and the library versions."""
    import platform

    import torch
    import transformers

    env = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "CPU",
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    for name in ("trl", "datasets", "accelerate", "pyarrow"):
        try:
            env[name] = __import__(name).__version__
        except Exception as e:  # a missing one is recorded, not fatal: the run says what it had
            env[name] = f"unavailable: {type(e).__name__}: {e}"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env["gpu_memory_gib"] = props.total_memory / 2**30
        env["multiprocessors"] = props.multi_processor_count
    return env


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:]


def run_worker(v: str, rep: int, argv: list[str], timeout: float, logs: Path | None, env: dict) -> dict:
    """One trainer in its own process group, killed whole at `timeout`: a row, with `error` on failure."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        error = None if proc.returncode == 0 else f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the compile workers too
        stdout, stderr = proc.communicate()
        error = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t
    if logs is not None:
        (logs / f"{v}-{rep}.log").write_text(f"$ {' '.join(argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None and error is None:
        error = "no RESULT line"
    row = {"variant": v, "repeat": rep, "process_s": seconds}
    if line is not None:
        row.update(json.loads(line[7:]))
    if error is not None:
        row["error"] = error
        row["stderr_tail"] = _tail(stderr)
    return row


def summary(rows: list[dict]) -> dict[str, dict]:
    """Medians per variant over the rows that finished, with the ratio to TRL (checkpointing off)."""
    ok: dict[str, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            ok.setdefault(r["variant"], []).append(r)
    keys = ("tokens_per_s", "mfu", "peak_gib", "step1_loss", "ref_pass_s", "recompiles_after_warmup", "compile_graphs")

    def med(rs, k):
        vals = [r[k] for r in rs if r.get(k) is not None]
        return statistics.median(vals) if vals else None

    med_rows = {v: {k: med(rs, k) for k in keys} | {"runs": len(rs)} for v, rs in ok.items()}
    for v, m in med_rows.items():
        base = med_rows.get("trl-kto" if v.endswith("kto") else "trl-dpo")
        m["x_trl"] = m["tokens_per_s"] / base["tokens_per_s"] if base and base["tokens_per_s"] else None
        m["peak_x_trl"] = m["peak_gib"] / base["peak_gib"] if base and base["peak_gib"] else None
    return med_rows


def table(med: dict[str, dict], device: str) -> str:
    unit = "GiB" if device == "cuda" else "GiB RSS"

    def f(x, spec):
        return "n/a" if x is None or x != x else format(x, spec)

    lines = [
        f"| trainer | tokens/s | × TRL | MFU | peak ({unit}) | step-1 loss | reference pass (s) | recompiles after warm-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v, m in med.items():
        lines.append(
            f"| {v} | {f(m['tokens_per_s'], ',.0f')} | {f(m['x_trl'], '.2f')} | {f(m['mfu'], '.0%')} | "
            f"{f(m['peak_gib'], '.2f')} | {f(m['step1_loss'], '.6f')} | {f(m['ref_pass_s'], '.1f')} | "
            f"{f(m['recompiles_after_warmup'], 'd')} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--shape", default="1b", choices=list(SHAPES))
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 30 on GPU, 6 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of tokens/s (compilation, allocator)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one trainer's process may run")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all trainers together (then skip)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"), help="folder for the JSON")
    ap.add_argument("--logs", default=None, help="folder for each trainer's full output (and profiles)")
    ap.add_argument("--profile", action="store_true", help=f"torch.profiler table of the last {PROFILE_TAIL} steps")
    ap.add_argument("--wheels-needed", metavar="DIR", help="print the wheels in DIR this Python needs, and stop")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", help=argparse.SUPPRESS)
    a = ap.parse_args()
    steps = a.steps or (30 if a.device == "cuda" else 6)
    warmup = a.warmup or (5 if a.device == "cuda" else 2)
    if a.wheels_needed:
        print("\n".join(str(f) for f in wheels_needed(Path(a.wheels_needed))))
        return
    if a.worker:
        prof = Path(a.profile_to) if a.profile_to else None
        result = worker(a.worker, Path(a.dir), a.device, steps, warmup, a.threads, prof)
        print("RESULT " + json.dumps(result))
        return
    variants = a.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    t_begin = time.perf_counter()
    env_info = environment(a.device)
    results_dir = Path(a.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    logs = Path(a.logs) if a.logs else None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d", time.gmtime())
    path = results_dir / f"train_gpu-{_slug(env_info['device'])}-{date}.json"
    report = {
        "script": "bench/train_gpu.py",
        "smoke": a.device != "cuda",  # a CPU run checks the script; it is not the GPU figure
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": env_info,
        "settings": {
            "shape": a.shape,
            "steps": steps,
            "warmup": warmup,
            "repeats": a.repeats,
            "pairs_per_step": 8,
            "kto_completions_per_step": 16,
            "lengths": SHAPES[a.shape]["lengths"],
            "timeout_s": a.timeout,
            "budget_s": a.budget,
            "profile": a.profile,
        },
        "rows": [],
        "summary": {},
    }

    def save() -> None:
        report["summary"] = summary(report["rows"])
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(path)  # a reader (or a kill) never sees half a file

    d = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    t = time.perf_counter()
    build(d, a.shape, pairs=steps * 8, device=a.device)
    report["build_s"] = time.perf_counter() - t
    save()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    for rep in range(a.repeats):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            left = a.budget - (time.perf_counter() - t_begin) if a.budget else float("inf")
            if left < 10:  # too little for even a failed start to say anything
                report["rows"].append({"variant": v, "repeat": rep, "error": "skipped: the --budget was spent"})
                save()
                print(f"  {v}: skipped (budget spent)", file=sys.stderr, flush=True)
                continue
            argv = [sys.executable, __file__, "--worker", v, "--dir", str(d), "--device", a.device]
            argv += ["--steps", str(steps), "--warmup", str(warmup), "--threads", str(a.threads)]
            if a.profile and logs is not None:
                argv += ["--profile-to", str(logs / f"{v}-{rep}.profile.txt")]
            row = run_worker(v, rep, argv, min(a.timeout, left), logs, env)
            report["rows"].append(row)
            save()
            shown = {k: row[k] for k in ("tokens_per_s", "peak_gib", "step1_loss", "error") if k in row}
            print(f"  {v}: {shown}", file=sys.stderr, flush=True)
    report["total_s"] = time.perf_counter() - t_begin
    save()
    e = env_info
    print(
        f"{e['device']}; CUDA {e['cuda']}, torch {e['torch']}, transformers {e['transformers']}, trl {e['trl']}; "
        f"shape {a.shape}; {steps} steps, tokens/s after {warmup} warm-up steps; medians of {a.repeats}\n"
    )
    print(table(report["summary"], a.device))
    failed = [f"{r['variant']} ({r['error']})" for r in report["rows"] if "error" in r]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
