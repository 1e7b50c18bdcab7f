"""model.layers: a saved copy of a model with its first L layers, the offline stand-in for size."""
from __future__ import annotations

import pytest
import torch

from adapter_stilts.models.loading import ModelError, model_layers, truncated_model


def test_truncation_keeps_the_first_layers_and_is_built_once(tiny_model_dir, tmp_path):
    from transformers import AutoModel

    path = truncated_model(str(tiny_model_dir), 1, cache=tmp_path)
    assert model_layers(path) == 1 and path != str(tiny_model_dir)
    full, cut = AutoModel.from_pretrained(tiny_model_dir), AutoModel.from_pretrained(path)
    for name, weight in cut.state_dict().items():
        assert torch.equal(weight, full.state_dict()[name]), name  # embeddings and layer 0 as they were
    assert not any(".layer.1." in n for n in cut.state_dict())
    stamp = (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime_ns
    assert truncated_model(str(tiny_model_dir), 1, cache=tmp_path) == path  # reused, not rebuilt
    assert (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime_ns == stamp
    assert truncated_model(str(tiny_model_dir), 2, cache=tmp_path) == str(tiny_model_dir)  # all layers: the model


@pytest.mark.parametrize("layers", [3, -1])
def test_more_layers_than_the_model_has_is_a_clear_error(tiny_model_dir, tmp_path, layers):
    with pytest.raises(ModelError, match=f"model.layers={layers}: .* has 2 layers; use 1..2"):
        truncated_model(str(tiny_model_dir), layers, cache=tmp_path)
