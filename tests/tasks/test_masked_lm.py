import numpy as np
import pytest
import torch

from adapter_stilts.tasks.families import IGNORE, family_of
from adapter_stilts.tasks.lookup import get_task


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from adapter_stilts.models.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def test_mlm_text_is_the_non_english_dev_sides_never_test(data_dir):
    task = get_task("mlm")
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    assert len(train) > 50_000 and len(dev) == pytest.approx(len(train) / 9, rel=0.01)
    assert "en" not in {e["lang"] for e in train} and {"sw", "zh", "ko"} <= {e["lang"] for e in train}
    test_sentences = {line.split("\t")[0] for line in (data_dir / "xnli/xtreme/test-de.tsv").read_text().splitlines()}
    assert not test_sentences & {e["text"] for e in train + dev}


def test_masking_follows_bert_and_is_fixed(data_dir, tokenizer):
    fam, task = family_of(get_task("mlm")), get_task("mlm")
    examples = get_task("mlm").load_local(data_dir, "dev", "en")[:400]
    feats = fam.featurize(task, examples, tokenizer, 64)
    assert feats == fam.featurize(task, examples, tokenizer, 64)  # static masks
    plain = tokenizer([e["text"] for e in examples], truncation=True, max_length=64)["input_ids"]
    masked = kept = replaced = total = 0
    for f, ids in zip(feats, plain):
        assert len(f["input_ids"]) == len(ids) == len(f["labels"])
        for p, lab in enumerate(f["labels"]):
            if lab == IGNORE:
                assert f["input_ids"][p] == ids[p]  # only chosen positions change
                continue
            assert lab == ids[p] and ids[p] not in tokenizer.all_special_ids
            masked += f["input_ids"][p] == tokenizer.mask_token_id
            kept += f["input_ids"][p] == ids[p]
            replaced += f["input_ids"][p] not in (ids[p], tokenizer.mask_token_id)
        total += len(ids) - 2
    n = masked + kept + replaced
    assert 0.13 < n / total < 0.17
    assert 0.75 < masked / n < 0.85 and 0.06 < kept / n < 0.14 and 0.06 < replaced / n < 0.14


def test_decode_scores_only_the_masked_positions():
    fam, task = family_of(get_task("mlm")), get_task("mlm")
    feats = [{"input_ids": [0, 9, 9, 2], "labels": [IGNORE, 5, 7, IGNORE]}]
    logits = torch.full((1, 4, 10), -1.0)
    logits[0, 1, 5] = logits[0, 2, 3] = 1.0
    ids = fam.compact_outputs(logits)
    assert ids.shape == (1, 4)
    preds = fam.decode(task, [np.asarray(ids[0])], feats, [{}])
    assert preds == [[(5, 5), (3, 7)]] and fam.score(task, preds, [{}], "xx") == {"accuracy": 0.5}
