"""How a task's metrics are recomputed from per-item outcome columns (evaluation/outcomes.py): each
metric is a formula over column sums. Declared here, below the task families and the evaluation
code that both use them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mean:
    column: str

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def value(self, sums: dict[str, np.ndarray], n: np.ndarray | int) -> np.ndarray:
        return np.divide(sums[self.column], n, out=np.zeros_like(sums[self.column], dtype=float), where=n > 0)


@dataclass(frozen=True)
class Ratio:
    numerator: str
    denominator: str

    def columns(self) -> tuple[str, ...]:
        return (self.numerator, self.denominator)

    def value(self, sums: dict[str, np.ndarray], n: np.ndarray | int) -> np.ndarray:
        num, den = np.asarray(sums[self.numerator], float), np.asarray(sums[self.denominator], float)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


@dataclass(frozen=True)
class SpanF1:
    tp: str = "tp"
    pred: str = "n_pred"
    gold: str = "n_gold"

    def columns(self) -> tuple[str, ...]:
        return (self.tp, self.pred, self.gold)

    def value(self, sums: dict[str, np.ndarray], n: np.ndarray | int) -> np.ndarray:
        tp = np.asarray(sums[self.tp], float)
        den = np.asarray(sums[self.pred], float) + np.asarray(sums[self.gold], float)
        return np.divide(2 * tp, den, out=np.zeros_like(tp), where=(den > 0) & (tp > 0))


Formula = Mean | Ratio | SpanF1


# retrieval tasks have no family: Tatoeba per query, BUCC per source sentence, LAReQA and Mewsli-X
# per query (its average precision at 20)
RETRIEVAL_ITEM_METRICS: dict[str, dict[str, Formula]] = {
    "alignment": {"accuracy": Mean("correct")},
    "answer_retrieval": {"map_at_20": Mean("ap")},
    "mining": {"f1": SpanF1(), "precision": Ratio("tp", "n_pred"), "recall": Ratio("tp", "n_gold")},
}
