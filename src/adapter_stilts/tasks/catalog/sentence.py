"""Sentence and sentence-pair classification other than NLI: SST-2 and QQP (intermediate), PAWS-X
(target). Examples: {text_a, text_b (optional), label}.

Local layouts (under data.local_dir):
- sst2/{train,test}.tsv: the alps copy of GLUE SST-2 (see sst2_local).
- qqp/{train,dev}.tsv: GLUE's QQP files as released (header `id qid1 qid2 question1 question2
  is_duplicate`, tab-separated, is_duplicate 0/1). No copy exists offline; add the two files to use
  QQP locally. GLUE's QQP test.tsv has no labels, so QQP has no test split.
- pawsx/xtreme/{train,dev,test}-<lang>.tsv: XTREME's PAWS-X files (`sentence1 sentence2 label`,
  written by Python's csv module, so quoted fields are unquoted on reading). Test languages are the
  test-<lang>.tsv files present. Offline there is no train-en.tsv: the task then trains on a fixed
  90/10 split of the English dev file (train = 1,800, dev = every 10th item = 200), so it runs
  offline; with train-en.tsv present it trains on it and selects on the whole dev-en.tsv, as in XTREME.
  XTREME strips the test labels; the gold labels are the `label` column of the labelled German test
  pawsx/de_supergleber/test.tsv, in line order (PAWS-X test is the same items in every language, and
  the files align line by line: ../shared/data/SOURCES.md, section 3)."""
from __future__ import annotations

from pathlib import Path

from ..readers import DataError, read_quoted_tsv, read_tsv
from ..registry import Task, register
from .common import check_label, english_only, holdout, hub_split

# ---------------------------------------------------------------- SST-2 (intermediate)
SST2_LABELS = ("negative", "positive")


def sst2_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline SST-2 (alps copy): train.tsv + dev.tsv re-split GLUE train; test.tsv is GLUE dev (872),
    # the split everyone reports, so it is our dev split. GLUE's test has no labels: no test split.
    if split == "test":
        raise DataError("sst2 has no labelled test split (GLUE's is hidden); use its dev split")
    path = root / "sst2" / ("train.tsv" if split == "train" else "test.tsv")
    return [{"text_a": c[0].strip(), "label": SST2_LABELS[int(c[1])] if c[1] in ("0", "1") else
             check_label(c[1], SST2_LABELS, f"{path}:{n}")} for n, c in read_tsv(path, 2, skip_header=True)]


def sst2_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": "train", "dev": "validation"}[split]
    return [{"text_a": r["sentence"], "label": SST2_LABELS[r["label"]]}
            for r in hub_split("stanfordnlp/sst2", None, hub)]


# ---------------------------------------------------------------- QQP (intermediate, paraphrase)
QQP_LABELS = ("not_duplicate", "duplicate")  # is_duplicate 0 / 1, the Hub's label ids
QQP_HEADER = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")


def qqp_local(root: Path, split: str, lang: str) -> list[dict]:
    if split == "test":
        raise DataError("qqp has no labelled test split (GLUE's is hidden); use its dev split")
    path = root / "qqp" / f"{split}.tsv"
    rows = read_tsv(path, len(QQP_HEADER))
    first = next(rows, None)
    if first is None or tuple(first[1][:len(QQP_HEADER)]) != QQP_HEADER:
        raise DataError(f"{path}:1: expected GLUE's QQP header {' '.join(QQP_HEADER)}")
    out = []
    for n, c in rows:
        if c[5] not in ("0", "1"):
            raise DataError(f"{path}:{n}: is_duplicate {c[5]!r} is not 0 or 1")
        out.append({"text_a": c[3], "text_b": c[4], "label": QQP_LABELS[int(c[5])]})
    return out


def qqp_hub(split: str, lang: str) -> list[dict]:
    if split == "test":
        raise DataError("qqp has no labelled test split (GLUE's is hidden); use its dev split")
    hub = {"train": "train", "dev": "validation"}[split]
    return [{"text_a": r["question1"], "text_b": r["question2"], "label": QQP_LABELS[r["label"]]}
            for r in hub_split("nyu-mll/glue", "qqp", hub)]


# ---------------------------------------------------------------- PAWS-X (target)
PAWSX_LABELS = ("0", "1")  # as in XTREME's files: 1 = paraphrase
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")


def pawsx_labelled_file(path: Path) -> list[dict]:
    return [{"text_a": c[0], "text_b": c[1], "label": check_label(c[2], PAWSX_LABELS, f"{path}:{n}")}
            for n, c in read_quoted_tsv(path, 3)]


def _pawsx_test(root: Path, lang: str) -> list[dict]:
    path = root / "pawsx" / "xtreme" / f"test-{lang}.tsv"
    rows = list(read_quoted_tsv(path, 2))
    if rows and all(len(c) >= 3 for _, c in rows):  # a labelled test file carries its own gold labels
        return pawsx_labelled_file(path)
    gold_path = root / "pawsx" / "de_supergleber" / "test.tsv"
    gold = [(n, c[3]) for n, c in read_tsv(gold_path, 4, skip_header=True)]
    if len(rows) != len(gold):
        raise DataError(f"{path}: {len(rows)} items but {gold_path} has {len(gold)} gold labels; "
                        "the files must be line-aligned")
    return [{"text_a": c[0], "text_b": c[1], "label": check_label(g, PAWSX_LABELS, f"{gold_path}:{gn}")}
            for (_, c), (gn, g) in zip(rows, gold)]


def pawsx_local(root: Path, split: str, lang: str) -> list[dict]:
    if split == "test":
        return _pawsx_test(root, lang)
    folder = root / "pawsx" / "xtreme"
    if (folder / "train-en.tsv").is_file():
        return pawsx_labelled_file(folder / f"{split}-en.tsv")
    # No English training file offline: a fixed 90/10 split of the English dev set stands in.
    return holdout(pawsx_labelled_file(folder / "dev-en.tsv"), split)


def pawsx_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.stem[5:] for p in (root / "pawsx" / "xtreme").glob("test-*.tsv")))


def pawsx_hub(split: str, lang: str) -> list[dict]:
    config, hub = ("en", "train") if split == "train" else ("en", "validation") if split == "dev" else (lang, "test")
    # The Hub marks a few missing or wrong labels as -1: they are dropped.
    return [{"text_a": r["sentence1"], "text_b": r["sentence2"], "label": PAWSX_LABELS[r["label"]]}
            for r in hub_split("google-research-datasets/paws-x", config, hub) if r["label"] >= 0]


register(Task("sst2", "classification", "intermediate", "accuracy",
              "SST-2 sentiment (single sentences); offline: GLUE train (re-split) and GLUE dev",
              sst2_local, sst2_hub, english_only, ("en",), SST2_LABELS))
register(Task("qqp", "classification", "intermediate", "accuracy",
              "QQP duplicate questions (2-way); local: GLUE's qqp/{train,dev}.tsv (none offline)",
              qqp_local, qqp_hub, english_only, ("en",), QQP_LABELS))
register(Task("pawsx", "classification", "target", "accuracy",
              "PAWS-X paraphrase (2-way), tested zero-shot; offline: no English train, so a fixed 90/10 "
              "split of English dev (train-en.tsv is used when present); test gold from the labelled "
              "German test, line-aligned",
              pawsx_local, pawsx_hub, pawsx_languages, PAWSX_LANGS, PAWSX_LABELS))
