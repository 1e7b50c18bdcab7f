"""Per-item outcomes of a zero-shot scoring: one row per test item (language, item id) with the
few numbers its task's metrics are sums of, so that any metric can be recomputed exactly on any
resample of the items (the paired bootstrap of evaluation/bootstrap.py):

- accuracy (XNLI, PAWS-X, XCOPA, Tatoeba): `correct` per item; the mean;
- SQuAD / MLQA EM and F1: per question; the means;
- seqeval span F1 (UD-POS, PAN-X): per sentence the spans that are right, predicted and gold
  (`tp`, `n_pred`, `n_gold`); F1 = 2 tp / (pred + gold) over the summed counts, which is seqeval's
  micro F1 since spans never cross sentences; token accuracy from `tok_correct` / `n_tokens`;
- BUCC F1 / precision / recall: per source sentence the mined pairs that are right, mined and gold;
- LAReQA / Mewsli-X mAP@20: per query its average precision at 20 (`ap`); the mean.

Each family declares its metrics as formulas over column sums (`Mean`, `Ratio`, `SpanF1`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..tasks.families import family_of
from ..tasks.item_metrics import RETRIEVAL_ITEM_METRICS, Formula

OUTCOMES_FILE = "outcomes.parquet"
OUTCOMES_ARTIFACT = "outcomes"  # the MLflow artifact folder of a target run that holds OUTCOMES_FILE




def task_formulas(task) -> dict[str, Formula]:
    """How `task`'s metrics are computed from its per-item columns."""
    if task.family == "retrieval":
        return RETRIEVAL_ITEM_METRICS[task.notes["retrieval"]]
    return family_of(task).item_metrics(task)


def item_ids(examples: list[dict]) -> list[str]:
    """An id per test item: its own id where it has one (QA), else a hash of its content, so two
    arms pair the same items even if a file is reordered; repeats get #2, #3, ..."""
    ids, seen = [], {}
    for e in examples:
        base = str(e["id"]) if "id" in e else hashlib.sha1(
            json.dumps(e, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()[:16]
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return ids


def language_file(folder: Path, task: str, lang: str) -> Path:
    return Path(folder) / task / f"outcomes-{lang}.parquet"


def write_language(folder: Path, task: str, lang: str, ids: list[str], stats: dict[str, list]) -> Path:
    import pandas as pd

    if any(len(v) != len(ids) for v in stats.values()):
        raise ValueError(f"{task} {lang}: per-item columns of unequal length")
    path = language_file(folder, task, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"language": lang, "item_id": ids, **stats}).to_parquet(path, index=False)
    return path


def read_languages(folder: Path, task: str, languages: list[str]) -> list:
    """These languages' outcome frames; their files are removed, so the predictions folder holds
    predictions only."""
    import pandas as pd

    frames = []
    for lang in languages:
        path = language_file(folder, task, lang)
        frames.append(pd.read_parquet(path))
        path.unlink()
    return frames


def write_outcomes(frames: list, out: Path) -> Path:
    """One file for the whole scoring (lists of frames, e.g. one list per rank), written atomically."""
    import pandas as pd

    flat = [f for part in frames for f in (part if isinstance(part, list) else [part])]
    frame = pd.concat(flat, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def metrics_from_sums(formulas: dict[str, Formula], sums: dict[str, np.ndarray], n) -> dict[str, np.ndarray]:
    return {name: f.value(sums, n) for name, f in formulas.items()}


def language_metrics(formulas: dict[str, Formula], frame) -> dict[str, dict[str, float]]:
    """{lang: {metric: value}} on the whole sample (what was logged)."""
    out = {}
    for lang, rows in frame.groupby("language", sort=True):
        sums = {c: rows[c].to_numpy(float).sum() for f in formulas.values() for c in f.columns()}
        out[str(lang)] = {m: float(v) for m, v in metrics_from_sums(formulas, sums, len(rows)).items()}
    return out
