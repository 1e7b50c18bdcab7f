"""Task families: how examples become model inputs, which head a task gets, how logits become
predictions and how predictions are scored. One class per family, registered by name."""
from __future__ import annotations

from typing import Any

import numpy as np

from .registry import Task

IGNORE = -100  # label id the heads' losses ignore (non-first sub-words, special tokens)


class ClassificationFamily:
    """Single sentences or sentence pairs -> one label; metric: accuracy."""

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
            from ..models.heads import MEAN_POOLED

            model.add_custom_head(MEAN_POOLED, head, **kwargs)
        else:
            model.add_classification_head(head, **kwargs)

    def decode(self, task: Task, logits: list[np.ndarray], features: list[dict]) -> list[str]:
        return [task.labels[int(np.argmax(row))] for row in logits]

    def gold(self, examples: list[dict]) -> list[str]:
        return [e["label"] for e in examples]

    def score(self, task: Task, predictions: list[Any], examples: list[dict]) -> dict[str, float]:
        gold = self.gold(examples)
        return {"accuracy": float(np.mean([p == g for p, g in zip(predictions, gold)]))}

    def prediction_line(self, prediction: Any) -> str:
        return str(prediction)


class TaggingFamily:
    """Word-level tagging; the label of a word sits on its first sub-word. Metric: seqeval F1,
    as XTREME's evaluate.py scores both POS and NER."""

    name = "tagging"

    def featurize(self, task: Task, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        enc = tokenizer([e["words"] for e in examples], is_split_into_words=True, truncation=True,
                        max_length=max_length)
        index = {lab: i for i, lab in enumerate(task.labels)}
        feats = []
        for i, e in enumerate(examples):
            word_ids = enc.word_ids(i)
            labels, first, prev = [], [], None
            for pos, w in enumerate(word_ids):
                if w is not None and w != prev:
                    labels.append(index[e["tags"][w]])
                    first.append(pos)
                else:
                    labels.append(IGNORE)
                prev = w
            feats.append({"input_ids": enc["input_ids"][i], "labels": labels, "first_subword": first,
                          "n_words": len(e["words"])})
        return feats

    def add_head(self, model, head: str, task: Task, pooling: str = "cls") -> None:
        model.add_tagging_head(head, num_labels=len(task.labels), id2label=dict(enumerate(task.labels)),
                               overwrite_ok=True)

    def decode(self, task: Task, logits: list[np.ndarray], features: list[dict]) -> list[list[str]]:
        out = []
        for row, f in zip(logits, features):
            tags = [task.labels[int(np.argmax(row[p]))] for p in f["first_subword"]]
            # words cut off by max_length get the catch-all tag, so they count as errors
            out.append(tags + ["X"] * (f["n_words"] - len(tags)))
        return out

    def gold(self, examples: list[dict]) -> list[list[str]]:
        return [e["tags"] for e in examples]

    def score(self, task: Task, predictions: list[Any], examples: list[dict]) -> dict[str, float]:
        from seqeval.metrics import f1_score

        return {"f1": float(f1_score(self.gold(examples), predictions))}

    def prediction_line(self, prediction: Any) -> str:
        return " ".join(prediction)


FAMILIES = {f.name: f for f in (ClassificationFamily(), TaggingFamily())}


def family_of(task: Task):
    return FAMILIES[task.family]
