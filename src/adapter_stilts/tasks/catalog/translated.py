"""Intermediate tasks on translated training data (the paper's translate-train baseline): an English
task's training data plus the same kind of data in other languages, `train_size` examples per
language (`intermediate.tasks.<task>.languages` names them), selected on the English dev split.
Registered beside the English task, so one experiment runs both (the English-only twin and the
translated setup, on the same English examples). Examples as the English task's.

mnli_translated: MNLI and its translations into XNLI's languages.
- Online: MNLI's training set and XTREME's published machine translations of it,
  xtreme_translations/XNLI/translate-train/en-<lang>-translated.tsv on Google Cloud Storage (the
  files TFDS's xtreme_xnli reads; no Hugging Face Hub dataset holds them), read with the datasets
  library's csv builder. Not run here (no network).
- Local (documented layout): the same files in <local_dir>/xnli/translate-train/ when present;
  otherwise XNLI's dev file in that language, xnli/xtreme/dev-<lang>.tsv. Only the latter exist
  offline: PROFESSIONAL (human) translations of XNLI's English dev pairs, written on new premises
  from MNLI's ten source genres. Trained on them, the xnli target is not zero-shot in those
  languages: it is translate-train on the target's own domain. Its test items are other items
  (no dev pair is a test pair, tests/tasks/test_translated.py); its English dev file, which selects
  the xnli target's checkpoint, holds the English originals of the same dev items.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..readers import read_tsv
from ..registry import Task, register
from .common import check_label, hub_split
from .nli import NLI_LABELS, XNLI_LANGS, mnli_hub, mnli_local, xnli_local

log = logging.getLogger(__name__)

XTREME_XNLI_TRANSLATIONS = ("https://storage.googleapis.com/xtreme_translations/XNLI/translate-train/"
                            "en-{lang}-translated.tsv")
# XTREME's translate-train TSV (as TFDS's xtreme_xnli reads it): the English pair, its translation,
# the label ("contradictory" for contradiction)
XTREME_COLUMNS = ("premise_en", "hypothesis_en", "premise", "hypothesis", "label")


def _xtreme_label(label: str, where: str) -> str:
    return check_label("contradiction" if label == "contradictory" else label, NLI_LABELS, where)


def xtreme_translations_file(path: Path) -> list[dict]:
    return [{"text_a": c[2], "text_b": c[3], "label": _xtreme_label(c[4], f"{path}:{n}")}
            for n, c in read_tsv(path, len(XTREME_COLUMNS))]


MT_SUFFIX = "-translated.tsv"  # <local_dir>/xnli/translate-train/en-<lang>-translated.tsv, as XTREME publishes them


def mt_path(root: Path, lang: str) -> Path:
    return root / "xnli" / "translate-train" / f"en-{lang}{MT_SUFFIX}"


def mnli_translated_local(root: Path, split: str, lang: str) -> list[dict]:
    if split != "train" or lang == "en":
        return mnli_local(root, split, lang)
    if mt_path(root, lang).is_file():
        log.info("mnli_translated: %s from XTREME's machine translations of MNLI, %s", lang, mt_path(root, lang))
        return xtreme_translations_file(mt_path(root, lang))
    log.info("mnli_translated: %s from XNLI's human-translated dev file (translate-train on xnli's own domain: "
             "not zero-shot for xnli in %s)", lang, lang)
    return xnli_local(root, "dev", lang)


def mnli_translated_languages(root: Path) -> tuple[str, ...]:
    machine = {p.name[len("en-"):-len(MT_SUFFIX)] for p in mt_path(root, "en").parent.glob(f"en-*{MT_SUFFIX}")}
    human = {p.stem[4:] for p in (root / "xnli" / "xtreme").glob("dev-*.tsv")}
    return tuple(sorted({"en"} | machine | human))


def mnli_translated_hub(split: str, lang: str) -> list[dict]:
    if split != "train" or lang == "en":
        return mnli_hub(split, lang)
    url = XTREME_XNLI_TRANSLATIONS.format(lang=lang)
    rows = hub_split("csv", None, "train", data_files=url, delimiter="\t", column_names=list(XTREME_COLUMNS),
                     quoting=csv.QUOTE_NONE, keep_default_na=False)
    return [{"text_a": r["premise"], "text_b": r["hypothesis"], "label": _xtreme_label(r["label"], f"{url}:{i + 1}")}
            for i, r in enumerate(rows)]


register(Task("mnli_translated", "classification", "intermediate", "accuracy",
              "MNLI + its translations (translate-train), train_size per language, English dev. Online: XTREME's "
              "machine translations of MNLI train. Local: those files as xnli/translate-train/en-<lang>-translated.tsv "
              "when present, else XNLI's human-translated dev files xnli/xtreme/dev-<lang>.tsv (the only ones here): "
              "translate-train on xnli's own domain, so xnli is not zero-shot in those languages",
              mnli_translated_local, mnli_translated_hub, mnli_translated_languages, XNLI_LANGS, NLI_LABELS,
              splits=("train", "dev")))
