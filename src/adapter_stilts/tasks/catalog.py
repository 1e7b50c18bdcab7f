"""The registered tasks: where their data lives (local layout of ../shared/data, Hub ids) and how
it is read. Examples are plain dicts: classification {text_a, text_b, label}; tagging
{words, tags}; retrieval {source, target} (a sentence and its English translation)."""
from __future__ import annotations

import os
from pathlib import Path

from .readers import DataError, read_conllu, read_csv_rows, read_jsonl, read_lines, read_tsv, require_file
from .registry import Task, register

NLI_LABELS = ("entailment", "neutral", "contradiction")  # the order of the Hub datasets' label ids
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
DEV_EVERY = 10  # tasks with a single labelled file hold out every 10th example as their dev split


def hub_split(path: str, config: str | None, split: str):
    """Load a split from the Hugging Face Hub with a clear message when that is impossible."""
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as e:  # offline, unknown id, gated: all surface as different exception types
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        why = "the Hub is unreachable (offline mode is on)" if offline else f"{type(e).__name__}: {e}"
        raise DataError(
            f"cannot load Hub dataset '{path}' (config {config!r}, split {split!r}): {why}. "
            f"Use data.source=local with data.local_dir pointing at local files instead."
        ) from None


def _holdout(examples: list[dict], split: str) -> list[dict]:
    if split == "dev":
        return examples[::DEV_EVERY]
    return [e for i, e in enumerate(examples) if i % DEV_EVERY]


def _check_label(label: str, labels: tuple[str, ...], where: str) -> str:
    if label not in labels:
        raise DataError(f"{where}: label {label!r} is not one of {', '.join(labels)}")
    return label


# ---------------------------------------------------------------- ANLI (intermediate, NLI)
ANLI_CODES = {"e": "entailment", "n": "neutral", "c": "contradiction"}


def anli_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline only the R1-R3 dev sets exist; our train/dev are a fixed 90/10 split of them.
    out = []
    for r in (1, 2, 3):
        path = root / "anli" / f"ANLI_analysis_r{r}_dev.csv"
        for line, row in read_csv_rows(path, ("context", "statement", "gold_label")):
            label = ANLI_CODES.get(row["gold_label"])
            if label is None:
                raise DataError(f"{path}:{line}: gold_label {row['gold_label']!r} is not one of e, n, c")
            out.append({"text_a": row["context"], "text_b": row["statement"], "label": label})
    return _holdout(out, split)


def anli_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": ["train_r1", "train_r2", "train_r3"], "dev": ["dev_r1", "dev_r2", "dev_r3"],
           "test": ["test_r1", "test_r2", "test_r3"]}[split]
    return [{"text_a": r["premise"], "text_b": r["hypothesis"], "label": NLI_LABELS[r["label"]]}
            for s in hub for r in hub_split("facebook/anli", None, s)]


# ---------------------------------------------------------------- MNLI (intermediate; XNLI's train)
def mnli_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline MNLI = the 9,815 dev_matched items with gold labels (no train set is available).
    path = root / "mnli" / "generative-nli" / "dev.jsonl"
    out = [{"text_a": o["premise"], "text_b": o["hypothesis"],
            "label": _check_label(o.get("label"), NLI_LABELS, f"{path}:{n}")} for n, o in read_jsonl(path)]
    return _holdout(out, split)


def mnli_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": "train", "dev": "validation_matched", "test": "validation_mismatched"}[split]
    return [{"text_a": r["premise"], "text_b": r["hypothesis"], "label": NLI_LABELS[r["label"]]}
            for r in hub_split("nyu-mll/glue", "mnli", hub)]


# ---------------------------------------------------------------- SNLI and ANLI+ (intermediate)
def snli_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline SNLI = the e-SNLI copies of dev and test (line-aligned s1 / s2 / labels files).
    out = []
    for part in ("dev", "test"):
        folder = root / "snli"
        s1, s2, labels = (read_lines(folder / f"{n}.{part}") for n in ("s1", "s2", "labels"))
        if not len(s1) == len(s2) == len(labels):
            raise DataError(f"{folder}/s1.{part}, s2.{part}, labels.{part}: line counts differ")
        out += [{"text_a": a, "text_b": b, "label": _check_label(lab, NLI_LABELS, f"{folder}/labels.{part}:{i + 1}")}
                for i, (a, b, lab) in enumerate(zip(s1, s2, labels))]
    return _holdout(out, split)


