"""Length-grouped global batches of example indices, split into per-rank micro-batches (padding
them into tensors is tasks/collate.py).

A global batch is formed once, identically on every rank (same seed), then cut into
world_size x accumulation micro-batches of equal size; rank r takes its share. So 1 rank and
2 ranks see the same examples per optimizer step, and the mean of equal-sized per-rank means is
the global mean: the loss matches across world sizes."""
from __future__ import annotations

import random


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
