"""`prefkit demo`: the whole loop on a copy of the demo store, in a couple of minutes on a laptop CPU.

The demo runs the same commands a user would type, in-process, and prints each one before it runs,
so what it teaches can be repeated by hand. It trains a tiny model built on the spot (no download,
no GPU). Without `--base-url` it skips the AI stages and says how to add them: it never presents
scripted output as a model's.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_STORE = ROOT / "data" / "demo"
OUT = Path(".prefkit") / "demo-run"  # the default --out; its runs/ is what `prefkit app --demo` lists


class DemoError(RuntimeError):
    """The demo cannot run (no demo store, output folder in the way, a stage failed)."""


@dataclass
class Stage:
    title: str
    argv: list[str]
    what: str  # one line on what the stage did and where its files are


def plan(out: Path, base_url: str | None, model: str | None, steps: int) -> list[Stage]:
    """The commands the demo runs, in order."""
    store, export, tiny = out / "store", out / "export", out / "tiny-model"
    s = ["--store", str(store)]
    stages: list[Stage] = []
    if base_url:
        ai = ["--base-url", base_url, "--model", model or "default"]
        stages += [
            Stage(
                "generate",
                ["generate", *s, *ai, "-n", "2", "--limit", "8"],
                "two new responses for 8 prompts, written as origin=generated",
            ),
            Stage("judge", ["judge", *s, *ai, "--limit", "8"], "pairwise AI judgements, both orders, in judgements/"),
            Stage(
                "revise",
                ["revise", *s, *ai, "--clair", "--limit", "4"],
                "CLAIR minimal revisions of weaker responses, with edit metrics",
            ),
        ]
    stages += [
        Stage(
            "curate",
            ["curate", *s, "--out", "demo"],
            f"pairs, unpaired labels and the report in {store / 'curated' / 'demo'}",
        ),
        Stage(
            "export",
            ["export", "demo", *s, "--to", str(export)],
            f"Hugging Face datasets (TRL columns) with dataset cards in {export}",
        ),
        _train_stage(
            "dpo", export / "preference", tiny, out / "runs" / "dpo", steps, "a DPO run: metrics.jsonl and final/ in"
        ),
        _train_stage("kto", export / "unpaired", tiny, out / "runs" / "kto", steps, "a KTO run in"),
        Stage(
            "score-pairs",
            ["score-pairs", str(out / "runs" / "dpo"), "--data", str(export / "preference"), *s],
            "implicit reward margins under the trained policy; the most-disputed pairs go back to the store",
        ),
    ]
    return stages


def _train_stage(method: str, data: Path, model: Path, run: Path, steps: int, what: str) -> Stage:
    # A tiny random model needs a far larger learning rate than a real one to move in a few steps.
    argv = ["train", method, "--data", str(data), "--model", str(model), "--out", str(run)]
    argv += ["--max-steps", str(steps), "--batch-size", "4", "--lr", "1e-3"]
    return Stage(f"train {method}", argv, f"{what} {run}")


def last_eval(run: Path) -> str:
    """The run's last evaluation metrics, as one line."""
    from prefkit.train.metrics import read

    rows = read(run / "metrics.jsonl")
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if not evals:
        return "none logged"
    keys = ("eval/loss", "eval/rewards/accuracies", "eval/rewards/margins", "eval/kl")
    return ", ".join(f"{k[5:]} {evals[-1][k]:.4f}" for k in keys if evals[-1].get(k) is not None)


def build_tiny_model(store: Path, to: Path) -> Path:
    """A tiny Llama and a word-level tokenizer whose vocabulary is the demo's own words."""
    from prefkit.annotate.store import Store
    from prefkit.train.tiny import save_tiny, vocabulary_from

    con = Store(store).connect()
    texts = [r[0] for r in con.execute("SELECT content FROM responses").fetchall()]
    texts += [r[0] for r in con.execute("SELECT m.content FROM prompts, unnest(messages) AS t(m)").fetchall()]
    con.close()
    return save_tiny(to, vocabulary_from(texts), hidden=64, layers=2, heads=4)


def command_line(stage: Stage) -> str:
    """The stage as the user would type it, without the `user:password@` a --base-url may carry."""
    from prefkit.annotate.ai.transport import redact_url

    return redact_url("prefkit " + " ".join(stage.argv))


def run_demo(
    out: Path, base_url: str | None = None, model: str | None = None, steps: int = 20, echo=print
) -> list[Stage]:
    from prefkit.cli import main as prefkit_main

    if not DEMO_STORE.is_dir():
        raise DemoError(f"the demo store {DEMO_STORE} is missing: run from a prefkit checkout")
    if out.exists():
        if not (out / ".prefkit-demo").exists():
            raise DemoError(f"{out} exists and is not a demo folder: pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".prefkit-demo").write_text("made by prefkit demo; safe to delete\n")
    shutil.copytree(DEMO_STORE, out / "store")
    echo(f"copied the demo store to {out / 'store'}")
    echo(f"built a tiny model in {build_tiny_model(out / 'store', out / 'tiny-model')} (random weights, no download)")
    if not base_url:
        echo(
            "no --base-url: skipping generate, judge and revise (add --base-url http://localhost:8000/v1 "
            "--model NAME to run them against any OpenAI-compatible server)"
        )
    stages = plan(out, base_url, model, steps)
    for stage in stages:
        echo(f"\n== {stage.title}: {command_line(stage)}")
        started = time.perf_counter()
        code = prefkit_main(stage.argv)
        if code:
            raise DemoError(f"stage '{stage.title}' failed (exit {code}); see the message above")
        echo(f"-- {stage.title} done in {time.perf_counter() - started:.1f}s: {stage.what}")
        if stage.title.startswith("train"):
            echo(f"   last evaluation: {last_eval(Path(stage.argv[stage.argv.index('--out') + 1]))}")
    echo(f"\nThe whole loop ran. Everything is in {out}. Label more with: prefkit app --store {out / 'store'}")
    return stages
