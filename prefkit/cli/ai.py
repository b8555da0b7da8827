"""AI commands: `generate`, `judge`, `critique`, `revise`, `judge-eval`. Each reads its flags, calls
one library function and prints what happened. The API key is read from the environment variable
named by --api-key-env (default OPENAI_API_KEY) and never written anywhere."""

from __future__ import annotations

import argparse
import sys

from prefkit.annotate.ai.engine import AIError, EngineConfig
from prefkit.annotate.ai.jobs import Sampling
from prefkit.annotate.store import Store, StoreError
from prefkit.annotate.validate import ContractError
from prefkit.cli import add_command, add_store_option, run, store_path

ERRORS: tuple[type[BaseException], ...] = (AIError, StoreError, ContractError)


def _server_options(p: argparse.ArgumentParser, *, temperature: float, max_tokens: int) -> None:
    add_store_option(p)
    g = p.add_argument_group("server")
    g.add_argument("--model", required=True, help="the model name the server knows")
    g.add_argument("--base-url", help="an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: OpenAI)")
    g.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the API key (default OPENAI_API_KEY; never stored)",
    )
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default 16)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    g.add_argument("--max-retries", type=int, default=6, help="retries on 5xx, 429, timeouts (default 6)")
    g.add_argument(
        "--max-answer-mib",
        type=float,
        default=16.0,
        metavar="MIB",
        help="largest answer taken, before and after decompression; larger ones are error rows (default 16)",
    )
    g.add_argument("--price-in", type=float, default=0.0, help="dollars per million prompt tokens (for the ledger)")
    g.add_argument("--price-out", type=float, default=0.0, help="dollars per million completion tokens")
    g.add_argument("--max-cost", type=float, help="stop sending requests once this many dollars are spent")
    g.add_argument("--shard", metavar="K/N", help="run share K of N (several machines, one store)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    b = p.add_argument_group("batch (the provider's Batch API: about half the price, answers within its window)")
    b.add_argument("--batch", action="store_true", help="send the requests as batches, not live")
    b.add_argument("--no-wait", action="store_true", help="return once the batches are created (then: prefkit batches)")
    b.add_argument("--retry-live", action="store_true", help="send requests a batch did not answer live")
    b.add_argument(
        "--batch-discount",
        type=float,
        default=0.5,
        metavar="SHARE",
        help="batch prices as a share of --price-in/--price-out (default 0.5)",
    )
    b.add_argument("--batch-max-lines", type=int, default=50_000, metavar="N", help="requests per input file")
    b.add_argument("--batch-max-mib", type=float, default=200.0, metavar="MIB", help="MiB per input file")
    b.add_argument("--batch-poll", type=float, default=5.0, metavar="S", help="first wait between status checks")
    s = p.add_argument_group("sampling (all sent explicitly)")
    s.add_argument("--temperature", type=float, default=temperature)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--max-tokens", type=int, default=max_tokens)
    s.add_argument("--seed", type=int, default=0, help="sample k is sent with seed + k")


def _config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_answer_mib=args.max_answer_mib,
        price_in=args.price_in,
        price_out=args.price_out,
        max_cost=args.max_cost,
        progress=not args.no_progress,
        batch_discount=args.batch_discount,
    )


def _batch(args: argparse.Namespace):
    """BatchOptions from the flags (None without --batch); the arguments are kept, passwords masked, for
    `prefkit batches resume`."""
    from prefkit.annotate.ai.batch import BatchOptions
    from prefkit.annotate.ai.transport import redact_url

    if not args.batch:
        if args.no_wait or args.retry_live:
            raise AIError("--no-wait and --retry-live go with --batch")
        return None
    if not 0 <= args.batch_discount <= 1:
        raise AIError(f"--batch-discount {args.batch_discount:g}: choose a share between 0 and 1")
    argv = [redact_url(a) for a in getattr(args, "argv", []) if a != "--no-wait"]
    return BatchOptions(
        wait=not args.no_wait,
        retry_live=args.retry_live,
        max_lines=args.batch_max_lines,
        max_bytes=int(args.batch_max_mib * 2**20),
        poll=args.batch_poll,
        command=args.command,
        argv=argv,
    )


def _submitted(args: argparse.Namespace, summary) -> bool:
    """What --no-wait says once the batches are created."""
    if summary.stopped != "submitted":
        return False
    where = f" --store {args.store}" if args.store else ""
    print(
        f"submitted: {summary.batched} requests in {summary.batches} new batches; "
        f"`prefkit batches{where}` shows them, `prefkit batches resume{where}` writes the rows"
    )
    return True


def _sampling(args: argparse.Namespace) -> Sampling:
    return Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed)


