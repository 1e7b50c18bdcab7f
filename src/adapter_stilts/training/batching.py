"""Length-grouped global batches, split into per-rank micro-batches, padded dynamically.

A global batch is formed once, identically on every rank (same seed), then cut into
world_size x accumulation micro-batches of equal size; rank r takes its share. So 1 rank and
2 ranks see the same examples per optimizer step, and the mean of equal-sized per-rank means is
the global mean: the loss matches across world sizes."""
from __future__ import annotations

import random

import torch


def global_batches(lengths: list[int], batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Shuffle, sort by length inside mega-chunks of 50 batches (as HF's LengthGroupedSampler),
    cut into batches, shuffle the batch order. The last incomplete batch is dropped."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        order = [i for s in range(0, len(order), mega)
                 for i in sorted(order[s: s + mega], key=lambda i: -lengths[i])]
    batches = [order[s: s + batch_size] for s in range(0, len(order) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(batch: list[int], rank: int, world: int, accumulation: int) -> list[list[int]]:
    """This rank's micro-batches of one global batch (equal sizes by construction)."""
    n = world * accumulation
    size = len(batch) // n
    parts = [batch[i * size: (i + 1) * size] for i in range(n)]
    return parts[rank * accumulation: (rank + 1) * accumulation]


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch (dynamic padding)."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if features and "labels" in features[0]:
        first = features[0]["labels"]
        if isinstance(first, list):
            labels = torch.full((len(features), width), -100, dtype=torch.long)
            for i, f in enumerate(features):
                labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        else:
            labels = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        batch["labels"] = labels
    return batch
