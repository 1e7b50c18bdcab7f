"""Batched inference: logits for a list of features, in their original order."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..device import autocast, get_device, mixed_precision, place, to_device
from ..tasks.collate import collate, feature_length
from ..tasks.families import MODEL_TARGETS


def predict_logits(model, features: list[dict], pad_id: int, batch_size: int, bf16: bool,
                   progress: str | None = None, compact=None) -> list[np.ndarray]:
    """Run the active head over `features` (length-sorted batches, dynamic padding); returns one
    array per feature: [labels] (classification), [choices] (multiple choice), or per token
    [length, labels] (tagging) / [length, 2] (extractive QA: start and end logits); `compact`
    reduces each batch's outputs first (masked LM keeps the argmax ids). Runs on this rank's device;
    `bf16`: the device's mixed precision (device.py)."""
    was_training = model.training
    device = get_device()
    place(model, device).eval()
    order = sorted(range(len(features)), key=lambda i: feature_length(features[i]))
    out: list[np.ndarray | None] = [None] * len(features)
    with torch.inference_mode(), autocast(device, mixed_precision(device, bf16)):
        for start in tqdm(range(0, len(order), batch_size), desc=progress, disable=progress is None, leave=False):
            idx = order[start: start + batch_size]
            batch = collate([features[i] for i in idx], pad_id)
            for key in MODEL_TARGETS:
                batch.pop(key, None)
            output = model(**to_device(batch, device))
            if hasattr(output, "start_logits"):  # extractive QA: [batch, tokens, 2] = (start, end)
                logits = torch.stack([output.start_logits, output.end_logits], -1)
            else:
                logits = output.logits
            if compact is not None:  # e.g. MLM: token ids instead of [len, vocab] logits
                logits = compact(logits)
            for row, i in zip(logits.float().cpu().numpy(), idx):
                out[i] = row[: len(features[i]["input_ids"])] if row.ndim == 2 else row
    model.train(was_training)
    return out  # type: ignore[return-value]
