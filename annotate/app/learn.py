"""The maths behind the learn pages, in numpy (no torch in the app).

DPO (Rafailov et al. 2023, eq. 7): with Δ = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x)),
the loss is −log σ(β·Δ); its gradient scales each pair by σ(−β·Δ) (large when the model still
prefers the loser, near zero once the pair is learned); the implicit rewards are β·log π/π_ref.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prefkit import files


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def dpo(beta: float, chosen_ratio, rejected_ratio) -> dict[str, np.ndarray]:
    """Loss, gradient weight and rewards for log-ratios log π/π_ref of chosen and rejected.

    Shapes: any broadcastable arrays; the results have the broadcast shape.
    """
    chosen_ratio, rejected_ratio = np.asarray(chosen_ratio, float), np.asarray(rejected_ratio, float)
    margin = beta * (chosen_ratio - rejected_ratio)
    return {
        "loss": -log_sigmoid(margin),
        "grad_weight": np.exp(log_sigmoid(-margin)),
        "reward_chosen": beta * chosen_ratio,
        "reward_rejected": beta * rejected_ratio,
        "reward_margin": margin,
    }


class RunPathError(ValueError):
    """A run folder outside the runs folder the app was given."""


def metrics_path(root: str | Path, run_dir: str | Path) -> Path:
    """`run_dir`/metrics.jsonl (`run_dir` relative to `root`, or absolute), refused unless it lies
    inside `root` once links are followed: the page must not read files anywhere on the server."""
    base = Path(root).resolve()
    path = (base / run_dir / "metrics.jsonl").resolve()
    if base not in path.parents:
        raise RunPathError(f"{run_dir} is outside the runs folder {base}; runs are read only from there (--runs)")
    return path


def read_metrics(path: str | Path, start: int = 0) -> tuple[list[dict], int]:
    """Rows of a run's metrics.jsonl from byte `start`; returns (rows, offset to continue from).

    Read as the trainer reads it (`prefkit.files.read_jsonl`): a last line still being written (no
    newline yet) is left for the next call, and a torn or foreign line is skipped rather than break
    the chart.
    """
    rows, offset = files.read_jsonl(path, start)
    return [row for row in rows if "step" in row], offset


def find_runs(root: str | Path, depth: int = 3) -> list[str]:
    """The run folders under `root` (those holding a metrics.jsonl, up to `depth` levels down), as
    paths relative to it, most recently written first. A folder that links out of `root` is not
    listed (`metrics_path` would refuse it)."""
    base = Path(root).resolve()
    if not base.is_dir():
        return []
    found: list[tuple[float, str]] = []
    level = [base]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:  # unreadable: nothing to list there
                continue
            for child in children:
                rel = child.relative_to(base)
                try:
                    path = metrics_path(base, rel)
                except RunPathError:
                    continue
                if path.is_file():
                    found.append((path.stat().st_mtime, rel.as_posix()))
                below.append(child)
        level = below
    return [rel for _, rel in sorted(found, key=lambda t: (-t[0], t[1]))]


def run_annotator(run_dir: str | Path) -> str:
    """The annotator `prefkit score-pairs` writes a run's disputed pairs as (prefkit.score)."""
    return f"ai:{Path(run_dir).resolve().name}:implicit-reward"


DISPUTES_SQL = """
SELECT prompt_id, response_ids, CAST(json_extract(metadata, '$.margin') AS DOUBLE) AS margin, created_at
FROM judgements
WHERE annotator = ? AND annotator_type = 'ai' AND kind = 'pairwise'
  AND json_extract_string(metadata, '$.source') = 'score-pairs'
ORDER BY margin, prompt_id
"""


def scored_pairs(con, run_dir: str | Path) -> list[dict]:
    """The pairs `prefkit score-pairs` wrote for this run, lowest implicit reward margin first: a
    negative margin is a pair the trained model disputes (it prefers the response labelled rejected)."""
    cur = con.execute(DISPUTES_SQL, [run_annotator(run_dir)])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
