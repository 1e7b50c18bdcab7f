"""Sentence embeddings with the tiny model: only the layers up to the pooled one run."""
import pytest
import torch

from adapter_stilts.evaluation.embedding import embed_sentences


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from adapter_stilts.models.loading import build_model, load_tokenizer

    return build_model(str(tiny_model_dir), 0.0), load_tokenizer(str(tiny_model_dir))


def test_embedding_a_lower_layer_skips_the_layers_above_without_changing_it(tiny):
    model, tok = tiny
    sentences = ["Das ist ein Test.", "A longer English sentence with more tokens in it.", "短い"]
    calls = []
    hook = model.base_model.encoder.layer[1].register_forward_hook(lambda *a: calls.append(1))
    got = embed_sentences(model, tok, sentences, 1, "mean", 2, 32, False)
    assert not calls  # layer 2 of 2 never ran
    hook.remove()
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.inference_mode():  # reference: the full forward, hidden_states[1]
        hidden = model.base_model(**enc, output_hidden_states=True).hidden_states[1]
    mask = enc["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(got, want, atol=1e-5)
    assert len(model.base_model.encoder.layer) == 2  # the model is whole again afterwards
