"""Multiple-choice tasks: the real offline files, featurization, the heads (first-token and
mean-pooled) through the tiny model, decoding, scoring and the XTREME prediction layout."""
import bz2
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from adapter_stilts.models.heads import MEAN_POOLED_MC, MeanPooledMultipleChoiceHead
from adapter_stilts.models.loading import build_model, load_tokenizer
from adapter_stilts.tasks.catalog.multiple_choice import hellaswag_clean
from adapter_stilts.tasks.collate import collate
from adapter_stilts.tasks.families import family_of
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError
from adapter_stilts.tasks.registry import Task

MC_TASKS = {"hellaswag": 4, "cosmosqa": 4, "commonsenseqa": 5, "siqa": 3, "xcopa": 2}
FAM = family_of(get_task("xcopa"))


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


# ---------------------------------------------------------------- loaders on the real files
@pytest.mark.parametrize("name,n_train,n_dev", [
    ("hellaswag", 9037, 1005), ("cosmosqa", 2686, 299), ("commonsenseqa", 1098, 123), ("siqa", 3760, 418),
    ("xcopa", 400, 100)])
def test_train_dev_counts_choices_and_labels(data_dir, name, n_train, n_dev):
    task = get_task(name)
    n = MC_TASKS[name]
    assert task.family == "multiple_choice" and task.notes["choices"] == n and task.metric == "accuracy"
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    assert (len(train), len(dev)) == (n_train, n_dev)
    for e in train + dev:
        assert len(e["choices"]) == n and all(c for c in e["choices"]) and 0 <= e["label"] < n
    # every answer position is used: the labels are not all one index (a parse error would do that)
    assert len(Counter(e["label"] for e in train)) == n
    # the splits are disjoint (COPA's idx restarts per file: compare the items themselves)
    assert not {(e["id"], e["context"]) for e in train} & {(e["id"], e["context"]) for e in dev}


def test_hellaswag_first_item_and_context_is_the_partial_sentence(data_dir):
    dev = get_task("hellaswag").load_local(data_dir, "dev", "en")
    assert dev[0]["context"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert dev[0]["label"] == 3 and dev[0]["choices"][3] == "starts pulling up roofing on a roof."
    train = get_task("hellaswag").load_local(data_dir, "train", "en")
    assert train[0]["context"].startswith("Clean and jerk:") and train[0]["label"] == 3


def test_commonsenseqa_and_siqa_first_items(data_dir):
    csqa = get_task("commonsenseqa").load_local(data_dir, "dev", "en")[0]
    assert csqa["question"].startswith("A revolving door is convenient") and csqa["choices"][csqa["label"]] == "bank"
    siqa = get_task("siqa").load_local(data_dir, "dev", "en")[0]
    assert (siqa["context"].startswith("Tracy didn't go home")
            and siqa["choices"][siqa["label"]] == "Find somewhere to go")


def test_xcopa_train_is_english_copa_and_tests_are_labelled(data_dir):
    task = get_task("xcopa")
    first = task.load_local(data_dir, "train", "en")[0]
    assert first["context"] == "My body cast a shadow over the grass." and first["question"] == "What was the cause?"
    assert first["choices"] == ["The sun was rising.", "The grass was cut."] and first["label"] == 0
    langs = task.local_languages(data_dir)
    assert langs == ("et", "id", "it", "sw", "ta", "th", "tr", "vi", "zh")
    assert set(langs) < set(task.languages) and len(task.languages) == 11
    tests = {lang: task.load_local(data_dir, "test", lang) for lang in langs}
    for lang, ex in tests.items():
        assert len(ex) == 500 and Counter(e["label"] for e in ex) == {0: 250, 1: 250}, lang
    # XCOPA test is the same 500 items in every language, with the same gold answers
    assert all([e["label"] for e in ex] == [e["label"] for e in tests["et"]] for ex in tests.values())
    assert tests["et"][2]["choices"][tests["et"][2]["label"]] == "Termiidid sõid läbi majas oleva puidu."


def test_intermediate_tasks_have_no_test_split(data_dir):
    with pytest.raises(DataError, match="siqa has no labelled test split"):
        get_task("siqa").load_local(data_dir, "test", "en")


def _write_hellaswag(path, items):
    path.parent.mkdir(parents=True)
    path.write_bytes(bz2.compress("".join(f"{line}\n" for item in items for line in item).encode()))


def test_hellaswag_bad_label_names_file_and_line(tmp_path):
    good = ["A: ctx", "0", "a", "b", "c", "d"]
    _write_hellaswag(tmp_path / "hellaswag" / "hellaswag_val_full.txt.bz2", [good, ["B: ctx", "x", "a", "b", "c", "d"]])
    with pytest.raises(DataError, match=r"hellaswag_val_full.txt.bz2:8: label 'x' is not a choice index"):
        get_task("hellaswag").load_local(tmp_path, "train", "en")


def test_hellaswag_incomplete_item_names_line(tmp_path):
    _write_hellaswag(tmp_path / "hellaswag" / "hellaswag_val_full.txt.bz2", [["A: ctx", "0", "a", "b", "c", "d"],
                                                                             ["B: ctx", "1", "a"]])
    with pytest.raises(DataError, match=r"hellaswag_val_full.txt.bz2:7: incomplete item"):
        get_task("hellaswag").load_local(tmp_path, "dev", "en")


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


COPA_ROW = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0, "idx": 0}


