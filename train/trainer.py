"""The training loop: read top to bottom.

    setup → load model and data → reference log-probs (cached) → for each step:
        the step's examples → micro-batches (pairs never split) → forward/backward, loss / n_step
        → all-reduce gradients (several processes; FSDP reduce-scatters in backward) → clip → AdamW
        → warmup-cosine schedule
        → metrics.jsonl, eval every N steps, checkpoint every M steps
    → final model in Hugging Face format, config.yaml

The loss of a step is the mean over its examples whatever the micro-batching, so 8 examples in one
forward equal 1 example × 8 accumulation steps, and 2 processes equal one (tested). KTO's reference
point z₀ is a mean over the whole step's KL rows on all processes, so its KL rows run first, without
gradient (`kto_kl_rows`), and the completions' forwards then use that one z₀.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from prefkit.train import metrics as M
from prefkit.train.batching import collate, packing_supported, plan_micro_batches
from prefkit.train.config import TrainConfig, validate
from prefkit.train.data import Example, Tokenise, build_examples, check_kto_weights, dataset_format, load_splits
from prefkit.train.forward import SequenceLogps, SequenceScores, count_params, run
from prefkit.train.losses import kto_reference_point
from prefkit.train.methods import Kind, Method
from prefkit.train.refcache import cached, compute, data_fingerprint, model_fingerprint
from prefkit.train.safeload import UnsafeFileError, load_tensors
from prefkit.train.sharding import (
    full_state_dict,
    full_training_state,
    grad_norm_value,
    load_full_training_state,
    reshard,
    shard,
)

from prefkit import files

REF_PASS_TOKENS = 8192  # tokens per forward in the reference pass (no activations kept, so it can be large)


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message says what to change."""


# ---------------------------------------------------------------- setup


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("PREFKIT_DIST_BACKEND") != "gloo" else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", rank))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> str:
    return cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")


