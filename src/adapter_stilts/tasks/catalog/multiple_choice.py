"""Multiple-choice tasks: HellaSwag, Cosmos QA, CommonsenseQA, SIQA (intermediate) and XCOPA (target).
Examples: {id, context, question (may be empty), choices, label (index of the right choice)}.

Offline, only evaluation sets exist for the intermediate tasks; their train/dev splits are fixed
holdouts (every 10th item -> dev, see common.holdout). Hub test splits of these datasets carry no
labels, so they have no test split. XCOPA trains on English COPA (train 400 / val 100, the XCOPA
repo's split of COPA dev) after SIQA, as XTREME-R does."""
from __future__ import annotations

import bz2
import re
from pathlib import Path

from ..readers import DataError, read_csv_rows, read_jsonl, require_file
from ..registry import Task, register
from .common import english_only, holdout, hub_split


def _choice_example(where: str, id_: str, context: str, question: str, choices: list, label, n: int) -> dict:
    """One example, checked: n non-empty string choices and a label index in range."""
    if len(choices) != n or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: expected {n} answer choices (strings), got {choices!r}")
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n:
        raise DataError(f"{where}: label {label!r} is not a choice index in 0..{n - 1}")
    return {"id": id_, "context": context, "question": question, "choices": list(choices), "label": label}


def _no_test(task: str):
    raise DataError(f"{task} has no labelled test split (the benchmark's is hidden); it is an intermediate task: "
                    f"use its train and dev splits")


# ---------------------------------------------------------------- HellaSwag (intermediate, 4 choices)
def hellaswag_clean(text: str) -> str:
    """Drop the WikiHow markup of HellaSwag ([header], [title], [step], [substeps]) the way the
    offline text file was made, so Hub and local examples read the same."""
    text = text.replace(" [title]", ". ")
    for marker in ("[header]", "[step]", "[substeps]", "[title] ", "[title]."):
        text = text.replace(marker, "")
    return re.sub(" {2,}", " ", text).strip(" ")