def snli_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": "train", "dev": "validation", "test": "test"}[split]
    return [{"text_a": r["premise"], "text_b": r["hypothesis"], "label": NLI_LABELS[r["label"]]}
            for r in hub_split("stanfordnlp/snli", None, hub) if r["label"] >= 0]


def anli_plus_local(root: Path, split: str, lang: str) -> list[dict]:
    """The paper's ANLI+: ANLI R1-R3 + MNLI + SNLI."""
    return anli_local(root, split, lang) + mnli_local(root, split, lang) + snli_local(root, split, lang)


def anli_plus_hub(split: str, lang: str) -> list[dict]:
    return anli_hub(split, lang) + mnli_hub(split, lang) + snli_hub(split, lang)


# ---------------------------------------------------------------- SST-2 (intermediate)
SST2_LABELS = ("negative", "positive")


def sst2_local(root: Path, split: str, lang: str) -> list[dict]:
    # Offline SST-2 (alps copy): train.tsv + dev.tsv re-split GLUE train; test.tsv is GLUE dev (872),
    # the split everyone reports, so it is our dev split. GLUE's test has no labels: no test split.
    if split == "test":
        raise DataError("sst2 has no labelled test split (GLUE's is hidden); use its dev split")
    path = root / "sst2" / ("train.tsv" if split == "train" else "test.tsv")
    return [{"text_a": c[0].strip(), "label": SST2_LABELS[int(c[1])] if c[1] in ("0", "1") else
             _check_label(c[1], SST2_LABELS, f"{path}:{n}")} for n, c in read_tsv(path, 2, skip_header=True)]


def sst2_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": "train", "dev": "validation"}[split]
    return [{"text_a": r["sentence"], "label": SST2_LABELS[r["label"]]} for r in hub_split("stanfordnlp/sst2", None, hub)]


# ---------------------------------------------------------------- XNLI (target)
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")


def xnli_local(root: Path, split: str, lang: str) -> list[dict]:
    if split == "train":  # XNLI has no training set of its own: English MNLI, as in XTREME
        return mnli_local(root, "train", lang) + mnli_local(root, "dev", lang)
    folder = root / "xnli" / "xtreme"
    if split == "dev":
        path = folder / f"dev-{lang}.tsv"
        return [{"text_a": c[0], "text_b": c[1], "label": _check_label(c[2], NLI_LABELS, f"{path}:{n}")}
                for n, c in read_tsv(path, 3)]
    # XTREME strips test labels; XNLI test is the same items in every language, so the gold labels
    # are the label column of the labelled English test file, in line order.
    path = folder / f"test-{lang}.tsv"
    gold_path = root / "xnli" / "myxnli" / "en.genre.test.tsv"
    gold = [(n, c[1]) for n, c in read_tsv(gold_path, 2, skip_header=True)]
    rows = list(read_tsv(path, 2))
    if len(rows) != len(gold):
        raise DataError(f"{path}: {len(rows)} items but {gold_path} has {len(gold)} gold labels")
    return [{"text_a": c[0], "text_b": c[1], "label": _check_label(g, NLI_LABELS, f"{gold_path}:{gn}")}
            for (_, c), (gn, g) in zip(rows, gold)]


def xnli_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(p.stem[5:] for p in (root / "xnli" / "xtreme").glob("test-*.tsv")))


def xnli_hub(split: str, lang: str) -> list[dict]:
    if split == "train":
        return mnli_hub("train", "en")
    hub = {"dev": "validation", "test": "test"}[split]
    return [{"text_a": r["premise"], "text_b": r["hypothesis"], "label": NLI_LABELS[r["label"]]}
            for r in hub_split("facebook/xnli", lang, hub)]


# ---------------------------------------------------------------- UD-POS (target)
UD_LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
UD_EN_TRAIN_TREEBANKS = ("UD_English-LinES", "UD_English-ParTUT")  # EWT train is not offline


def _tagged(sentences: list[tuple[list[str], list[str]]], path: Path) -> list[dict]:
    for words, tags in sentences:
        for t in tags:
            _check_label(t, UPOS, str(path))
    return [{"words": w, "tags": t} for w, t in sentences]


