"""Word-level edit metrics for revisions (pure functions). CLAIR asks for *minimal* revisions, so a
revision is measured against its original: how many words changed, and how much vocabulary they share."""

from __future__ import annotations


def words(text: str) -> list[str]:
    return text.split()


def levenshtein(a: list[str], b: list[str]) -> int:
    """Edit distance in words (insertions, deletions, substitutions), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_metrics(original: str, revised: str) -> dict[str, float]:
    """`similarity` = 1 − word edit distance / longer length (1 = identical, 0 = nothing kept);
    `jaccard` = shared words / all words (as sets)."""
    a, b = words(original), words(revised)
    distance = levenshtein(a, b)
    longest = max(len(a), len(b)) or 1
    union = set(a) | set(b)
    return {
        "edit_distance": float(distance),
        "similarity": 1 - distance / longest,
        "jaccard": len(set(a) & set(b)) / len(union) if union else 1.0,
    }


def check_revision(original: str, revised: str | None, min_similarity: float) -> tuple[str | None, dict[str, float]]:
    """(why the revision is rejected or None, its metrics). Rejected: empty, identical, or not minimal."""
    if revised is None or not revised.strip():
        return "empty revision", {}
    metrics = edit_metrics(original, revised)
    if revised.strip() == original.strip():
        return "revision identical to the original", metrics
    if metrics["similarity"] < min_similarity:
        return (
            f"not minimal: word-level similarity {metrics['similarity']:.2f} is below {min_similarity:.2f}",
            metrics,
        )
    return None, metrics
