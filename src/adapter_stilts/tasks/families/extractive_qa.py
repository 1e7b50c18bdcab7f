"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): the answer is a span of the context.

Examples: {id, question, context, answers: [{text, answer_start}]} (no answers = unanswerable).
A context longer than the model's window is cut into overlapping windows (doc stride), so an
example yields one or more features. Every feature keeps `example_index` and `offsets` (the
character span of each context token in the context, None for question and special tokens); its
training targets are the tokens of the first gold answer, or the CLS token (index 0) when the
answer is not inside that window or there is none. Decoding picks the best span over all windows
of an example; tasks with `notes={"no_answer": True}` (SQuAD v2.0) answer "" when the CLS score
beats it. Metric: SQuAD EM/F1, or MLQA's language-aware EM/F1 for tasks with
`notes={"qa_metric": "mlqa"}`. XTREME layout: `<task>/test-<lang>.json`, question id -> answer."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ...evaluation.qa_metrics import mlqa_scores, normalize_mlqa, question_scores, squad_scores
from ..item_metrics import Formula, Mean
from ..registry import Task

CLS = 0  # the first token (<s> / [CLS]) stands for "no answer in this window"
N_BEST = 20  # start and end candidates per window
MAX_ANSWER_TOKENS = 30


def window_sizes(max_length: int) -> tuple[int, int]:
    """(question token cap, overlap between windows). With the question capped at a third of the
    window, at least half of it is context, so an overlap of a quarter always fits (384 -> 128, 96)."""
    return max_length // 3, max_length // 4


def _cap_questions(questions: list[str], tokenizer, cap: int) -> list[str]:
    """Cut questions longer than `cap` tokens at a token boundary (leading whitespace, which some
    SQuAD questions carry in bulk, goes first)."""
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [q[: offs[cap - 1][1]] if len(ids) > cap else q
            for q, ids, offs in zip(questions, enc["input_ids"], enc["offset_mapping"])]


def _context_offsets(offsets: list, sequence_ids: list, context: str) -> list[tuple[int, int] | None]:
    """Character spans of the context tokens. Sentencepiece tokens include the space before a word
    ("▁word" spans " word"): the space is trimmed, so spans cover only the word's characters."""
    out: list[tuple[int, int] | None] = []
    for (s, e), seq in zip(offsets, sequence_ids):
        if seq != 1:
            out.append(None)
            continue
        while s < e and context[s].isspace():
            s += 1
        out.append((s, e))
    return out


