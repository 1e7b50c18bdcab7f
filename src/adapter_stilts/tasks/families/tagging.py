"""Word-level tagging (UD-POS, PAN-X NER, CCG supertags); the label of a word sits on its first
sub-word. Metric: seqeval span F1, as XTREME's evaluate.py scores both POS and NER (on POS tags,
which have no B-/I- prefixes, that is XTREME's own definition, kept for comparability); token
accuracy is reported beside it. XTREME layout: one tag per line, a blank line after each sentence."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..item_metrics import Formula, Ratio, SpanF1
from ..registry import Task
from . import IGNORE, write_lines


class TaggingFamily:
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
                    # a tag the training split never had (open label sets: CCG) cannot be learnt
                    # and is not trained on; in scoring it still counts as an error
                    labels.append(index.get(e["tags"][w], IGNORE))
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

    def decode(self, task: Task, outputs: list[np.ndarray], features: list[dict],
               examples: list[dict]) -> list[list[str]]:
        out, fill = [], "O" if "O" in task.labels else task.labels[-1]
        for row, f in zip(outputs, features):
            tags = [task.labels[int(np.argmax(row[p]))] for p in f["first_subword"]]
            # words cut off by max_length get the catch-all tag ("O" for NER), so they count as errors
            out.append(tags + [fill] * (f["n_words"] - len(tags)))
        return out

    def score(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, float]:
        import warnings

        from seqeval.metrics import f1_score

        gold = [e["tags"] for e in examples]
        with warnings.catch_warnings():  # "NOUN seems not to be NE tag": expected for POS, see above
            warnings.simplefilter("ignore", UserWarning)
            f1 = float(f1_score(gold, predictions))
        flat = [(p, g) for ps, gs in zip(predictions, gold) for p, g in zip(ps, gs)]
        return {"f1": f1, "token_accuracy": float(np.mean([p == g for p, g in flat])) if flat else 0.0}

    def item_metrics(self, task: Task) -> dict[str, Formula]:
        return {"f1": SpanF1(), "token_accuracy": Ratio("tok_correct", "n_tokens")}

    def item_stats(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, list]:
        """Per sentence: seqeval's spans (the same chunking `score` uses) that are right, predicted
        and gold, and the words tagged right."""
        import warnings

        from seqeval.metrics.sequence_labeling import get_entities

        stats: dict[str, list] = {"tp": [], "n_pred": [], "n_gold": [], "tok_correct": [], "n_tokens": []}
        for pred, e in zip(predictions, examples):
            with warnings.catch_warnings():  # "NOUN seems not to be NE tag", as in `score`
                warnings.simplefilter("ignore", UserWarning)
                gold_spans, pred_spans = set(get_entities(list(e["tags"]))), set(get_entities(list(pred)))
            stats["tp"].append(len(gold_spans & pred_spans))
            stats["n_pred"].append(len(pred_spans))
            stats["n_gold"].append(len(gold_spans))
            stats["tok_correct"].append(sum(p == g for p, g in zip(pred, e["tags"])))
            stats["n_tokens"].append(min(len(pred), len(e["tags"])))
        return stats

    def write_predictions(self, folder: Path, task: Task, lang: str, predictions: list[Any],
                          examples: list[dict]) -> Path:
        return write_lines(folder / task.name / f"test-{lang}.tsv",
                           [line for tags in predictions for line in (*tags, "")])