@pytest.mark.parametrize("bad,message", [
    ({"question": "why"}, r"test.xx.jsonl:2: question 'why' is not 'cause' or 'effect'"),
    ({"label": 2}, r"test.xx.jsonl:2: label 2 is not a choice index in 0..1"),
    ({"label": None}, r"test.xx.jsonl:2: label None"),
    ({"choice2": None}, r"test.xx.jsonl:2: missing field 'choice2'"),
])
def test_xcopa_bad_line_names_file_and_line(tmp_path, bad, message):
    _write_jsonl(tmp_path / "xcopa" / "test.xx.jsonl", [COPA_ROW, {**COPA_ROW, **bad}])
    assert get_task("xcopa").local_languages(tmp_path) == ("xx",)
    with pytest.raises(DataError, match=message):
        get_task("xcopa").load_local(tmp_path, "test", "xx")


def test_commonsenseqa_and_siqa_bad_keys_name_file_and_line(tmp_path):
    row = {"id": "q", "question": "?", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "F"}
    _write_jsonl(tmp_path / "commonsenseqa" / "dev_rand_split.jsonl", [row])
    with pytest.raises(DataError, match=r"dev_rand_split.jsonl:1: answerKey 'F'"):
        get_task("commonsenseqa").load_local(tmp_path, "train", "en")
    siqa = {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c", "correct": "D"}
    _write_jsonl(tmp_path / "siqa" / "socialIQa_v1.4_dev.jsonl", [siqa])
    with pytest.raises(DataError, match=r"socialIQa_v1.4_dev.jsonl:1: 'correct' 'D'"):
        get_task("siqa").load_local(tmp_path, "train", "en")


def test_cosmosqa_bad_label_names_file_and_line(tmp_path):
    (tmp_path / "cosmosqa").mkdir()
    (tmp_path / "cosmosqa" / "valid.csv").write_text(
        "id,context,question,answer0,answer1,answer2,answer3,label\na,c,q,w,x,y,z,1\nb,c,q,w,x,y,z,7\n")
    with pytest.raises(DataError, match=r"valid.csv:3: label 7 is not a choice index in 0..3"):
        get_task("cosmosqa").load_local(tmp_path, "train", "en")


def test_hub_loader_offline_gives_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load Hub dataset 'cambridgeltl/xcopa'.*offline"):
        get_task("xcopa").load_hub("test", "et")


def test_hellaswag_hub_text_is_cleaned_like_the_offline_file():
    assert hellaswag_clean("[header] How to tie a tie [title] Cross the ends. [step] Pull  it.") == \
        "How to tie a tie. Cross the ends. Pull it."


# ---------------------------------------------------------------- featurize
def test_featurize_pairs_each_choice_with_context_and_question(data_dir, tok):
    task = get_task("xcopa")
    examples = task.load_local(data_dir, "test", "et")[:3]
    feats = FAM.featurize(task, examples, tok, 64)
    assert len(feats) == 3 and [f["labels"] for f in feats] == [e["label"] for e in examples]
    for f, e in zip(feats, examples):
        assert len(f["input_ids"]) == 2
        for ids, choice in zip(f["input_ids"], e["choices"]):
            text = tok.decode(ids)
            assert text.startswith(f"<s> {e['context']} {e['question']}</s></s> ") or \
                text.startswith(f"<s>{e['context']} {e['question']}</s></s>")
            assert text.rstrip().endswith(f"{choice}</s>")


def test_featurize_truncates_the_long_context_and_keeps_the_choice(data_dir, tok):
    task = get_task("cosmosqa")
    examples = task.load_local(data_dir, "dev", "en")[:4]
    feats = FAM.featurize(task, examples, tok, 32)
    for f, e in zip(feats, examples):
        assert len(f["input_ids"]) == 4 and all(len(ids) <= 32 for ids in f["input_ids"])
        short = [c for c in e["choices"] if len(tok(c, add_special_tokens=False)["input_ids"]) <= 8]
        for ids, choice in zip(f["input_ids"], e["choices"]):
            if choice in short:  # longest_first cuts the passage first
                assert tok.decode(ids).rstrip().endswith(f"{choice}</s>")


def test_featurize_rejects_a_wrong_number_of_choices(tok):
    task = get_task("siqa")
    bad = [{"context": "c", "question": "q", "choices": ["a", "b", "c"], "label": 0},
           {"id": "x7", "context": "c", "question": "q", "choices": ["a", "b"], "label": 0}]
    with pytest.raises(DataError, match="siqa: example x7 has 2 choices, but every example of siqa must have 3"):
        FAM.featurize(task, bad, tok, 32)
    with pytest.raises(DataError, match="siqa: example 0: label 3 is not a choice index"):
        FAM.featurize(task, [{"context": "c", "choices": ["a", "b", "c"], "label": 3}], tok, 32)


def test_task_without_choice_count_is_a_clear_error(tok):
    task = Task("mc_x", "multiple_choice", "intermediate", "accuracy", "", None, None, None)
    with pytest.raises(DataError, match="mc_x: a multiple-choice task needs notes"):
        FAM.featurize(task, [{"context": "c", "choices": ["a", "b"], "label": 0}], tok, 32)


# ---------------------------------------------------------------- model: collate, heads, forward/backward
def _mc_model(tiny_model_dir, task, pooling, adapter=True):
    torch.manual_seed(0)
    model = build_model(str(tiny_model_dir), 0.0)
    FAM.add_head(model, task.name, task, pooling)
    if adapter:
        model.add_adapter(task.name, config="seq_bn")
        model.train_adapter(task.name)
    model.active_head = task.name
    return model


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("name", ["xcopa", "siqa"])
def test_collate_forward_backward(data_dir, tiny_model_dir, tok, pooling, name):
    task = get_task(name)
    n = MC_TASKS[name]
    feats = FAM.featurize(task, task.load_local(data_dir, "dev", "en")[:5], tok, 48)
    batch = collate(feats, tok.pad_token_id)
    width = max(len(ids) for f in feats for ids in f["input_ids"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (5, n, width)
    assert batch["labels"].tolist() == [f["labels"] for f in feats]
    model = _mc_model(tiny_model_dir, task, pooling)
    if pooling == "mean":
        assert isinstance(model.heads[name], MeanPooledMultipleChoiceHead)
    out = model(**batch)
    assert out.logits.shape == (5, n) and math.isfinite(out.loss.item())
    out.loss.backward()
    trained = [p for n_, p in model.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)
    assert any(p.grad.abs().sum() > 0 for n_, p in model.named_parameters() if p.requires_grad and "adapters" in n_)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_logits_do_not_depend_on_padding(data_dir, tiny_model_dir, tok, pooling):
    # the attention mask reaches the encoder and the mean-pooled head per choice: a short item
    # scores the same alone and padded next to a long one
    task = get_task("siqa")
    examples = task.load_local(data_dir, "dev", "en")
    short = min(examples[:50], key=lambda e: len(first_text(e)))
    long = max(examples[:50], key=lambda e: len(first_text(e)))
    feats = FAM.featurize(task, [short, long], tok, 128)
    model = _mc_model(tiny_model_dir, task, pooling, adapter=False).eval()
    with torch.no_grad():
        alone = model(**{k: v for k, v in collate(feats[:1], tok.pad_token_id).items() if k != "labels"}).logits
        padded = model(**{k: v for k, v in collate(feats, tok.pad_token_id).items() if k != "labels"}).logits
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-4, atol=1e-5)


def first_text(e):
    return e["context"] + e["question"] + "".join(e["choices"])


def test_mean_pooled_head_round_trips_through_save_and_load(data_dir, tiny_model_dir, tok, tmp_path):
    task = get_task("xcopa")
    feats = FAM.featurize(task, task.load_local(data_dir, "test", "it")[:6], tok, 48)
    batch = {k: v for k, v in collate(feats, tok.pad_token_id).items() if k != "labels"}
    model = _mc_model(tiny_model_dir, task, "mean").eval()
    with torch.no_grad():
        model.heads["xcopa"][-1].weight.normal_()  # a head different from a fresh initialisation
        before = model(**batch).logits
    model.save_head(str(tmp_path / "head"), "xcopa")
    assert json.loads((tmp_path / "head" / "head_config.json").read_text())["config"]["head_type"] == MEAN_POOLED_MC
    model.save_adapter(str(tmp_path / "adapter"), "xcopa", with_head=True)

    fresh = build_model(str(tiny_model_dir), 0.0)
    fresh.load_head(str(tmp_path / "head"))
    fresh.active_head = "xcopa"
    assert isinstance(fresh.heads["xcopa"], MeanPooledMultipleChoiceHead)
    assert fresh.heads["xcopa"].config["num_choices"] == 2
    # adapters mode saves adapter + head together: both must come back
    other = build_model(str(tiny_model_dir), 0.0)
    other.load_adapter(str(tmp_path / "adapter"), load_as="xcopa", with_head=True)
    other.active_adapters, other.active_head = "xcopa", "xcopa"
    with torch.no_grad():
        model.active_adapters = None
        torch.testing.assert_close(fresh.eval()(**batch).logits, model(**batch).logits, rtol=0, atol=0)
        model.active_adapters = "xcopa"
        torch.testing.assert_close(other.eval()(**batch).logits, before, rtol=0, atol=0)


def test_predict_logits_gives_one_row_of_choices_per_feature(data_dir, tiny_model_dir, tok):
    from adapter_stilts.evaluation.predict import predict_logits

    task = get_task("hellaswag")
    examples = task.load_local(data_dir, "dev", "en")[:5]
    feats = FAM.featurize(task, examples, tok, 64)
    outputs = predict_logits(_mc_model(tiny_model_dir, task, "mean"), feats, tok.pad_token_id, 2, False)
    assert [o.shape for o in outputs] == [(4,)] * 5
    preds = FAM.decode(task, outputs, feats, examples)
    assert preds == [int(np.argmax(o)) for o in outputs]


# ---------------------------------------------------------------- decode, score, write
def test_decode_and_score():
    task = get_task("siqa")
    examples = [{"choices": ["a", "b", "c"], "label": lab} for lab in (0, 2, 1, 2)]
    outputs = [np.array(r, dtype=np.float32) for r in ([3, 1, 2], [0, 1, 5], [9, 1, 0], [0, 7, 1])]
    preds = FAM.decode(task, outputs, [{}] * 4, examples)
    assert preds == [0, 2, 0, 1]
    assert FAM.score(task, preds, examples, "en") == {"accuracy": 0.5}


def test_write_predictions_layout(tmp_path):
    task = get_task("xcopa")
    path = FAM.write_predictions(tmp_path, task, "sw", [1, 0, 1], [{}] * 3)
    assert path == tmp_path / "xcopa" / "test-sw.tsv"
    assert path.read_text() == "1\n0\n1\n"
