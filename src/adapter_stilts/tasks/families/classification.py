"""Single sentences or sentence pairs -> one label (XNLI, PAWS-X, the NLI/paraphrase/sentiment
intermediate tasks). Metric: accuracy. XTREME layout: one label per line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..item_metrics import Formula
from ..registry import Task
from . import ACCURACY, correct_items, write_lines


class ClassificationFamily:
    name = "classification"

    def featurize(self, task: Task, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        b = [e.get("text_b") for e in examples]
        enc = tokenizer([e["text_a"] for e in examples], b if any(x is not None for x in b) else None,
                        truncation=True, max_length=max_length)
        index = {lab: i for i, lab in enumerate(task.labels)}
        return [{"input_ids": ids, "labels": index[e["label"]]} for ids, e in zip(enc["input_ids"], examples)]

    def add_head(self, model, head: str, task: Task, pooling: str = "cls") -> None:
        kwargs = dict(num_labels=len(task.labels), id2label=dict(enumerate(task.labels)), overwrite_ok=True)
        if pooling == "mean":
            from ...models.heads import MEAN_POOLED

            model.add_custom_head(MEAN_POOLED, head, **kwargs)
        else:
            model.add_classification_head(head, **kwargs)

    def decode(self, task: Task, outputs: list[np.ndarray], features: list[dict], examples: list[dict]) -> list[str]:
        return [task.labels[int(np.argmax(row))] for row in outputs]

    def score(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, float]:
        return {"accuracy": float(np.mean([p == e["label"] for p, e in zip(predictions, examples)]))}

    def item_metrics(self, task: Task) -> dict[str, Formula]:
        return ACCURACY

    def item_stats(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, list]:
        return correct_items(predictions, examples)

    def write_predictions(self, folder: Path, task: Task, lang: str, predictions: list[Any],
                          examples: list[dict]) -> Path:
        return write_lines(folder / task.name / f"test-{lang}.tsv", [str(p) for p in predictions])
