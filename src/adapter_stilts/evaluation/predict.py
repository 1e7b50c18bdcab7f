"""Batched inference: logits for a list of features, in their original order."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..training.batching import collate


def predict_logits(model, features: list[dict], pad_id: int, batch_size: int, bf16: bool,
                   progress: str | None = None) -> list[np.ndarray]:
    """Run the active head over `features` (length-sorted batches, dynamic padding); returns
    one logits array per feature (per-token arrays are cut to the feature's length)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: list[np.ndarray | None] = [None] * len(features)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in tqdm(range(0, len(order), batch_size), desc=progress, disable=progress is None, leave=False):
            idx = order[start: start + batch_size]
            batch = collate([features[i] for i in idx], pad_id)
            batch.pop("labels", None)
            logits = model(**batch).logits.float().numpy()
            for row, i in zip(logits, idx):
                out[i] = row[: len(features[i]["input_ids"])] if row.ndim == 2 else row
    model.train(was_training)
    return out  # type: ignore[return-value]