def _autocast(cfg: TrainConfig, device: torch.device) -> Callable:
    dtype = _autocast_dtype(cfg, device)
    if dtype == "float32":
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def check_model_name(name: str, flag: str = "--model") -> None:
    """A name that can only be a local folder must be one; transformers would take it for a Hub id and
    answer "Repo id must be in the form 'repo_name'…". A Hub id is NAME or ORG/NAME."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TrainError(f"{flag} {name}: is a file; give a model folder (with config.json) or a Hub id")
        return
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise TrainError(f"{flag} {name}: no such folder")


def load_model(name: str, method: Method, seed: int, dtype: str = "float32", flag: str = "--model"):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    local = Path(name).expanduser().is_dir()
    where = "" if local else "; it is no local folder either"
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise TrainError(f"{flag} {name}: cannot load a tokenizer ({exc}{where})") from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed)  # the reward head's initialisation
    try:
        if method.kind is Kind.REWARD:
            model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=1, dtype=getattr(torch, dtype))
            model.config.pad_token_id = tok.pad_token_id
        else:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise TrainError(f"{flag} {name}: cannot load it ({exc}{where})") from exc
    return tok, model


def _add_lora(model, cfg: TrainConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise TrainError("--lora needs peft: pip install 'prefkit[lora]'") from exc
    task = "SEQ_CLS" if cfg.method_record().kind is Kind.REWARD else "CAUSAL_LM"
    lc = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type=task,
    )
    return get_peft_model(model, lc)


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _rows(split) -> list[dict]:
    return split.to_list() if split is not None else []


def prepare_data(
    cfg: TrainConfig, tok, log: Callable[[str], None] | None = None
) -> tuple[list[Example], list[Example], Method]:
    """Train and eval examples, and the method that evaluates: the run's, or its `on_pairs` (KTO's
    pair accuracies) when the test split is preference data."""
    method = cfg.method_record()
    splits = load_splits(cfg.data)
    if "train" not in splits:
        raise TrainError(f"{cfg.data}: no `train` split (found {', '.join(splits)})")
    tokenise = Tokenise(tok, cfg.max_length, cfg.max_prompt_length)
    train_rows = _rows(splits["train"])

    def warn(split: str) -> Callable[[str], None] | None:
        return (lambda msg: log(f"{split} split: {msg}")) if log else None

    train = build_examples(train_rows, method, tokenise, batch_size=cfg.batch_size, seed=cfg.seed, warn=warn("train"))
    test_rows = _rows(splits["test"]) if "test" in splits else []
    eval_method = method
    if method.on_pairs and test_rows and dataset_format(list(test_rows[0])) == "preference":
        eval_method = method.on_pairs
    test = (
        build_examples(test_rows, eval_method, tokenise, batch_size=cfg.batch_size, seed=cfg.seed, warn=warn("test"))
        if test_rows
        else []
    )
    if not train:
        raise TrainError(f"{cfg.data}: the train split is empty")
    return train, test, eval_method


# ---------------------------------------------------------------- one micro-batch


def micro_outputs(
    method: Method,
    cfg: TrainConfig,
    policy,
    batch,
    examples: list[Example],
    ref_lp: torch.Tensor | None,
    ref_module=None,
    autocast=nullcontext,
    z0: torch.Tensor | None = None,
):
    """(LossOutput, policy values, ref values or None) for one micro-batch: values are (2n,) for a
    batch of both parts, (n,) for KTO's completions alone (`collate(parts="completion")`, given `z0`)."""
    n = len(examples)
    with autocast():
        values = run(policy, batch).float()
    ref = None
    if method.reference:
        if ref_lp is not None:
            parts = [ref_lp[:, 0], ref_lp[:, 1]] if batch.n_seq == 2 * n else [ref_lp[:, 0]]
            ref = torch.cat(parts).to(values.device)
        else:
            with torch.no_grad(), autocast(), ref_module() as ref_mod:
                ref = run(ref_mod, batch).float()
    kw = {name: getattr(cfg, name) for name in method.options}
    if method.length_normalised:
        lengths = batch.lengths.float()
        kw.update(chosen_lengths=lengths[:n], rejected_lengths=lengths[n:])
    # the three kinds' losses take their values differently (losses.py); which one is the record's
    if method.kind is Kind.UNPAIRED:
        labels = torch.tensor([e.label for e in examples], device=values.device)
        kl_rows = (values[n:], ref[n:]) if z0 is None else (None, None)
        out = method.loss_fn(values[:n], ref[:n], labels, *kl_rows, z0=z0, beta=cfg.resolved_beta(), **kw)
    elif method.kind is Kind.REWARD:
        margin = torch.tensor([e.margin for e in examples], device=values.device)
        out = method.loss_fn(values[:n], values[n:], margin=margin)
    else:
        out = method.loss_fn(
            policy_chosen=values[:n],
            policy_rejected=values[n:],
            ref_chosen=None if ref is None else ref[:n],
            ref_rejected=None if ref is None else ref[n:],
            beta=cfg.resolved_beta(),
            **kw,
        )
    return out, values, ref


