"""`mlm`: the multilingual text for continued masked-LM training mixed into the intermediate
phase (the paper's MLM baseline). Examples: {text, lang}.

Offline the text is the non-English sides of the XNLI and PAWS-X *dev* files (premises,
hypotheses and sentence pairs, deduplicated): real multilingual sentences that no experiment
scores on (model selection uses English dev only), never a test file. Online: the non-English
XNLI validation sets from the Hub. A fixed every-10th holdout is the dev split (MLM accuracy)."""
from __future__ import annotations

from pathlib import Path

from ..readers import DataError
from ..registry import Task, register
from .common import english_only, holdout
from .nli import XNLI_LANGS, xnli_hub, xnli_local
from .sentence import pawsx_labelled_file


def _sentences(pairs: list[dict], lang: str) -> list[dict]:
    return [{"text": t, "lang": lang} for e in pairs for t in (e["text_a"], e.get("text_b")) if t]


def _dedup(examples: list[dict]) -> list[dict]:
    seen: set[str] = set()
    return [e for e in examples if not (e["text"] in seen or seen.add(e["text"]))]


def mlm_local(root: Path, split: str, lang: str) -> list[dict]:
    text: list[dict] = []
    for code in sorted(p.stem[4:] for p in (root / "xnli" / "xtreme").glob("dev-*.tsv")):
        if code != "en":
            text += _sentences(xnli_local(root, "dev", code), code)
    for path in sorted((root / "pawsx" / "xtreme").glob("dev-*.tsv")):
        if path.stem[4:] != "en":
            text += _sentences(pawsx_labelled_file(path), path.stem[4:])
    if not text:
        raise DataError(f"mlm: no non-English XNLI or PAWS-X dev files under {root}")
    return holdout(_dedup(text), split)


def mlm_hub(split: str, lang: str) -> list[dict]:
    text = [s for code in XNLI_LANGS if code != "en" for s in _sentences(xnli_hub("dev", code), code)]
    return holdout(_dedup(text), split)


register(Task("mlm", "masked_lm", "intermediate", "accuracy",
              "continued multilingual masked-LM (the paper's MLM baseline); offline text: the non-English sides "
              "of the XNLI and PAWS-X dev files (never test files), split 90/10",
              mlm_local, mlm_hub, english_only, ("en",), splits=("train", "dev")))
