"""Multiple choice (HellaSwag, Cosmos QA, CommonsenseQA, SIQA, XCOPA): pick one of a fixed number
of candidate answers. Examples: {id (optional), context, question (optional), choices, label (index
of the right choice)}. Each choice becomes one pair `(context [+ question], choice)`; the head
scores every pair and the argmax over a row of choices is the prediction. Metric: accuracy.
XTREME layout: one predicted index per line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..item_metrics import Formula
from ..readers import DataError
from ..registry import Task
from . import ACCURACY, correct_items, write_lines


def num_choices(task: Task) -> int:
    """The task's fixed number of choices (adapters' multiple-choice heads reshape to it)."""
    n = task.notes.get("choices")
    if not isinstance(n, int) or n < 2:
        raise DataError(f"{task.name}: a multiple-choice task needs notes={{'choices': n}} with n >= 2, got {n!r}")
    return n


def first_segment(example: dict) -> str:
    """What every choice is paired with: the context, then the question when there is one."""
    return " ".join(part for part in (example.get("context"), example.get("question")) if part)


def check_example(task: Task, example: dict, index: int, n: int) -> None:
    where = f"{task.name}: example {example.get('id', index)!s}"
    if len(example["choices"]) != n:
        raise DataError(f"{where} has {len(example['choices'])} choices, but every example of {task.name} must have "
                        f"{n} (the multiple-choice head scores a fixed number of choices)")
    label = example["label"]
    if not isinstance(label, (int, np.integer)) or isinstance(label, bool) or not 0 <= label < n:
        raise DataError(f"{where}: label {label!r} is not a choice index in 0..{n - 1}")


class MultipleChoiceFamily:
    name = "multiple_choice"

    def featurize(self, task: Task, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        n = num_choices(task)
        firsts, seconds = [], []
        for i, e in enumerate(examples):
            check_example(task, e, i, n)
            firsts += [first_segment(e)] * n
            seconds += list(e["choices"])
        if not examples:
            return []
        # longest_first truncation trims the long side (a Cosmos QA passage), keeping the choice
        enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)["input_ids"]
        return [{"input_ids": enc[i * n: (i + 1) * n], "labels": int(e["label"])} for i, e in enumerate(examples)]

    def add_head(self, model, head: str, task: Task, pooling: str = "cls") -> None:
        n = num_choices(task)
        if pooling == "mean":
            from ...models.heads import MEAN_POOLED_MC

            model.add_custom_head(MEAN_POOLED_MC, head, num_choices=n, overwrite_ok=True)
        else:
            model.add_multiple_choice_head(head, num_choices=n, overwrite_ok=True)

    def decode(self, task: Task, outputs: list[np.ndarray], features: list[dict], examples: list[dict]) -> list[int]:
        return [int(np.argmax(row)) for row in outputs]

    def score(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, float]:
        return {"accuracy": float(np.mean([p == e["label"] for p, e in zip(predictions, examples)]))}

    def item_metrics(self, task: Task) -> dict[str, Formula]:
        return ACCURACY

    def item_stats(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, list]:
        return correct_items(predictions, examples)

    def write_predictions(self, folder: Path, task: Task, lang: str, predictions: list[Any],
                          examples: list[dict]) -> Path:
        return write_lines(folder / task.name / f"test-{lang}.tsv", [str(p) for p in predictions])