def _summary(summary, extra: str = "") -> str:
    cost = f", ${summary.cost:.4f}" if summary.cost else ""
    batched = f"{summary.batched} requests in batches ({summary.batches} new), " if summary.batched else ""
    return (
        f"{batched}{summary.requests} requests sent, {summary.cached} answers from the cache, "
        f"{summary.prompt_tokens}+{summary.completion_tokens} tokens{cost}, {summary.seconds:.1f} s{extra}"
    )


def _budget(summary) -> int:
    if summary.stopped == "budget":
        print(
            "stopped: --max-cost reached; answers paid for so far are cached, re-run with a higher --max-cost "
            "to continue",
            file=sys.stderr,
        )
        return 1
    return 0


def _dry_run(title: str, planned: str, skipped: str, summary) -> int:
    """The one line a dry run prints: what is planned, what is done, what would be sent and its price."""
    files = f" in {summary.batches} batch input files (at batch prices)" if summary.batches else ""
    print(
        f"{title}: {planned}, {skipped}, {summary.requests} not in the cache would be sent{files}, "
        f"estimated ${summary.cost:.4f}"
    )
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge the store's responses with an LLM: pairwise (both orders), rubric scores, or rankings.

    pairwise: every pair of responses to a prompt (or --pairs judged: the pairs people judged),
    shown in both orders; each order is one judgement row, so position bias stays visible. The
    verdict comes from the first token's logprobs where the server gives them (confidence =
    P(first better)), else JSON-schema output, else text, else one repair request, else an
    error row with the reason. rubric: each response scored per aspect (--template ultrafeedback,
    self_rewarding or a YAML file), --samples k averaged. ranking: pairwise, then one
    Bradley–Terry ranking per prompt. listwise: all responses ranked at once, in --samples k
    shuffled orders (one ranking row each). Re-running sends only what is missing.

    Example:
      prefkit judge --model gpt-4o-mini --max-cost 5
      prefkit judge --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct --method rubric --template self_rewarding
      prefkit judge --model gpt-4o-mini --shard 2/4 --dry-run"""

    from prefkit.annotate.ai.judge import JudgeOptions, judge

    options = JudgeOptions(
        method=args.method,
        template=args.template or {"rubric": "ultrafeedback", "listwise": "listwise"}.get(args.method, "pairwise"),
        pairs=args.pairs,
        both_orders=not args.one_order,
        samples=args.samples,
        mode=args.mode,
        sampling=_sampling(args),
        shard=args.shard,
        limit=args.limit,
        dry_run=args.dry_run,
        write_every=args.write_every,
        batch=_batch(args),
    )
    report = judge(Store(store_path(args)), _config(args), options)
    if _submitted(args, report.summary):
        return 0
    if args.dry_run:
        return _dry_run(
            f"dry run ({report.mode})",
            f"{report.planned} requests planned",
            f"{report.skipped} already judged",
            report.summary,
        )
    partial = f", {report.failed_samples} failed samples left out of averaged rows" if report.failed_samples else ""
    print(
        f"judged ({report.mode}): {report.written} rows written ({report.errors} errors{partial}), "
        f"{report.skipped} already in the store; " + _summary(report.summary)
    )
    if report.rankings:
        print(f"{report.rankings} Bradley–Terry rankings written")
    print(f"run log: {report.log}")
    return _budget(report.summary)


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate N candidate responses per prompt with any OpenAI-compatible server.

    Each sample is its own request (seed = --seed + k), cached the moment it arrives, so an
    interrupted run resumes without paying twice. Sampling parameters, token usage and the
    server fingerprint are stored with each response (responses.generation).

    Example:
      prefkit generate --model gpt-4o-mini -n 4 --temperature 0.8
      prefkit generate --base-url http://localhost:8000/v1 --model meta-llama/Llama-3.1-8B-Instruct -n 2"""

    from prefkit.annotate.ai.generate import GenerateOptions, generate

    options = GenerateOptions(
        n=args.n,
        sampling=_sampling(args),
        system=args.system,
        shard=args.shard,
        limit=args.limit,
        dry_run=args.dry_run,
        batch=_batch(args),
    )
    report = generate(Store(store_path(args)), _config(args), options)
    if _submitted(args, report.summary):
        return 0
    if args.dry_run:
        return _dry_run(
            "dry run", f"{report.planned} samples planned", f"{report.skipped} already generated", report.summary
        )
    print(f"generated {report.written} responses, {report.skipped} already there; " + _summary(report.summary))
    for failure in report.failures[:10]:
        print(f"failed: prompt {failure['prompt_id']} sample {failure['sample']}: {failure['error']}", file=sys.stderr)
    if report.failures:
        print(f"{len(report.failures)} samples failed (listed in {report.log}); re-run to retry them", file=sys.stderr)
    return _budget(report.summary) or (1 if report.failures else 0)


