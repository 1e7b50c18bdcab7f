"""Sentence embeddings: pooled hidden states of one layer, no trained head (what retrieval scores).
Beside predict.py, which gives a head's logits."""
from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm

from ..device import autocast, get_device, mixed_precision, place, to_device


@contextlib.contextmanager
def _first_layers(encoder_model, layer: int):
    """Run only the layers up to `layer`: the ones above cannot change hidden_states[layer], and
    skipping them saves e.g. 10 of XLM-R large's 24 layers at the paper's retrieval layer 14."""
    encoder = getattr(encoder_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not 0 < layer < len(layers):
        yield
        return
    encoder.layer = layers[:layer]
    try:
        yield
    finally:
        encoder.layer = layers


def embed_sentences(model, tokenizer, sentences: list[str], layer: int, pooling: str, batch_size: int,
                    max_length: int, bf16: bool, progress: bool = False) -> torch.Tensor:
    """L2-normalised pooled hidden states of one layer (hidden_states[0] = embedding output),
    computed on this rank's device and returned on the CPU (for faiss)."""
    device = get_device()
    place(model, device).eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = torch.empty(len(sentences), model.config.hidden_size)
    with torch.inference_mode(), autocast(device, mixed_precision(device, bf16)), \
            _first_layers(model.base_model, layer):
        for start in tqdm(range(0, len(order), batch_size), disable=not progress, leave=False, desc="embed"):
            idx = order[start: start + batch_size]
            enc = tokenizer([sentences[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            enc = to_device(enc, device)
            hidden = model.base_model(**enc, output_hidden_states=True).hidden_states[layer].float()
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).cpu()
    return out
