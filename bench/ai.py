"""Benchmark: prefkit's judge job against what a user would otherwise write, on one loopback server.

The server (tests/support/openai_server.py, its own process so its CPU is not counted as the client's)
answers every request after 200 ms. At 64 requests in flight the best possible throughput is
64 / 0.2 s = 320 requests/s. Measured in one run, alternating, several repeats, medians:

- prefkit: `prefkit.annotate.ai.judge.judge` on a fresh store copy, 2,000 pairwise requests (1,000 comparisons in
  both orders) at --concurrency 64: prompts rendered, each answer cached in SQLite as it arrives, verdicts
  parsed, rows written to Parquet;
- thread pool: the same 2,000 request bodies sent with the synchronous `openai.OpenAI` client from a
  64-thread `concurrent.futures.ThreadPoolExecutor` (no cache, no parsing, no store);
- sequential: a plain `for` loop over the synchronous client. Only the first 50 requests are sent
  (2,000 would take about 400 s); its rate is extrapolated, and the table says so.

Client CPU per request is this process's CPU time (user + system) over the requests sent.

The batch rows (`--section batch`): 10,000 pairwise judge requests (5,000 comparisons in both orders)
through `judge(..., batch=BatchOptions())` — request lines built, uploaded with `files.create`, one
batch created and polled, its output downloaded, every answer into the SQLite cache, verdicts parsed,
rows written — beside the same 10,000 requests live (`--concurrency 64`, 200 ms per answer). The
loopback server answers a batch as soon as it is created (`--batch-delay 0`: the time a provider takes
is not the client's), in its own process; the batch's wall time includes its answering all the lines.

    .venv/bin/python bench/ai.py            # about 90 s on 2 cores
    .venv/bin/python bench/ai.py --repeats 1 --requests 1000
    .venv/bin/python bench/ai.py --section batch   # about 60 s
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prefkit.annotate.ai.batch import BatchOptions  # noqa: E402
from prefkit.annotate.ai.engine import EngineConfig  # noqa: E402
from prefkit.annotate.ai.judge import JudgeOptions, judge, pairwise_tasks  # noqa: E402
from prefkit.annotate.ai.templates import load  # noqa: E402
from prefkit.annotate.contract import Prompt, Response  # noqa: E402
from prefkit.annotate.store import Store  # noqa: E402

LATENCY = 0.2
CONCURRENCY = 64
SEQUENTIAL = 50


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_server", "--latency", str(LATENCY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().split()
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def make_store(folder: Path, requests: int) -> Store:
    """`requests / 2` comparisons: prompts with 5 responses each (10 pairs, 20 requests per prompt)."""
    store = Store(folder)
    prompts = [
        Prompt(messages=[{"role": "user", "content": f"Explain idea {i} in two sentences."}], source="bench")
        for i in range(max(1, requests // 20))
    ]
    store.append("prompts", prompts)
    store.append(
        "responses",
        [
            Response(prompt_id=p.prompt_id, content=f"Response {k} to idea {i}: " + "words " * (20 + 7 * k))
            for i, p in enumerate(prompts)
            for k in range(5)
        ],
    )
    return store


def run_prefkit(
    template_store: Path, base_url: str, limit: int, batch: BatchOptions | None = None
) -> tuple[float, float, int]:
    work = Path(tempfile.mkdtemp(prefix="prefkit-bench-"))
    shutil.copytree(template_store, work / "store")
    config = EngineConfig(model="bench", base_url=base_url, concurrency=CONCURRENCY, timeout=30, progress=False)
    cpu, start = time.process_time(), time.perf_counter()
    report = judge(Store(work / "store"), config, JudgeOptions(mode="text", limit=limit, batch=batch))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(work)
    assert report.errors == 0 and report.written == 2 * limit, report
    return wall, cpu, report.summary.batched or report.summary.requests


def batch_section(requests: int, repeats: int) -> None:
    """The batch rows: live and batch over the same `requests`, alternating, medians."""
    proc, base_url = start_server()
    folder = Path(tempfile.mkdtemp(prefix="prefkit-bench-batch-"))
    results: dict[str, list[tuple[float, float, int]]] = {"live": [], "batch": []}
    try:
        make_store(folder / "store", requests)
        for r in range(repeats):
            for name in ["batch", "live"] if r % 2 == 0 else ["live", "batch"]:
                batch = BatchOptions(poll=0.05, max_poll=0.5) if name == "batch" else None
                results[name].append(run_prefkit(folder / "store", base_url, requests // 2, batch))
                wall, cpu, n = results[name][-1]
                print(
                    f"  round {r + 1} {name:<6} {n} requests in {wall:6.2f} s, client CPU {cpu:6.2f} s", file=sys.stderr
                )
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\nai judge, batch vs live: {requests} requests, medians of {repeats} alternating rounds; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("| mode | wall s | client CPU s | client CPU ms/request |")
    print("| --- | ---: | ---: | ---: |")
    labels = {
        "batch": "prefkit judge --batch (build, upload, poll, download, cache, parse, Parquet)",
        "live": f"prefkit judge, live (--concurrency {CONCURRENCY}, {LATENCY * 1000:.0f} ms per answer)",
    }
    for name in ("batch", "live"):
        wall = statistics.median(w for w, _, _ in results[name])
        cpu = statistics.median(c for _, c, _ in results[name])
        print(f"| {labels[name]} | {wall:.1f} | {cpu:.1f} | {1000 * cpu / requests:.2f} |")


def bodies(store: Store, limit: int) -> list[dict]:
    config = EngineConfig(model="bench")
    return [t.body for t in pairwise_tasks(store, config, load("pairwise", "judge"), JudgeOptions(limit=limit), "text")]


def run_threads(base_url: str, requests: list[dict]) -> tuple[float, float, int]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30)
    cpu, start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda b: client.chat.completions.create(**b), requests))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    client.close()
    assert all(a.choices[0].message.content for a in answers)
    return wall, cpu, len(requests)


def run_sequential(base_url: str, requests: list[dict]) -> tuple[float, float, int]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30)
    cpu, start = time.process_time(), time.perf_counter()
    for b in requests[:SEQUENTIAL]:
        client.chat.completions.create(**b)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    client.close()
    return wall, cpu, SEQUENTIAL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--section", choices=["all", "live", "batch"], default="all")
    parser.add_argument("--batch-requests", type=int, default=10_000)
    parser.add_argument("--batch-repeats", type=int, default=2)
    args = parser.parse_args()
    if args.section in ("all", "live"):
        live_section(args)
    if args.section in ("all", "batch"):
        batch_section(args.batch_requests, args.batch_repeats)


def live_section(args: argparse.Namespace) -> None:
    limit = args.requests // 2
    proc, base_url = start_server()
    folder = Path(tempfile.mkdtemp(prefix="prefkit-bench-template-"))
    try:
        store = make_store(folder / "store", args.requests)
        requests = bodies(store, limit)
        assert len(requests) == args.requests
        results: dict[str, list[tuple[float, float, int]]] = {"prefkit": [], "threads": [], "sequential": []}
        for r in range(args.repeats):
            # Alternate the order each round so drift on a shared machine hits every contender alike.
            order = ["prefkit", "threads", "sequential"] if r % 2 == 0 else ["sequential", "threads", "prefkit"]
            for name in order:
                if name == "prefkit":
                    results[name].append(run_prefkit(folder / "store", base_url, limit))
                elif name == "threads":
                    results[name].append(run_threads(base_url, requests))
                else:
                    results[name].append(run_sequential(base_url, requests))
                wall, cpu, n = results[name][-1]
                print(f"  round {r + 1} {name:<10} {n} requests in {wall:6.2f} s  ({n / wall:6.1f}/s)", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)

    ideal = CONCURRENCY / LATENCY
    rate = {k: statistics.median(n / w for w, _, n in v) for k, v in results.items()}
    cpu_ms = {k: statistics.median(1000 * c / n for _, c, n in v) for k, v in results.items()}
    print(
        f"\nai judge throughput: {args.requests} requests, server latency {LATENCY * 1000:.0f} ms, "
        f"concurrency {CONCURRENCY}, ideal {ideal:.0f} req/s; medians of {args.repeats} alternating rounds; "
        f"{os.cpu_count()} CPUs"
    )
    print("| client | requests/s | of ideal | client CPU ms/request | prefkit is × faster |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {
        "prefkit": "prefkit judge (cache, parse, Parquet)",
        "threads": "openai.OpenAI, 64 threads",
        "sequential": f"openai.OpenAI, sequential ({SEQUENTIAL} sent, extrapolated)",
    }
    for key in ("prefkit", "threads", "sequential"):
        speedup = rate["prefkit"] / rate[key]
        print(
            f"| {labels[key]} | {rate[key]:.1f} | {100 * rate[key] / ideal:.0f}% | {cpu_ms[key]:.2f} | {speedup:.2f} |"
        )
    print(
        f"\nsequential time for all {args.requests} requests (extrapolated): {args.requests / rate['sequential']:.0f} s; "
        f"prefkit: {args.requests / rate['prefkit']:.1f} s"
    )


if __name__ == "__main__":
    main()