def _revise_options(args: argparse.Namespace, **extra):
    from prefkit.annotate.ai.revise import ReviseOptions

    return ReviseOptions(
        losers=args.losers,
        mode=args.mode,
        sampling=_sampling(args),
        shard=args.shard,
        limit=args.limit,
        batch=_batch(args),
        **extra,
    )


def _revise_report(args: argparse.Namespace, report, what: str) -> int:
    if _submitted(args, report.summary):
        return 0
    print(
        f"{what}: {report.revisions} revisions written, {report.errors} rejected or failed (error rows), "
        f"{report.skipped} responses already done; " + _summary(report.summary)
    )
    print(f"run log: {report.log}")
    return _budget(report.summary)


def cmd_critique(args: argparse.Namespace) -> int:
    """Critique and revise responses against a constitution (the Constitutional-AI loop).

    For each response and round: sample a principle, ask for a critique under it, ask for a
    revision in the light of the critique; the next round revises the revision. Each revision
    is a new response (origin critique_revision, parent_id set) plus a `revision` judgement
    carrying the principle and the critique. The bundled example is data/constitution.yaml.

    Example:
      prefkit critique --model gpt-4o-mini --constitution data/constitution.yaml --rounds 2
      prefkit critique --base-url http://localhost:11434/v1 --model llama3.1 --losers"""

    from prefkit.annotate.ai.revise import critique

    options = _revise_options(args, constitution=args.constitution, rounds=args.rounds)
    return _revise_report(args, critique(Store(store_path(args)), _config(args), options), "critique")


def cmd_revise(args: argparse.Namespace) -> int:
    """Write minimal revisions that make responses better (CLAIR), with edit metrics.

    The model returns the revision in a structured field; prefkit records the word-level edit
    similarity (1 − Levenshtein distance / length) and Jaccard overlap, and rejects empty,
    identical or not-minimal revisions (--min-similarity) as error rows. --verify keeps a
    revision only if the pairwise judge prefers it to the original in both orders. Accepted
    revisions become responses (origin clair_revision) with a `revision` judgement
    [original, revised] = [0, 1]: a minimally contrastive preference pair.

    Example:
      prefkit revise --clair --losers --model gpt-4o-mini --verify
      prefkit revise --clair --model gpt-4o-mini --min-similarity 0.6 --limit 100"""

    from prefkit.annotate.ai.revise import clair

    if not args.clair:
        raise AIError("choose a revision method: --clair (the only one so far)")
    options = _revise_options(args, template=args.template, min_similarity=args.min_similarity, verify=args.verify)
    return _revise_report(args, clair(Store(store_path(args)), _config(args), options), "revise --clair")


def _revise_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--losers", action="store_true", help="only responses that lost a pairwise judgement")
    p.add_argument(
        "--mode",
        choices=["auto", "json", "text"],
        default="auto",
        help="structured output (json) or tagged text (auto: detect)",
    )
    p.add_argument("--limit", type=int, help="at most this many responses")


