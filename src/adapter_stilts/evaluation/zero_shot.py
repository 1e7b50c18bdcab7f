"""Zero-shot scoring in every test language, with per-language prediction files
(XTREME layout: `<task>/test-<lang>.tsv`, one prediction per input line) and per-item outcomes
(`<task>/outcomes-<lang>.parquet`, evaluation/outcomes.py)."""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from .. import distributed as dist
from ..tasks.families import family_of, write_lines
from ..tasks.registry import Task
from .outcomes import item_ids, write_language
from .predict import predict_logits


def zero_shot_eval(model, task: Task, tests: dict[str, tuple[list[dict], list[dict]]], pad_id: int, bf16: bool,
                   pred_dir: Path, batch_size: int = 64,
                   positions: dict[str, list[int]] | None = None) -> dict[str, dict[str, float]]:
    """Score a trained model on each language's (features, examples); returns {lang: {metric: v}}.
    Predictions are written in XTREME's layout; where a language's test set is a subset, a sidecar
    `test-<lang>.positions` gives each prediction's position in the whole test split."""
    family = family_of(task)
    results = {}
    # zero-shot scoring of a target task takes minutes on a CPU (15 XNLI languages, fusion layers)
    bar = tqdm(tests.items(), desc=f"zero-shot {task.name}", unit="lang", leave=False, disable=not dist.is_main())
    for lang, (features, examples) in bar:
        bar.set_postfix_str(f"{lang}: {len(features)} inputs")
        outputs = predict_logits(model, features, pad_id, batch_size, bf16)
        preds = family.decode(task, outputs, features, examples)
        written = family.write_predictions(pred_dir, task, lang, preds, examples)
        if positions and lang in positions:
            write_lines(written.with_name(f"test-{lang}.positions"), [str(i) for i in positions[lang]])
        results[lang] = family.score(task, preds, examples, lang)
        write_language(pred_dir, task.name, lang, item_ids(examples), family.item_stats(task, preds, examples, lang))
    return results
