"""Ranking metrics of XTREME-R's answer-retrieval tasks: mean average precision at 20.

- LAReQA: google-research/xtreme third_party/utils_lareqa.py, `average_precision_at_k` and
  `mean_avg_prec_at_k(..., k=20)` (called by evaluate_retrieval.py): a query's candidates ranked by
  score, cut at k; each relevant candidate at (1-based) rank r adds (relevant ones up to r) / r, a
  repeated prediction counts once; the sum is divided by min(number relevant, k); the task score is
  the mean over the queries.
- Mewsli-X: third_party/utils_mewslix.py `evaluate` (k = TOP_K = 20, reported as "MRR/MAP@20"): the
  reciprocal rank of the one gold entity within the top 20, 0 outside. With one relevant candidate
  AP@k is exactly that, so both tasks use `average_precision_at_k`.

The average precision of each query is its per-item outcome (evaluation/outcomes.py), so the mean
over any resample of the queries is the metric on that resample (paired bootstrap)."""
from __future__ import annotations

from collections.abc import Collection, Sequence

TOP_K = 20  # utils_mewslix.TOP_K; evaluate_retrieval.py calls mean_avg_prec_at_k with k=20 for LAReQA


def average_precision_at_k(relevant: Collection, ranked: Sequence, k: int | None = TOP_K) -> float:
    """AP@k of one query: `ranked` best first (only its first k are read; k=None: all of it)."""
    if not relevant:
        raise ValueError("average precision needs at least one relevant candidate")
    relevant = set(relevant)
    hits, total, seen = 0, 0.0, set()
    for rank, candidate in enumerate(ranked[:k] if k else ranked, 1):
        if candidate in relevant and candidate not in seen:
            hits += 1
            total += hits / rank
        seen.add(candidate)
    return total / (min(len(relevant), k) if k else len(relevant))