@torch.no_grad()
def kto_kl_rows(
    fwd,
    examples: list[Example],
    mine: list[int],
    standin: int,
    ref_lp: torch.Tensor | None,
    ref_module,
    *,
    packed: bool,
    pad_id: int,
    device: torch.device,
    autocast,
    plans: list[list[int] | None],
    world: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """KTO's reference point over a whole optimizer step (or evaluation), every process together:
    (z₀ = max(0, mean ρ_KL) over all the step's KL rows, this process's ρ_KL, its tokens). The KL rows run first,
    without gradient, so every micro-batch of the step then uses the same z₀: 8 examples in one
    forward, 8 forwards of one and 2 processes of 4 give the same loss. (TRL averages per-process
    means of each micro-batch instead.) The completions' forwards then leave the KL rows out.
    `plans` are the step's micro-batches (indices into `mine`), already in lockstep across processes."""
    ratios, tokens = [], 0
    for plan in plans:
        rows = [mine[i] for i in plan] if plan is not None else [standin]  # None: a stand-in, not counted
        batch = collate([examples[i] for i in rows], packed=packed, pad_id=pad_id, parts="kl").to(device)
        with autocast():
            values = run(fwd, batch).float()
        if ref_lp is not None:
            ref = ref_lp[rows, 1].to(values.device)
        else:
            with autocast(), ref_module() as ref_mod:
                ref = run(ref_mod, batch).float()
        if plan is not None:
            ratios.append(values - ref)
            tokens += batch.tokens
    local = torch.cat(ratios) if ratios else torch.zeros(0, device=device)
    total = torch.stack([local.double().sum(), torch.tensor(float(len(local)), dtype=torch.float64, device=device)])
    if world > 1:
        torch.distributed.all_reduce(total)
    return kto_reference_point((total[0] / total[1]).float()), local, tokens


# ---------------------------------------------------------------- the run


def train(cfg: TrainConfig, on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train as `cfg` says; returns RUN_DIR/final. `on_step(step, row)` is called after each logged step."""
    validate(cfg)
    rank, world = _distributed()
    device = _device(cfg, rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    main = rank == 0
    log = (lambda msg: print(f"prefkit train: {msg}", file=sys.stderr)) if main else (lambda msg: None)
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: is a file; give a folder for the run (it is created if missing)")
    check_model_name(cfg.model)  # before anything is written
    if cfg.ref_model:
        check_model_name(cfg.ref_model, "--ref-model")
    if main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, no permission
            raise TrainError(f"--out {out}: cannot create the run folder ({exc.strerror or exc})") from exc
        files.clean_leftovers(out)  # a killed run's half-written checkpoint or model
    # One process has nothing to shard across: it trains the whole model as usual rather than on a
    # one-rank mesh, which would add a process group and FSDP hooks for the same memory.
    fsdp = cfg.sharding == "fsdp" and world > 1
    if fsdp and not _has_fsdp2():
        raise TrainError(
            f"--sharding fsdp needs the FSDP2 of a recent torch (tested with 2.13); this is torch "
            f"{torch.__version__}: upgrade torch, or use --sharding ddp"
        )
    if cfg.sharding == "fsdp" and world == 1:
        log("--sharding fsdp needs several processes (torchrun --nproc-per-node N); training unsharded")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # ---- model, data
    method = cfg.method_record()
    tok, model = load_model(cfg.model, method, cfg.seed, cfg.model_dtype)
    train_ex, eval_ex, eval_method = prepare_data(cfg, tok, log)
    unpaired = method.kind is Kind.UNPAIRED
    if unpaired and (warning := check_kto_weights(train_ex, cfg.desirable_weight, cfg.undesirable_weight)):
        log(warning)
    reward_head = method.kind is Kind.REWARD  # one score per sequence from a classification head
    packed = cfg.packing and not reward_head and packing_supported()
    if cfg.packing and not reward_head and not packed:
        log("this transformers cannot restrict attention within packed sequences; using padded batches")
    if cfg.lora:
        model = _add_lora(model, cfg)
    if cfg.gradient_checkpointing:
        # newer transformers renamed it (the old name warns); older releases have only the old name
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    autocast = _autocast(cfg, device)
    wrap = (lambda m: SequenceScores(m)) if reward_head else (lambda m: SequenceLogps(m, cfg.head_chunk))
    # FSDP: all-gather and compute in bf16 where autocast would anyway, the sharded fp32 weights stay fp32
    bf16 = (
        fsdp and device.type == "cuda" and _autocast_dtype(cfg, device) == "bfloat16" and cfg.model_dtype == "float32"
    )

    def place(root, inner, frozen=False):  # on the device whole, or sharded (before the optimizer exists)
        if not fsdp:
            return root.to(device)
        layers = shard(root, inner, device, bf16, frozen)
        if not frozen:
            log(f"FSDP2 over {world} processes: {layers} decoder layers sharded one by one, the rest as one unit")
        return root

    policy = place(wrap(model), model)
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    fwd = torch.compile(policy, dynamic=True) if use_compile else policy

    # ---- reference: cached log-probs (default) or a frozen model run every step
    ref_module, ref_train, ref_eval, ref_seconds = None, None, None, None
    if method.reference:
        if cfg.lora:
            ref_model = model
            ref_module = lambda: _AdapterDisabled(model, policy)  # noqa: E731
        elif cfg.ref_model is None and cfg.ref == "cached":
            ref_model = model  # the starting policy is the reference: used once, before the first step
            ref_module = lambda: nullcontext(policy)  # noqa: E731
        else:
            flag = "--ref-model" if cfg.ref_model else "--model"
            _, ref_model = load_model(cfg.ref_model or cfg.model, method, cfg.seed, cfg.model_dtype, flag)
            ref_model.eval().requires_grad_(False)  # frozen, dropout off
            frozen = place(wrap(ref_model), ref_model, frozen=True)  # sharded too: it is as big as the policy
            ref_module = lambda: nullcontext(frozen)  # noqa: E731
        if cfg.ref == "cached":
            t_ref = time.perf_counter()
            mkey = model_fingerprint(ref_model, cfg.ref_model or cfg.model, adapter_disabled=cfg.lora)
            ref_train, ref_eval = _cached_reference(
                cfg, model, mkey, ref_module, train_ex, eval_ex, packed, tok, device, autocast, log, fsdp
            )
            ref_module = ref_model = None  # not needed any more: the reference can leave memory
            ref_seconds = time.perf_counter() - t_ref
    model.train()
    reshard(policy)  # the optimizer below must get the shards

    # ---- optimiser and schedule
    steps_per_epoch = math.ceil(len(train_ex) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.resolved_lr(), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup_ratio * total)))
    start = 0
    ckpt = out / "checkpoint"
    if cfg.resume and ckpt.exists():
        start = _load_checkpoint(ckpt, model, opt, sched, fsdp)
        M.truncate(out / "metrics.jsonl", start)
        log(f"resumed from step {start}")
    elif main:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    est = M.memory_estimate(model, cfg, packed, shards=world if fsdp else 1)
    if main:
        cfg.save(out / "config.yaml")
        log(
            f"{len(train_ex)} train / {len(eval_ex)} eval examples, {total} steps; estimated peak memory ≈ {est / 2**30:.2f} GiB"
        )
    n_params = count_params(model)
    writer = M.Writer(out / "metrics.jsonl") if main else None

    kl_kw = dict(
        packed=packed,
        pad_id=tok.pad_token_id,
        device=device,
        autocast=autocast,
        world=world,
    )
    bar = _progress(total, start, main and cfg.progress)
    for step in range(start, total):
        t0 = time.perf_counter()
        idx = _step_indices(step, steps_per_epoch, len(train_ex), cfg.batch_size, cfg.seed)
        mine = idx[rank::world]
        ex = [train_ex[i] for i in mine]
        acc = M.Accumulator()
        plans = plan_micro_batches(ex, micro_batch_size=cfg.micro_batch_size, max_tokens=cfg.max_tokens)
        plans = _lockstep(plans, fsdp, device)
        z0, parts = None, "both"
        if unpaired:  # KTO: its reference point first, over the whole step
            z0, kl, kl_tokens = kto_kl_rows(fwd, train_ex, mine, idx[0], ref_train, ref_module, plans=plans, **kl_kw)
            acc.add_kl(kl)
            acc.tokens += kl_tokens
            parts = "completion"
            reshard(policy)  # a forward without backward leaves the root gathered: free it
        # FSDP reduce-scatters after every micro-batch rather than skipping the sync until the last
        # (`set_requires_gradient_sync(False)`): skipping would keep a whole unsharded gradient per
        # process, the memory sharding is there to save.
        for plan in plans:
            rows = [mine[i] for i in plan] if plan is not None else idx[:1]  # None: a stand-in that counts 0
            mex = [train_ex[i] for i in rows]
            batch = collate(mex, packed=packed, pad_id=tok.pad_token_id, parts=parts).to(device)
            rl = ref_train[rows] if ref_train is not None else None
            o, values, ref = micro_outputs(method, cfg, fwd, batch, mex, rl, ref_module, autocast, z0)
            (o.losses.sum() * (1.0 if plan is not None else 0.0) / len(idx)).backward()
            if plan is not None:
                acc.add(method, o, values, ref, len(mex), batch.tokens)
        if not fsdp:
            _all_reduce_grads(params, world)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        row = acc.row(world)
        seconds = time.perf_counter() - t0
        row.update(
            step=step + 1,
            lr=sched.get_last_lr()[0],
            tokens_per_s=row["tokens"] / seconds,
            seconds=seconds,
            grad_norm=grad_norm_value(grad_norm) if grad_norm is not None else None,
        )
        if step == start:
            row["memory/estimated_gib"] = est / 2**30
            if ref_seconds is not None:
                row["ref_pass_s"] = ref_seconds  # the one-off reference pass, so its cost is on record
        if device.type == "cuda":
            row["memory/peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        row["mfu"] = M.mfu(n_params, row["tokens_per_s"], device, ref_forward=ref_module is not None)
        if step == start + 2:
            util = f", MFU {row['mfu']:.0%}" if row["mfu"] is not None else ""
            log(f"step {step + 1}: {row['tokens_per_s']:,.0f} tokens/s{util}")
        if use_compile:  # a count that keeps growing means shapes recompile: worth knowing
            row["compile/graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        last = step + 1 == total
        if main and ((step + 1) % cfg.logging_steps == 0 or last):
            writer.write(row)
        if eval_ex and ((cfg.eval_steps and (step + 1) % cfg.eval_steps == 0) or last):
            erow = evaluate(
                cfg,
                eval_method,
                fwd,
                eval_ex,
                ref_eval,
                ref_module,
                packed,
                tok.pad_token_id,
                device,
                autocast,
                rank,
                world,
                fsdp,
            )
            reshard(policy)  # a forward without backward leaves the root gathered: free it
            if main:
                writer.write({"step": step + 1, **erow})
            row.update(erow)
        if cfg.save_steps and (step + 1) % cfg.save_steps == 0 and not last:
            _save_checkpoint(ckpt, model, opt, sched, step + 1, main, fsdp)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if on_step:
            on_step(step + 1, row)
    bar.close()

    final = out / "final"
    _save_final(model, tok, final, cfg.lora, main, fsdp)
    if main:
        shutil.rmtree(ckpt, ignore_errors=True)
        log(f"saved {final}")
    if world > 1:
        torch.distributed.barrier()
    return final


class _AdapterDisabled:
    """Context: the LoRA policy with its adapter switched off, which is the reference."""

    def __init__(self, model, module):
        self.ctx, self.module = model.disable_adapter(), module

    def __enter__(self):
        self.ctx.__enter__()
        return self.module

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def _cached_reference(cfg, model, mkey, ref_module, train_ex, eval_ex, packed, tok, device, autocast, log, fsdp):
    result = []
    for examples in (train_ex, eval_ex):
        if not examples:
            result.append(None)
            continue
        was = model.training
        model.eval()  # dropout off for the reference pass

        def make(examples=examples):
            with ref_module() as mod:
                # no gradients: batches as big as the token budget allows, longest first, so little padding
                budget = max(cfg.max_tokens or 0, REF_PASS_TOKENS)
                return compute(
                    mod,
                    examples,
                    packed=packed,
                    pad_id=tok.pad_token_id,
                    device=device,
                    max_tokens=budget,
                    autocast=autocast,
                )

        key = f"{data_fingerprint(examples)}-{mkey}"
        # sharded, every process runs the reference pass (its forwards are collectives): all or none read the file
        agree = (lambda hit: _all_ranks(hit, min, device)) if fsdp else None
        try:
            value, hit = cached(key, Path(cfg.ref_cache_dir) if cfg.ref_cache_dir else None, make, agree)
        except UnsafeFileError as exc:
            raise TrainError(f"{exc}; delete the file and the reference log-probs are computed again") from exc
        if len(value) != len(examples):
            raise TrainError(f"reference cache {key}.pt has {len(value)} rows for {len(examples)} examples; delete it")
        model.train(was)
        log(f"reference log-probs for {len(examples)} examples {'read from cache' if hit else 'computed and cached'}")
        result.append(value)
    return result


@torch.no_grad()
def evaluate(
    cfg,
    eval_method: Method,
    fwd,
    examples,
    ref_lp,
    ref_module,
    packed,
    pad_id,
    device,
    autocast,
    rank,
    world,
    fsdp=False,
) -> dict:
    mine = list(range(len(examples)))[rank::world]
    acc = M.Accumulator()
    ex = [examples[i] for i in mine]
    size = cfg.micro_batch_size or cfg.batch_size
    plans = _lockstep(plan_micro_batches(ex, micro_batch_size=size, max_tokens=cfg.max_tokens), fsdp, device)
    z0, parts = None, "both"
    if eval_method.kind is Kind.UNPAIRED:  # one reference point for the whole evaluation, as for a training step
        z0, kl, _ = kto_kl_rows(
            fwd,
            examples,
            mine,
            0,
            ref_lp,
            ref_module,
            packed=packed,
            pad_id=pad_id,
            device=device,
            autocast=autocast,
            plans=plans,
            world=world,
        )
        acc.add_kl(kl)
        parts = "completion"
    for plan in plans:
        rows = [mine[i] for i in plan] if plan is not None else [0]  # None: a stand-in, not counted
        mex = [examples[i] for i in rows]
        batch = collate(mex, packed=packed, pad_id=pad_id, parts=parts).to(device)
        rl = ref_lp[rows] if ref_lp is not None else None
        o, values, ref = micro_outputs(eval_method, cfg, fwd, batch, mex, rl, ref_module, autocast, z0)
        if plan is not None:
            acc.add(eval_method, o, values, ref, len(mex), batch.tokens)
    row = acc.row(world)
    row.pop("tokens")
    if not eval_method.reports_loss:
        row.pop("loss")  # a stand-in's loss would mislabel the run; its accuracies and rewards are what matter
    return {f"eval/{k}": v for k, v in row.items()}


def _step_indices(step: int, steps_per_epoch: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Examples of a step: a seeded permutation per epoch, so a resumed run sees the same order."""
    epoch, k = divmod(step, steps_per_epoch)
    order = list(range(n))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return order[k * batch_size : (k + 1) * batch_size]


def _has_fsdp2() -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule, fully_shard  # noqa: F401
    except ImportError:
        return False
    return hasattr(FSDPModule, "set_force_sum_reduction_for_comms")


def _all_ranks(value: int, op: Callable, device: torch.device) -> int:
    """`op` (min or max) of an int over all processes."""
    t = torch.tensor([int(value)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN if op is min else torch.distributed.ReduceOp.MAX)
    return int(t)


def _lockstep(plans: list[list[int]], fsdp: bool, device: torch.device) -> list[list[int] | None]:
    """Sharded, every forward all-gathers weights with the other processes, so all must run as many; a
    process with fewer micro-batches (an uneven split, a token budget) pads with None: a forward and
    backward on a stand-in example whose loss is multiplied by 0."""
    if not fsdp:
        return plans
    return plans + [None] * (_all_ranks(len(plans), max, device) - len(plans))


def _all_reduce_grads(params, world: int) -> None:
    if world == 1:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)  # each rank's loss is already divided by the global example count
    for p, g in zip(params, _unflatten_dense_tensors(flat, grads), strict=True):
        p.grad = g


def _save_checkpoint(path: Path, model, opt, sched, step: int, main: bool, fsdp: bool) -> None:
    """Rank 0 writes. Sharded, the whole model and optimizer state are gathered to it first (every
    process calls this), keyed by parameter name, so the checkpoint resumes on any number of processes.
    Tensors go to `state.pt` (read back with `weights_only=True`: no code runs on load), the step,
    schedule and sharding to `state.json`."""
    if fsdp:
        model_sd, optim_sd = full_training_state(model, opt)
    elif main:
        model_sd, optim_sd = model.state_dict(), opt.state_dict()
    if not main:
        return
    # A crash while saving leaves the previous checkpoint (the new one replaces it only once whole).
    with files.atomic_dir(path) as tmp:
        torch.save({"model": model_sd, "optimizer": optim_sd}, tmp / "state.pt")
        meta = {"step": step, "sharding": "fsdp" if fsdp else "ddp", "scheduler": sched.state_dict()}
        (tmp / "state.json").write_text(json.dumps(meta))


def _read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(tensors, meta) of a checkpoint folder; a file holding anything but tensors and plain containers
    is refused before any of it runs (a pickle can carry code: a checkpoint from someone else must not)."""
    try:
        meta = json.loads((path / "state.json").read_text())
    except FileNotFoundError as exc:
        raise TrainError(
            f"{path}: no state.json (not a checkpoint of this prefkit); remove it or resume without --resume"
        ) from exc
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path / 'state.json'}: unreadable ({exc}); remove the checkpoint to start over") from exc
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("step"), int)
        or not isinstance(meta.get("scheduler"), dict)
    ):
        raise TrainError(f"{path / 'state.json'}: needs an integer `step` and a `scheduler` mapping")
    try:
        tensors = load_tensors(path / "state.pt", mmap=True)
    except UnsafeFileError as exc:
        raise TrainError(f"{exc}; prefkit never unpickles a checkpoint: remove it to start over") from exc
    if not isinstance(tensors, dict) or not {"model", "optimizer"} <= set(tensors):
        raise TrainError(f"{path / 'state.pt'}: expected the `model` and `optimizer` states")
    return tensors, meta


def _load_checkpoint(path: Path, model, opt, sched, fsdp: bool) -> int:
    state, meta = _read_checkpoint(path)
    written = meta.get("sharding", "ddp")
    if written != ("fsdp" if fsdp else "ddp"):  # the optimizer state is keyed differently
        here = "--sharding fsdp under torchrun" if fsdp else "--sharding ddp or one process"
        raise TrainError(f"{path} was written by a --sharding {written} run; resume it with that, not {here}")
    if fsdp:
        load_full_training_state(model, opt, state["model"], state["optimizer"])  # each process keeps its shard
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(meta["scheduler"])
    return meta["step"]


def _save_final(model, tok, final: Path, lora: bool, main: bool, fsdp: bool) -> None:
    """Rank 0 writes a plain Hugging Face model; sharded, every process merges its LoRA shards and
    takes part in gathering the whole weights to rank 0 first."""
    if not (main or fsdp):
        return
    if lora:
        model = model.merge_and_unload()  # a plain HF model that from_pretrained loads
    state = full_state_dict(model) if fsdp else None
    if main:
        with files.atomic_dir(final) as tmp:  # a killed save leaves no half model under final/
            model.save_pretrained(tmp, state_dict=state)
            tok.save_pretrained(tmp)


def _progress(total: int, start: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not show, desc="train", unit="step", file=sys.stderr)


def config_from_run(run_dir: str | Path) -> TrainConfig:
    import yaml
    from prefkit.train.config import from_mapping

    return from_mapping(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()), source=str(run_dir))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (`prefkit.train.metrics.read`)."""
    return M.read(Path(run_dir) / "metrics.jsonl")


warnings.filterwarnings("ignore", message=".*torch.utils.checkpoint.*use_reentrant.*")