def hellaswag_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline: all 10,042 validation items as text, 6 lines each ("activity: context", gold index,
    # 4 endings); our train/dev are a fixed 90/10 holdout of them. The context is the partial
    # sentence each ending completes.
    if split == "test":
        _no_test("hellaswag")
    path = require_file(root / "hellaswag" / "hellaswag_val_full.txt.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f]
    if len(lines) % 6:
        raise DataError(f"{path}:{len(lines) - len(lines) % 6 + 1}: incomplete item (6 lines per item: context, "
                        f"label, 4 endings; the file has {len(lines)} lines)")
    out = []
    for start in range(0, len(lines), 6):
        ctx, label, *endings = lines[start: start + 6]
        out.append(_choice_example(f"{path}:{start + 2}", f"val-{start // 6}", ctx, "", endings, label, 4))
    return holdout(out, split)


def hellaswag_hub(split: str, lang: str) -> list[dict]:
    if split == "test":
        _no_test("hellaswag")
    hub = {"train": "train", "dev": "validation"}[split]
    return [_choice_example(f"Rowan/hellaswag {hub} #{i}", str(r["ind"]),
                            f"{hellaswag_clean(r['activity_label'])}: {hellaswag_clean(r['ctx'])}", "",
                            [hellaswag_clean(e) for e in r["endings"]], r["label"], 4)
            for i, r in enumerate(hub_split("Rowan/hellaswag", None, hub))]


# ---------------------------------------------------------------- Cosmos QA (intermediate, 4 choices)
COSMOS_COLUMNS = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")


def _cosmos_example(where: str, r: dict) -> dict:
    return _choice_example(where, r["id"], r["context"], r["question"], [r[f"answer{k}"] for k in range(4)],
                           r["label"], 4)


def cosmosqa_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline: the 2,985 dev items (valid.csv); train/dev are a fixed 90/10 holdout of them.
    if split == "test":
        _no_test("cosmosqa")
    path = root / "cosmosqa" / "valid.csv"
    return holdout([_cosmos_example(f"{path}:{n}", r) for n, r in read_csv_rows(path, COSMOS_COLUMNS)], split)


def cosmosqa_hub(split: str, lang: str) -> list[dict]:
    if split == "test":
        _no_test("cosmosqa")
    hub = {"train": "train", "dev": "validation"}[split]
    return [_cosmos_example(f"allenai/cosmos_qa {hub} #{i}", r)
            for i, r in enumerate(hub_split("allenai/cosmos_qa", None, hub))]


# ---------------------------------------------------------------- CommonsenseQA (intermediate, 5 choices)
def _csqa_example(where: str, o: dict) -> dict:
    choices = o.get("choices") or {}
    keys, texts = choices.get("label", []), choices.get("text", [])
    if o.get("answerKey") not in keys:
        raise DataError(f"{where}: answerKey {o.get('answerKey')!r} is not one of the choice labels {keys}")
    return _choice_example(where, o.get("id", ""), "", o.get("question", ""), texts, keys.index(o["answerKey"]), 5)


def commonsenseqa_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline: the 1,221 dev items (random split); train/dev are a fixed 90/10 holdout of them.
    if split == "test":
        _no_test("commonsenseqa")
    path = root / "commonsenseqa" / "dev_rand_split.jsonl"
    return holdout([_csqa_example(f"{path}:{n}", o) for n, o in read_jsonl(path)], split)


def commonsenseqa_hub(split: str, lang: str) -> list[dict]:
    if split == "test":
        _no_test("commonsenseqa")
    hub = {"train": "train", "dev": "validation"}[split]
    return [_csqa_example(f"tau/commonsense_qa {hub} #{i}", r)
            for i, r in enumerate(hub_split("tau/commonsense_qa", None, hub))]


# ---------------------------------------------------------------- SIQA (intermediate, 3 choices)
SIQA_KEYS = ("A", "B", "C")


def _siqa(where: str, id_: str, o: dict, label) -> dict:
    for key in ("context", "question", "answerA", "answerB", "answerC"):
        if not isinstance(o.get(key), str):
            raise DataError(f"{where}: missing field {key!r}")
    return _choice_example(where, id_, o["context"], o["question"], [o[f"answer{k}"] for k in SIQA_KEYS], label, 3)


def siqa_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline: the labelled v1.4 dev (1,954) and test (2,224) files, in that order; train/dev are a
    # fixed 90/10 holdout of the 4,178 items.
    if split == "test":
        _no_test("siqa")
    out = []
    for part in ("dev", "tst"):
        path = root / "siqa" / f"socialIQa_v1.4_{part}.jsonl"
        for n, o in read_jsonl(path):
            if o.get("correct") not in SIQA_KEYS:
                raise DataError(f"{path}:{n}: 'correct' {o.get('correct')!r} is not one of A, B, C")
            out.append(_siqa(f"{path}:{n}", f"{part}-{n}", o, SIQA_KEYS.index(o["correct"])))
    return holdout(out, split)


def siqa_hub(split: str, lang: str) -> list[dict]:
    if split == "test":
        _no_test("siqa")
    hub = {"train": "train", "dev": "validation"}[split]
    # The Hub labels are the strings "1".."3" (some with a trailing newline)
    return [_siqa(f"allenai/social_i_qa {hub} #{i}", str(i), r, _one_based(r["label"]))
            for i, r in enumerate(hub_split("allenai/social_i_qa", None, hub))]


def _one_based(label) -> int | str:
    text = str(label).strip()
    return int(text) - 1 if text.isdigit() else text  # a non-number is reported by _choice_example


# ---------------------------------------------------------------- XCOPA (target, 2 choices)
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
# XTREME-R (third_party/run_xcopa.py) pairs "<premise> What was the cause?" / "... What was the
# effect?" with each alternative, in English for every language (no connective such as
# "because" / "so"); we do the same, so scores stay comparable with XTREME-R's.
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What was the effect?"}


def _copa_example(where: str, o: dict) -> dict:
    if o.get("question") not in COPA_QUESTIONS:
        raise DataError(f"{where}: question {o.get('question')!r} is not 'cause' or 'effect'")
    for key in ("premise", "choice1", "choice2"):
        if not isinstance(o.get(key), str):
            raise DataError(f"{where}: missing field {key!r}")
    return _choice_example(where, str(o.get("idx", "")), o["premise"], COPA_QUESTIONS[o["question"]],
                           [o["choice1"], o["choice2"]], o.get("label"), 2)


def xcopa_local(root: Path, split: str, lang: str) -> list[dict]:
    if split in ("train", "dev"):  # English COPA, the XCOPA repo's split of COPA dev (400 / 100)
        path = root / "copa_en" / ("train-en.jsonl" if split == "train" else "val-en.jsonl")
    else:
        path = root / "xcopa" / f"test.{lang}.jsonl"
    return [_copa_example(f"{path}:{n}", o) for n, o in read_jsonl(path)]


def xcopa_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name.split(".")[1] for p in (root / "xcopa").glob("test.*.jsonl")))


def xcopa_hub(split: str, lang: str) -> list[dict]:
    if split in ("train", "dev"):
        hub = {"train": "train", "dev": "validation"}[split]
        rows, name = hub_split("aps/super_glue", "copa", hub), f"aps/super_glue copa {hub}"
    else:
        rows, name = hub_split("cambridgeltl/xcopa", lang, "test"), f"cambridgeltl/xcopa {lang} test"
    return [_copa_example(f"{name} #{i}", dict(r)) for i, r in enumerate(rows)]


register(Task("hellaswag", "multiple_choice", "intermediate", "accuracy",
              "HellaSwag (4 endings completing a partial sentence); offline: the 10,042 validation items split 90/10",
              hellaswag_local, hellaswag_hub, english_only, ("en",), notes={"choices": 4}))
register(Task("cosmosqa", "multiple_choice", "intermediate", "accuracy",
              "Cosmos QA (passage + question, 4 answers); offline: the 2,985 dev items split 90/10",
              cosmosqa_local, cosmosqa_hub, english_only, ("en",), notes={"choices": 4}))
register(Task("commonsenseqa", "multiple_choice", "intermediate", "accuracy",
              "CommonsenseQA (question, 5 answers); offline: the 1,221 dev items split 90/10",
              commonsenseqa_local, commonsenseqa_hub, english_only, ("en",), notes={"choices": 5}))
register(Task("siqa", "multiple_choice", "intermediate", "accuracy",
              "Social IQa (context + question, 3 answers; XTREME-R's step before COPA); "
              "offline: dev + test split 90/10",
              siqa_local, siqa_hub, english_only, ("en",), notes={"choices": 3}))
register(Task("xcopa", "multiple_choice", "target", "accuracy",
              "XCOPA: trained on English COPA (400 train / 100 val), tested zero-shot on XCOPA test (500 per language)",
              xcopa_local, xcopa_hub, xcopa_languages, XCOPA_LANGS, notes={"choices": 2}))