def udpos_local(root: Path, split: str, lang: str) -> list[dict]:
    ud = root / "udpos"
    if split in ("train", "dev"):
        files = [ud / tb / f"en_{tb.split('-')[1].lower()}-ud-{split}.conllu" for tb in UD_EN_TRAIN_TREEBANKS]
    else:
        files = sorted(ud.glob(f"UD_*/{lang}_*-ud-test.conllu"))
        if not files:
            raise DataError(f"missing data file: {ud}/UD_*/{lang}_*-ud-test.conllu (no UD test set for '{lang}')")
    return [ex for f in files for ex in _tagged(read_conllu(f), f)]


def udpos_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted({p.name.split("_")[0] for p in (root / "udpos").glob("UD_*/*-ud-test.conllu")}))


def udpos_hub(split: str, lang: str) -> list[dict]:
    hub = {"train": "train", "dev": "validation", "test": "test"}[split]
    ds = hub_split("google/xtreme", f"udpos.{UD_LANGUAGE_NAMES[lang]}", hub)
    names = ds.features["pos_tags"].feature.names
    return [{"words": r["tokens"], "tags": [names[t] for t in r["pos_tags"]]} for r in ds]


# ---------------------------------------------------------------- Tatoeba (target, retrieval)
TATOEBA_CODES = {  # XTREME's 36 languages: ISO 639-1 -> the Tatoeba file code
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}


def tatoeba_local(root: Path, split: str, lang: str) -> list[dict]:
    code = TATOEBA_CODES[lang]
    src = root / "tatoeba" / f"tatoeba.{code}-eng.{code}"
    eng = root / "tatoeba" / f"tatoeba.{code}-eng.eng"
    a, b = read_lines(src), read_lines(require_file(eng))
    if len(a) != len(b):
        raise DataError(f"{src}: {len(a)} lines but {eng} has {len(b)}; the files must be line-aligned")
    return [{"source": s, "target": t} for s, t in zip(a, b)]


def tatoeba_languages(root: Path) -> tuple[str, ...]:
    return tuple(sorted(k for k, c in TATOEBA_CODES.items() if (root / "tatoeba" / f"tatoeba.{c}-eng.{c}").is_file()))


def tatoeba_hub(split: str, lang: str) -> list[dict]:
    ds = hub_split("google/xtreme", f"tatoeba.{TATOEBA_CODES[lang]}", "validation")
    return [{"source": r["source_sentence"], "target": r["target_sentence"]} for r in ds]


def _english_only(root: Path) -> tuple[str, ...]:
    return ("en",)


register(Task("anli", "classification", "intermediate", "accuracy",
              "ANLI R1-R3 (adversarial NLI, 3-way); offline: the R1-R3 dev sets split 90/10",
              anli_local, anli_hub, _english_only, ("en",), NLI_LABELS))
register(Task("snli", "classification", "intermediate", "accuracy",
              "SNLI (3-way); offline: the dev and test sets split 90/10",
              snli_local, snli_hub, _english_only, ("en",), NLI_LABELS))
register(Task("anli_plus", "classification", "intermediate", "accuracy",
              "ANLI+ of the paper: ANLI R1-R3 + MNLI + SNLI; offline: their dev/test sets split 90/10",
              anli_plus_local, anli_plus_hub, _english_only, ("en",), NLI_LABELS))
register(Task("sst2", "classification", "intermediate", "accuracy",
              "SST-2 sentiment (single sentences); offline: GLUE train (re-split) and GLUE dev",
              sst2_local, sst2_hub, _english_only, ("en",), SST2_LABELS))
register(Task("mnli", "classification", "intermediate", "accuracy",
              "MultiNLI (3-way); offline: dev_matched split 90/10",
              mnli_local, mnli_hub, _english_only, ("en",), NLI_LABELS))
register(Task("xnli", "classification", "target", "accuracy",
              "XNLI: trained on English MNLI, selected on English XNLI dev, tested zero-shot",
              xnli_local, xnli_hub, xnli_languages, XNLI_LANGS, NLI_LABELS))
register(Task("udpos", "tagging", "target", "f1",
              "UD-POS (UPOS tagging): English LinES+ParTUT train/dev offline (EWT online), UD tests",
              udpos_local, udpos_hub, udpos_languages, tuple(sorted(UD_LANGUAGE_NAMES)), UPOS))
register(Task("tatoeba", "retrieval", "target", "accuracy@1",
              "Tatoeba: X->English nearest-neighbour retrieval with pooled hidden states; no training",
              tatoeba_local, tatoeba_hub, tatoeba_languages, tuple(sorted(TATOEBA_CODES)), splits=("test",)))
