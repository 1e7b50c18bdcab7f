"""A family's features as one model batch: dynamic padding (`collate`) and a feature's length in
tokens (`feature_length`, what length-grouped batching and inference sort by).

Layering: shared by training (the loop's micro-batches) and evaluation (batched inference), and
below both, so that neither imports the other for it."""
from __future__ import annotations

import torch

from .families import IGNORE, MODEL_TARGETS


def feature_length(feature: dict) -> int:
    """Tokens of one feature (all choices together for multiple choice)."""
    ids = feature["input_ids"]
    return sum(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids)


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch (dynamic padding). `input_ids` is one sequence per
    feature, or one per choice (multiple choice: a [batch, choices, width] tensor). Training
    targets (`MODEL_TARGETS`) go along; other feature keys are bookkeeping and stay behind."""
    seqs = [f["input_ids"] if f["input_ids"] and isinstance(f["input_ids"][0], list) else [f["input_ids"]]
            for f in features]
    width = max(len(s) for choices in seqs for s in choices)
    ids = torch.full((len(features), len(seqs[0]), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, choices in enumerate(seqs):
        for j, s in enumerate(choices):
            ids[i, j, : len(s)] = torch.tensor(s)
            mask[i, j, : len(s)] = 1
    if not isinstance(features[0]["input_ids"][0], list):
        ids, mask = ids[:, 0], mask[:, 0]
    batch = {"input_ids": ids, "attention_mask": mask}
    for key in MODEL_TARGETS:
        if key not in features[0]:
            continue
        if isinstance(features[0][key], list):  # per-token labels
            labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
            for i, f in enumerate(features):
                labels[i, : len(f[key])] = torch.tensor(f[key])
        else:
            labels = torch.tensor([f[key] for f in features], dtype=torch.long)
        batch[key] = labels
    return batch
