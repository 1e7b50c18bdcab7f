"""Sequence packing: the packed forward equals the padded one, for every head kind, in outputs and
gradients; rows respect their size; configs with per-row parts are refused; a training run with
packing logs the same losses as one without."""
import pytest
import torch
from conftest import mlflow_runs, run_cli


def _model(tiny_model_dir, attention="eager"):
    from adapter_stilts.models.loading import build_model

    model = build_model(str(tiny_model_dir), 0.0, attention)
    model.add_adapter("a", config="seq_bn")
    model.train_adapter("a")
    return model


def _batch(tok, texts, pairs=None):
    return tok(texts, pairs, padding=True, return_tensors="pt")


TEXTS = ["hello world", "a much longer sentence, with many more words in it than the others here", "x",
         "Das ist ein Satz.", "zwei", "the quick brown fox jumps over the lazy dog again and again"]


def _outputs_and_grads(model, batch, labels, packed, pad_id, row_tokens):
    from adapter_stilts.models.packing import packed_encoder

    model.zero_grad(set_to_none=True)
    ctx = packed_encoder(model, pad_id, row_tokens) if packed else torch.enable_grad()
    with ctx:
        out = model(**batch, **labels)
    out.loss.backward()
    logits = out.start_logits if hasattr(out, "start_logits") else out.logits
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("head", ["cls", "mean", "tagging", "multiple_choice", "qa"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_forward_and_gradients_equal_the_padded_ones(tiny_model_dir, head, attention):
    from adapter_stilts.models.loading import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    model = _model(tiny_model_dir, attention)
    torch.manual_seed(0)
    if head == "cls":
        model.add_classification_head("h", num_labels=3)
    elif head == "mean":
        from adapter_stilts.models.heads import MEAN_POOLED

        model.add_custom_head(MEAN_POOLED, "h", num_labels=3)
    elif head == "tagging":
        model.add_tagging_head("h", num_labels=5)
    elif head == "multiple_choice":
        model.add_multiple_choice_head("h", num_choices=3)
    else:
        model.add_qa_head("h")
    model.active_head = "h"
    model.train_adapter("a")
    if head == "multiple_choice":
        enc = _batch(tok, TEXTS, list(reversed(TEXTS)))
        batch = {k: v.view(2, 3, -1) for k, v in enc.items()}
        labels = {"labels": torch.tensor([0, 2])}
        mask = None
    else:
        batch = dict(_batch(tok, TEXTS))
        mask = batch["attention_mask"].bool()
        if head == "tagging":
            labels = {"labels": torch.where(mask, torch.arange(mask.shape[1]) % 5, -100)}
        elif head == "qa":
            labels = {"start_positions": torch.tensor([1, 2, 0, 1, 1, 3]),
                      "end_positions": torch.tensor([1, 5, 1, 2, 1, 4])}
        else:
            labels = {"labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    for row_tokens in (1, 24, 4096):  # one sequence per row, a few per row, all in one row
        ref, ref_grads = _outputs_and_grads(model, batch, labels, False, tok.pad_token_id, row_tokens)
        got, got_grads = _outputs_and_grads(model, batch, labels, True, tok.pad_token_id, row_tokens)
        if mask is not None and ref.dim() == 3 or head == "qa":  # per-token outputs: padding positions are not compared
            ref, got = ref[mask], got[mask]
        torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)
        if head == "qa":
            # the QA head's softmax spans the padded width: padding positions carry the pad
            # token's states unpacked and zeros packed, so only real-token outputs are equal
            continue
        assert ref_grads.keys() == got_grads.keys() and ref_grads
        for name in ref_grads:
            torch.testing.assert_close(got_grads[name], ref_grads[name], atol=2e-5, rtol=1e-4, msg=name)


def test_rows_hold_whole_sequences_within_their_size():
    from adapter_stilts.models.packing import PackedBatch

    torch.manual_seed(1)
    lengths = torch.tensor([5, 17, 3, 9, 30, 1, 12, 8])
    width = int(lengths.max())
    mask = (torch.arange(width) < lengths[:, None]).long()
    ids = torch.where(mask.bool(), torch.randint(5, 100, (8, width)), 1)
    packed = PackedBatch(ids, mask, position_offset=2, row_tokens=32, pad_id=1)
    assert packed.real_tokens == int(lengths.sum())
    rows_used = (packed.input_ids != 1).sum(1)
    assert int(rows_used.max()) <= 32 and packed.input_ids.shape[0] < 8  # several sequences share rows
    # round trip: unpacking the packed ids gives the padded ids back at every real token
    back = packed.unpack(packed.input_ids.unsqueeze(-1).float()).squeeze(-1).long()
    assert torch.equal(back[mask.bool()], ids[mask.bool()])
    # positions restart at the offset for each sequence; attention never crosses sequences
    assert int(packed.position_ids[packed.input_ids != 1].min()) == 2
    assert int(packed.position_ids.max()) == 2 + 30 - 1
    for r in range(packed.input_ids.shape[0]):
        blocks = packed.attention_mask[r]
        assert torch.equal(blocks, blocks.T)
        assert int(blocks.sum()) == int(sum(n * n for n in _segments(packed.position_ids[r], packed.input_ids[r] != 1)))


def _segments(positions, real):
    out, n = [], 0
    for p, keep in zip(positions.tolist(), real.tolist()):
        if not keep:
            continue
        if p == 2 and n:
            out.append(n)
            n = 0
        n += 1
    return out + ([n] if n else [])


def test_configs_with_per_row_parts_are_not_packed():
    from adapters import AdapterConfig

    from adapter_stilts.models.packing import supports_packing

    assert supports_packing(AdapterConfig.load("seq_bn")) and supports_packing(AdapterConfig.load("lora"))
    assert supports_packing(None)  # full fine-tuning
    assert not supports_packing(AdapterConfig.load("prefix_tuning"))
    assert not supports_packing(AdapterConfig.load("mam"))  # a union with prefix tuning


@pytest.mark.parametrize("zero", ["zero0", "zero3"])  # ZeRO-3's parameter hooks run beside ours
def test_training_with_packing_logs_the_losses_of_training_without(write_experiment, tmp_path, zero):
    losses = {}
    for packing in (True, False):
        exp = write_experiment({"baseline": False, "training": {"packing": packing, "deepspeed": zero},
                                "target": {"tasks": {"xnli": {"train_size": 16, "dev_size": 8, "test_size": 4,
                                                              "languages": ["de"]}}},
                                "tracking": {"cache": False}}, name=f"p{packing}.yaml")
        proc = run_cli(["--exp", str(exp)], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        client, runs = mlflow_runs(tmp_path)
        run = max((r for r in runs if r.data.tags.get("phase") == "intermediate"), key=lambda r: r.info.start_time)
        losses[packing] = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"),
                                                   key=lambda m: m.step)]
    assert len(losses[True]) == 4  # 32 examples, batch 8, a loss every step
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)
