"""The offline converter: Q4_0 arithmetic, the cache's integrity check, and the real model."""
import shutil

import numpy as np
import pytest
import torch

from adapter_stilts.models import me5_small
from adapter_stilts.models.me5_small import _manifest_ok, dequantize_q4_0


def test_q4_0_block_layout():
    scale = np.float16(0.5)
    nibbles = np.arange(16, dtype=np.uint8)  # low nibbles 0..15, high nibbles 15..0
    packed = (nibbles | ((15 - nibbles) << 4)).astype(np.uint8)
    raw = scale.tobytes() + packed.tobytes()
    out = dequantize_q4_0(raw, 32)
    assert out[:16].tolist() == [(n - 8) * 0.5 for n in range(16)]
    assert out[16:].tolist() == [(15 - n - 8) * 0.5 for n in range(16)]


def test_cache_detects_stale_or_partial_files(me5_dir, tmp_path):
    copy = tmp_path / "me5-small"
    shutil.copytree(me5_dir, copy)
    assert _manifest_ok(copy)
    with open(copy / "config.json", "a") as f:
        f.write(" ")
    assert not _manifest_ok(copy)
    shutil.copytree(me5_dir, tmp_path / "b")
    (tmp_path / "b" / "tokenizer_config.json").unlink()
    assert not _manifest_ok(tmp_path / "b")


def test_damaged_cache_is_rebuilt(me5_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(me5_dir, cache / "me5-small")
    shutil.copytree(me5_dir.parent / "archives", cache / "archives")
    (cache / "me5-small" / "config.json").write_text("{}")
    folder = me5_small.ensure_me5_small(cache)
    assert _manifest_ok(folder)
    assert (folder / "config.json").read_text() == (me5_dir / "config.json").read_text()


@pytest.mark.integration
def test_converted_model_retrieves_translations(me5_dir, data_dir):
    """Mean-pooled embeddings of real Tatoeba pairs find their partner far above chance (1/200)."""
    from adapter_stilts.evaluation.embedding import embed_sentences
    from adapter_stilts.models.loading import build_model, load_tokenizer
    from adapter_stilts.tasks.lookup import get_task

    model, tok = build_model(str(me5_dir), 0.0), load_tokenizer(str(me5_dir))
    for lang in ("de", "zh", "sw"):
        pairs = get_task("tatoeba").load_local(data_dir, "test", lang)[:200]
        src = embed_sentences(model, tok, [p["source"] for p in pairs], 12, "mean", 64, 128, False)
        tgt = embed_sentences(model, tok, [p["target"] for p in pairs], 12, "mean", 64, 128, False)
        acc = float(((src @ tgt.T).argmax(1) == torch.arange(200)).float().mean())
        assert acc > 0.5, (lang, acc)