def cmd_judge_eval(args: argparse.Namespace) -> int:
    """Measure an AI judge against the people who judged the same pairs.

    Reports agreement with the human majority (accuracy and Cohen's kappa, with 95% intervals, and
    the confusion matrix), position consistency (the same verdict in both orders), which position
    wins when it is not, length bias (how often the longer response wins, for the judge and for
    people), and calibration: the expected calibration error of the judge's logprob confidence
    against people's choices (10 equal-width bins, weighted by count). --json adds the reliability
    bins and the disagreeing pairs. Judge the human-labelled pairs first with
    `prefkit judge --pairs judged`.

    Example:
      prefkit import ../shared/data/pandalm/testset-v1.json
      prefkit judge --pairs judged --model gpt-4o-mini
      prefkit judge-eval --judge ai:gpt-4o-mini:pairwise"""

    import json

    from prefkit.annotate.ai.evaluate import evaluate_judges, format_eval

    results = evaluate_judges(Store(store_path(args), create=False), args.judge, tuple(args.reference.split(",")))
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print("\n\n".join(format_eval(r) for r in results))
    return 0


def cmd_batches(args: argparse.Namespace) -> int:
    """List, resume or cancel the store's batches (AI jobs run with --batch).

    list (the default): each batch with its status and request counts as last seen (--refresh:
    as the provider says now), and the command that made it. resume: run each unfinished batch job again: it waits for its batches,
    puts their answers into the request cache and writes the rows, and creates no second batch
    for requests that have one. cancel: ask the provider to cancel the unfinished batches (or
    those named by --id); a later resume writes what they answered, and error rows for the rest.

    Example:
      prefkit judge --model gpt-4o-mini --batch --no-wait
      prefkit batches --refresh
      prefkit batches resume
      prefkit batches cancel --id batch_abc123"""
    import json

    from prefkit.annotate.ai import batch

    store = Store(store_path(args))
    caches = batch.cache_files(store)
    try:
        found = [(cache, record) for cache in caches for record in batch.records(cache)]
        if args.action == "list" and args.refresh:
            for cache, r in _unfinished(args, found):
                batch.refresh(cache, _job_config(args, r["argv"]), [r["batch_id"]])
            found = [(cache, record) for cache in caches for record in batch.records(cache)]
        if args.action == "list":
            if not found:
                print("no batches in this store")
            for _, r in found:
                counts = json.loads(r["counts"] or "{}")
                done = f"{counts.get('completed', 0)} done, {counts.get('failed', 0)} failed of {r['requests']}"
                state = r["status"] + (", collected" if r["collected_at"] else "")
                print(f"{r['batch_id'] or '(not created yet)'}  {state}  {done}  prefkit {' '.join(r['argv'])}")
            return 0
        if args.action == "cancel":
            return _cancel(args, found)
        jobs = [(cache, argv) for cache in caches for _, argv in batch.open_jobs(cache)]
    finally:
        for cache in caches:
            cache.close()
    if not jobs:
        print("nothing to resume: every batch job of this store has finished")
        return 0
    status = 0
    for _, argv in jobs:
        again = [a for a in argv if a != "--no-wait"] + ["--store", store.url]  # an s3:// store has no root
        if args.base_url:
            again += ["--base-url", args.base_url]
        if args.no_progress:
            again.append("--no-progress")
        print(f"resuming: prefkit {' '.join(argv)}")
        parser = argparse.ArgumentParser(prog="prefkit")
        register(parser.add_subparsers(title="commands", metavar="COMMAND"))
        job_args = parser.parse_args(again)
        job_args.argv = argv
        status = max(status, int(job_args.func(job_args) or 0))
    return status


def _unfinished(args: argparse.Namespace, found) -> list:
    """(cache, record) of the batches still running at the provider (those named by --id, if any)."""
    from prefkit.annotate.ai import batch

    unknown = set(args.id or []) - {r["batch_id"] for _, r in found}
    if unknown:
        raise AIError(f"no batch {sorted(unknown)[0]} in this store (`prefkit batches` lists them)")
    return [
        (cache, r)
        for cache, r in found
        if r["batch_id"]
        and r["collected_at"] is None
        and r["status"] not in batch.TERMINAL
        and (not args.id or r["batch_id"] in args.id)
    ]


def _job_config(args: argparse.Namespace, argv: list[str]) -> EngineConfig:
    """The server settings a batch job was started with (--base-url given here wins)."""
    parser = argparse.ArgumentParser(prog="prefkit")
    register(parser.add_subparsers(title="commands", metavar="COMMAND"))
    config = _config(parser.parse_args([*argv, "--store", store_path(args)]))
    if args.base_url:
        config.base_url = args.base_url
    return config


