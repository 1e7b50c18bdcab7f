"""Task families, one module each: how examples become model inputs (features), which head a task
gets, how model outputs become per-example predictions, how those are scored, and how they are
written in XTREME's submission layout. Registered here explicitly, by name.

The contract every family keeps (see `Family`):
- `featurize` may return more features than examples (QA windows); each feature carries
  `input_ids` (a list, or a list of lists for multiple choice), its training targets under the
  keys of `MODEL_TARGETS`, and any bookkeeping of its own under other keys;
- `decode` gets the model outputs of every feature, in order, plus the examples, and returns one
  prediction per example; `score` turns predictions into metrics for one language."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..item_metrics import Formula, Mean
from ..registry import Task

IGNORE = -100  # label id the heads' losses ignore (non-first sub-words, special tokens)
MODEL_TARGETS = ("labels", "start_positions", "end_positions")  # feature keys the model receives


class Family(Protocol):
    name: str

    def featurize(self, task: Task, examples: list[dict], tokenizer, max_length: int) -> list[dict]: ...

    def add_head(self, model, head: str, task: Task, pooling: str = "cls") -> None: ...

    def decode(self, task: Task, outputs: list[np.ndarray], features: list[dict],
               examples: list[dict]) -> list[Any]: ...

    def score(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, float]: ...

    def write_predictions(self, folder: Path, task: Task, lang: str, predictions: list[Any],
                          examples: list[dict]) -> Path: ...

    # target families: the per-item numbers a resample recomputes the metrics from (evaluation/outcomes.py)
    def item_metrics(self, task: Task) -> dict[str, Formula]: ...

    def item_stats(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, list]: ...


ACCURACY: dict[str, Formula] = {"accuracy": Mean("correct")}


def correct_items(predictions: list[Any], examples: list[dict]) -> dict[str, list]:
    return {"correct": [int(p == e["label"]) for p, e in zip(predictions, examples)]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _families() -> dict[str, Family]:
    from .classification import ClassificationFamily
    from .extractive_qa import ExtractiveQAFamily
    from .masked_lm import MaskedLMFamily
    from .multiple_choice import MultipleChoiceFamily
    from .tagging import TaggingFamily

    return {f.name: f for f in (ClassificationFamily(), TaggingFamily(), MultipleChoiceFamily(), ExtractiveQAFamily(),
                                MaskedLMFamily())}


FAMILIES: dict[str, Family] = {}


def family_of(task: Task) -> Family:
    if not FAMILIES:
        FAMILIES.update(_families())
    return FAMILIES[task.family]