def _answer_tokens(offsets: list[tuple[int, int] | None], answer: dict) -> tuple[int, int]:
    """Token positions of the answer's first and last characters in this window, or (CLS, CLS)."""
    start_char = answer["answer_start"]
    end_char = start_char + len(answer["text"])
    ctx = [k for k, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return CLS, CLS
    start = next(k for k in ctx if offsets[k][1] > start_char)
    end = next(k for k in reversed(ctx) if offsets[k][0] < end_char)
    return (start, end) if start <= end else (CLS, CLS)


class ExtractiveQAFamily:
    name = "extractive_qa"

    def featurize(self, task: Task, examples: list[dict], tokenizer, max_length: int) -> list[dict]:
        if not examples:
            return []
        cap, stride = window_sizes(max_length)
        questions = _cap_questions([e["question"] for e in examples], tokenizer, cap)
        enc = tokenizer(questions, [e["context"] for e in examples], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
        feats = []
        for i, ex_index in enumerate(enc["overflow_to_sample_mapping"]):
            example = examples[ex_index]
            offsets = _context_offsets(enc["offset_mapping"][i], enc.sequence_ids(i), example["context"])
            start, end = _answer_tokens(offsets, example["answers"][0]) if example["answers"] else (CLS, CLS)
            feats.append({"input_ids": enc["input_ids"][i], "start_positions": start, "end_positions": end,
                          "example_index": ex_index, "offsets": offsets})
        return feats

    def add_head(self, model, head: str, task: Task, pooling: str = "cls") -> None:
        model.add_qa_head(head, overwrite_ok=True)  # per-token start/end logits; pooling plays no part

    def decode(self, task: Task, outputs: list[np.ndarray], features: list[dict], examples: list[dict]) -> list[str]:
        best_score = np.full(len(examples), -np.inf)
        best_span: list[tuple[int, int] | None] = [None] * len(examples)
        null_score = np.full(len(examples), np.inf)
        for logits, feat in zip(outputs, features):
            i = feat["example_index"]
            start_logits, end_logits = logits[:, 0], logits[:, 1]
            # as in the reference post-processing: the smallest CLS score over the windows
            null_score[i] = min(null_score[i], start_logits[CLS] + end_logits[CLS])
            found = _best_span(start_logits, end_logits, feat["offsets"])
            if found is not None and found[0] > best_score[i]:
                best_score[i], best_span[i] = found[0], found[1]
        allow_null = bool(task.notes.get("no_answer"))
        preds = []
        for i, ex in enumerate(examples):
            span = best_span[i]
            if span is None or (allow_null and null_score[i] > best_score[i]):
                preds.append("")
            else:
                preds.append(ex["context"][span[0]: span[1]])
        return preds

    def score(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, float]:
        golds = [[a["text"] for a in e["answers"]] for e in examples]
        if task.notes.get("qa_metric") == "mlqa":
            return mlqa_scores(predictions, golds, lang)
        return squad_scores(predictions, golds, v2=bool(task.notes.get("no_answer")))

    def item_metrics(self, task: Task) -> dict[str, Formula]:
        return {"exact_match": Mean("exact_match"), "f1": Mean("f1")}

    def item_stats(self, task: Task, predictions: list[Any], examples: list[dict], lang: str) -> dict[str, list]:
        """EM and F1 per question, by the same rules as `score` (SQuAD's or MLQA's)."""
        if task.notes.get("qa_metric") == "mlqa":
            scorer = partial(question_scores, normalize=partial(normalize_mlqa, lang=lang))
        else:
            scorer = partial(question_scores, v2=bool(task.notes.get("no_answer")))
        pairs = [scorer(p, [a["text"] for a in e["answers"]]) for p, e in zip(predictions, examples)]
        return {"exact_match": [em for em, _ in pairs], "f1": [f1 for _, f1 in pairs]}

    def write_predictions(self, folder: Path, task: Task, lang: str, predictions: list[Any],
                          examples: list[dict]) -> Path:
        path = folder / task.name / f"test-{lang}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        answers = {e["id"]: p for e, p in zip(examples, predictions)}
        path.write_text(json.dumps(answers, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path


def _best_span(start_logits: np.ndarray, end_logits: np.ndarray,
               offsets: list[tuple[int, int] | None]) -> tuple[float, tuple[int, int]] | None:
    """Best (score, character span) of one window among the top-N_BEST starts x ends: both inside
    the context, end not before start, at most MAX_ANSWER_TOKENS tokens, non-empty text."""
    n = min(len(offsets), len(start_logits))
    char_start = np.array([o[0] if o is not None else -1 for o in offsets[:n]])
    char_end = np.array([o[1] if o is not None else -1 for o in offsets[:n]])
    starts = np.argsort(-start_logits[:n], kind="stable")[:N_BEST]
    ends = np.argsort(-end_logits[:n], kind="stable")[:N_BEST]
    s, e = starts[:, None], ends[None, :]
    valid = ((char_start[s] >= 0) & (char_start[e] >= 0) & (e >= s) & (e - s < MAX_ANSWER_TOKENS)
             & (char_end[e] > char_start[s]))
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[s] + end_logits[e], -np.inf)
    r, c = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[r, c]), (int(char_start[starts[r]]), int(char_end[ends[c]]))