def _cancel(args: argparse.Namespace, found) -> int:
    from prefkit.annotate.ai import batch

    chosen = _unfinished(args, found)
    if not chosen:
        print("no unfinished batch to cancel")
        return 0
    for cache, r in chosen:
        for answer in batch.cancel(cache, _job_config(args, r["argv"]), [r["batch_id"]]):
            print(f"{answer['id']}: {answer['status']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "generate", cmd_generate)
    _server_options(p, temperature=0.8, max_tokens=512)
    p.add_argument("-n", type=int, default=2, help="samples per prompt (default 2)")
    p.add_argument("--system", help="a system message put before every prompt")
    p.add_argument("--limit", type=int, help="at most this many prompts")
    p.add_argument("--dry-run", action="store_true", help="count requests and estimate cost; send nothing")

    p = add_command(subparsers, "judge", cmd_judge)
    _server_options(p, temperature=0.0, max_tokens=256)
    p.add_argument("--method", choices=["pairwise", "rubric", "ranking", "listwise"], default="pairwise")
    p.add_argument("--template", help="judge template or rubric: a bundled name or a YAML path")
    p.add_argument(
        "--pairs", choices=["all", "judged"], default="all", help="which pairs to compare (pairwise, ranking)"
    )
    p.add_argument("--one-order", action="store_true", help="show each pair in one order only (not recommended)")
    p.add_argument("--samples", type=int, default=1, help="k samples per request (use --temperature > 0)")
    p.add_argument(
        "--mode",
        choices=["auto", "logprobs", "json", "text"],
        default="auto",
        help="how to read verdicts (auto: detect what the server supports)",
    )
    p.add_argument("--limit", type=int, help="at most this many comparisons (pairwise) or responses (rubric)")
    p.add_argument("--dry-run", action="store_true", help="count requests and estimate cost; send nothing")
    p.add_argument("--write-every", type=int, default=256, help="rows per store part (default 256)")

    p = add_command(subparsers, "critique", cmd_critique)
    _server_options(p, temperature=0.7, max_tokens=1024)
    p.add_argument("--constitution", default="constitution", help="a YAML constitution (default: the bundled example)")
    p.add_argument("--rounds", type=int, default=1, help="critique → revision rounds, 1 to 4 (default 1)")
    _revise_flags(p)

    p = add_command(subparsers, "revise", cmd_revise)
    _server_options(p, temperature=0.0, max_tokens=1024)
    p.add_argument("--clair", action="store_true", help="minimal revisions (CLAIR)")
    p.add_argument("--template", default="clair", help="reviser template: bundled name or YAML path")
    p.add_argument(
        "--min-similarity",
        type=float,
        default=0.5,
        help="reject revisions whose word-level similarity to the original is lower (default 0.5)",
    )
    p.add_argument("--verify", action="store_true", help="keep only revisions a both-orders judge prefers")
    _revise_flags(p)

    p = add_command(subparsers, "batches", cmd_batches)
    add_store_option(p)
    p.add_argument("action", nargs="?", choices=["list", "resume", "cancel"], default="list")
    p.add_argument("--id", action="append", metavar="BATCH_ID", help="cancel, --refresh: only this batch (repeatable)")
    p.add_argument("--refresh", action="store_true", help="list: ask the provider for the status and counts first")
    p.add_argument("--base-url", help="resume, cancel: the server, if it differs from the recorded one (a password)")
    p.add_argument("--no-progress", action="store_true", help="resume: no progress bars")

    p = add_command(subparsers, "judge-eval", cmd_judge_eval)
    add_store_option(p)
    p.add_argument("--judge", help="the AI annotator to measure (default: every AI pairwise judge in the store)")
    p.add_argument(
        "--reference",
        default="human,import,adjudicator",
        help="annotator types that count as people (default human,import,adjudicator)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def main(argv: list[str] | None = None) -> int:
    """`python -m prefkit.cli.ai judge …`: the same commands without loading every other stage
    (some import torch at start-up), for jobs started many times, such as by tests."""
    parser = argparse.ArgumentParser(prog="prefkit")
    register(parser.add_subparsers(title="commands", metavar="COMMAND"))
    return run(parser, ERRORS, argv)


if __name__ == "__main__":
    sys.exit(main())
