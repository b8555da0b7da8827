"""The task queue under a team: server-side time from "submit" to "next item ready to show", p50 and
p95, per queue and store, at 1, 20 and 100 concurrent annotators (each its own process); then how
many annotators one app process (one Board, one thread per session, as Streamlit runs them) serves
before its p95 passes 300 ms.

Each annotator answers, waits a think time drawn uniformly from [0, 2 × mean] (mean 5 s: a person
labels a pairwise item in 10–60 s, so this is a few times busier than a real team), and answers the
next item; the time measured is `Board.submit` + `Board.show` + the texts, as in bench/app.py.
With one annotator the mean think time is shortened so a run still has enough samples (an unloaded
latency either way). The backends alternate within every repeat, in turn forwards and backwards;
the p50/p95 pool every repeat's samples.

PostgreSQL runs durable (fsync and synchronous commit on, as in production), on this machine (the
loopback network is not a LAN's). The S3 side runs when tests/support/s3.py and a writable S3 store
are there, against SeaweedFS on this machine.

    python bench/app.py --team                      # about 8 minutes
    python bench/app.py --team --seconds 8 --repeats 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.project import Project, Task
from prefkit.annotate.store import Store

from bench.app import build_store
from tests.support.postgres import PostgresServer

K = 4
THINK = 5.0  # mean seconds between a person's answers
CTX = mp.get_context("fork")  # children share the parent's index and texts, copied on write


def _annotate(board: Board, login: str, think: float, ready, go, seconds: float) -> list[float]:
    rng = random.Random(login)
    # the first answer opens the store's and the queue's connections and catches up: not timed,
    # and the clock starts only when every annotator has given it
    shown = board.show(login, "pairwise")
    board.submit(shown, submit.pairwise(board.project, shown, "A"))
    shown = board.show(login, "pairwise")
    ready.put(login)
    go.wait()
    start = time.time()
    time.sleep(rng.uniform(0, think))  # spread the first answers
    out = []
    while time.time() < start + seconds and shown is not None:
        t = time.perf_counter()
        board.submit(shown, submit.pairwise(board.project, shown, "A"))
        shown = board.show(login, "pairwise")
        if shown is not None:
            board.content.messages(shown.item.prompt_id)
            [board.content.text(r) for r in shown.order]
        out.append(time.perf_counter() - t)
        time.sleep(rng.uniform(0, 2 * think))
    return out


def _process(base, queue, login, think, ready, go, seconds, out) -> None:
    try:
        out.put(_annotate(base.for_child(queue), login, think, ready, go, seconds))
    except BaseException as exc:
        out.put(repr(exc))


def _threads(base, queue, logins, think, ready, go, seconds, out) -> None:
    """One app process serving every login from one board, a thread per session."""
    import threading

    try:
        board, got = base.for_child(queue), []
        threads = [
            threading.Thread(target=lambda login=x: got.extend(_annotate(board, login, think, ready, go, seconds)))
            for x in logins
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.put(got)
    except BaseException as exc:
        out.put(repr(exc))


def run(base: Board, queue: str | None, n: int, seconds: float, tag: str, *, threads: bool = False) -> list[float]:
    think = THINK if n >= 20 else min(THINK, n * seconds / 60)
    out, ready, go = CTX.Queue(), CTX.Queue(), CTX.Event()
    logins = [f"{tag}-{i:03d}" for i in range(n)]
    if threads:
        procs = [CTX.Process(target=_threads, args=(base, queue, logins, think, ready, go, seconds, out))]
    else:
        procs = [CTX.Process(target=_process, args=(base, queue, x, think, ready, go, seconds, out)) for x in logins]
    for p in procs:
        p.start()
    for _ in logins:
        ready.get(timeout=600)
    go.set()
    got = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    errors = [g for g in got if isinstance(g, str)]
    if errors:
        raise RuntimeError(f"{len(errors)} annotator(s) failed: {errors[0]}")
    return [x for g in got for x in g]


def _ms(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q) * 1000) if xs else float("nan")


def s3_store(tmp: Path, local: Store):
    """A copy of the store on a local SeaweedFS bucket, when an S3 store can be written; else None."""
    try:
        from tests.support.s3 import S3Server
    except ImportError:
        return None, None
    server = S3Server.start(tmp / "s3")
    try:
        os.environ.update(server.env())
        bucket = server.bucket("bench")
        remote = Store(f"s3://{bucket}/store")
        for table in ("prompts", "responses", "judgements"):
            remote.append(table, local.read(table))
        return server, remote
    except Exception as exc:  # no writable S3 store in this checkout yet
        print(f"(no Postgres + S3 side: {type(exc).__name__}: {str(exc)[:200]})")
        server.stop()
        return None, None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5000, help="pairwise items in the store (k = 4)")
    ap.add_argument("--seconds", type=float, default=15, help="measured seconds per run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--annotators", default="1,20,100")
    ap.add_argument("--capacity", default="50,100,200,400,800", help="sessions in one app process, in turn")
    ap.add_argument("--no-s3", action="store_true")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: still stop the servers (finally)
    counts = [int(x) for x in args.annotators.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        local = build_store(tmp / "store", args.items, 1)
        project = Project(name="bench", tasks=[Task("pairwise", K)], min_seconds=0.0, lease_minutes=30)
        pg = PostgresServer.start(durable=True)
        server = None
        try:
            bases = {"SQLite + local disk": (Board(local, project), None)}
            bases["Postgres + local disk"] = (bases["SQLite + local disk"][0], pg.create_database("local"))
            if not args.no_s3:
                server, remote = s3_store(tmp, local)
                if remote is not None:
                    queue = pg.create_database("s3")
                    bases["Postgres + S3"] = (Board(remote, project, queue), queue)
            names = list(bases)
            load = [os.getloadavg()[0]]
            samples: dict[tuple[str, int], list[float]] = {}
            p95s: dict[tuple[str, int], list[float]] = {}
            for rep in range(args.repeats):
                for n in counts:
                    order = names if (rep + counts.index(n)) % 2 == 0 else names[::-1]
                    for name in order:
                        base, queue = bases[name]
                        xs = run(base, queue, n, args.seconds, f"r{rep}n{n}{names.index(name)}")
                        samples.setdefault((name, n), []).extend(xs)
                        p95s.setdefault((name, n), []).append(_ms(xs, 95))
                        load.append(os.getloadavg()[0])
                        print(
                            f"  {name:24} {n:4} annotators: {len(xs):5} answers, p50 {_ms(xs, 50):7.1f} ms, "
                            f"p95 {_ms(xs, 95):7.1f} ms",
                            flush=True,
                        )
            print(
                f"\nsubmit → next item (ms), {args.repeats} repeats × {args.seconds:g} s, think time mean {THINK:g} s"
            )
            print("| queue + store | annotators | answers | p50 | p95 | p95 per repeat |")
            print("| --- | ---: | ---: | ---: | ---: | --- |")
            for n in counts:
                for name in names:
                    xs = samples[(name, n)]
                    reps = " / ".join(f"{x:.0f}" for x in p95s[(name, n)])
                    print(f"| {name} | {n} | {len(xs)} | {_ms(xs, 50):.0f} | {_ms(xs, 95):.0f} | {reps} |")

            print("\none app process (one board, a thread per session), Postgres queue:")
            for name in [x for x in names if x != "SQLite + local disk"]:
                base, queue = bases[name]
                for n in (int(x) for x in args.capacity.split(",")):
                    xs = run(base, queue, n, args.seconds, f"cap{n}{names.index(name)}", threads=True)
                    load.append(os.getloadavg()[0])
                    print(
                        f"  {name:24} {n:4} sessions: {len(xs):5} answers, p50 {_ms(xs, 50):7.1f} ms, "
                        f"p95 {_ms(xs, 95):7.1f} ms",
                        flush=True,
                    )
                    if _ms(xs, 95) > 300:
                        break
            print(f"\nload average (1 min) during the runs: {min(load):.1f}–{max(load):.1f}; {os.cpu_count()} cores")
        finally:
            pg.stop()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
