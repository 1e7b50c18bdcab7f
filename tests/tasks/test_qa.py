"""Extractive QA: windows and decoding on real data with the real tokenizer, the loaders on the real
files (counts, the XQuAD leak rule, errors), the prediction files, and the head on a tiny model."""
import json
import shutil

import numpy as np
import pytest

from adapter_stilts.tasks.catalog.qa import read_squad_file
from adapter_stilts.tasks.families import MODEL_TARGETS, family_of
from adapter_stilts.tasks.families.extractive_qa import MAX_ANSWER_TOKENS, window_sizes
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tasks.readers import DataError

MAX_LENGTH = 96  # small, so that most contexts need several windows


@pytest.fixture(scope="module")
def tokenizer(me5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(me5_dir)


def _label_logits(features: list[dict], seed: int = 0) -> list[np.ndarray]:
    """What a perfect model outputs: the maximum of each window at its training targets (CLS when
    the answer is not in the window), small noise elsewhere."""
    rng = np.random.default_rng(seed)
    out = []
    for f in features:
        logits = rng.normal(0, 1, (len(f["input_ids"]), 2))
        logits[f["start_positions"], 0] += 20
        logits[f["end_positions"], 1] += 20
        out.append(logits)
    return out


@pytest.mark.parametrize("lang", ["de", "zh"])
def test_gold_targets_decode_to_the_gold_text_across_windows(data_dir, tokenizer, lang):
    task = get_task("xquad")
    fam = family_of(task)
    examples = task.load_local(data_dir, "test", lang)
    feats = fam.featurize(task, examples, tokenizer, MAX_LENGTH)
    assert all(len(f["input_ids"]) <= MAX_LENGTH for f in feats)
    windows = np.bincount([f["example_index"] for f in feats], minlength=len(examples))
    assert windows.min() >= 1 and (windows > 1).mean() > 0.5  # most contexts overflow
    later = {f["example_index"] for i, f in enumerate(feats)
             if f["start_positions"] and i > 0 and feats[i - 1]["example_index"] == f["example_index"]}
    assert len(later) > 300  # many answers sit in a window other than the first
    preds = fam.decode(task, _label_logits(feats), feats, examples)
    inside = {f["example_index"] for f in feats
              if f["start_positions"] and f["end_positions"] - f["start_positions"] < MAX_ANSWER_TOKENS}
    golds = [examples[i]["answers"][0]["text"] for i in sorted(inside)]
    decoded = [preds[i] for i in sorted(inside)]
    assert len(inside) > 0.97 * len(examples)
    # a span of whole tokens: the gold text itself, or (where the gold cuts a token) the covering tokens
    assert all(g in p for g, p in zip(golds, decoded))
    assert np.mean([g == p for g, p in zip(golds, decoded)]) > 0.97
    assert fam.score(task, preds, examples, lang)["exact_match"] > 0.97


def test_feature_bookkeeping_and_overlapping_windows(data_dir, tokenizer):
    task = get_task("xquad")
    examples = task.load_local(data_dir, "test", "de")[:40]
    feats = family_of(task).featurize(task, examples, tokenizer, MAX_LENGTH)
    _, stride = window_sizes(MAX_LENGTH)
    for f in feats:
        ctx = examples[f["example_index"]]["context"]
        spans = [o for o in f["offsets"] if o is not None]
        assert f["offsets"][0] is None and f["offsets"][-1] is None  # CLS and the final separator
        assert all(0 <= s <= e <= len(ctx) for s, e in spans) and spans == sorted(spans)
        assert all(not ctx[s: e][:1].isspace() for s, e in spans)  # "▁word" spans start at the word
        assert set(f) >= {"input_ids", "start_positions", "end_positions", "example_index", "offsets"}
    for a, b in zip(feats, feats[1:]):
        if a["example_index"] == b["example_index"]:  # the next window starts `stride` tokens back
            a_ctx = [o for o in a["offsets"] if o is not None]
            b_ctx = [o for o in b["offsets"] if o is not None]
            assert b_ctx[:stride] == a_ctx[-stride:]
    # training targets: the first and last tokens of the gold answer, or CLS
    for f in feats:
        ans = examples[f["example_index"]]["answers"][0]
        if f["start_positions"]:
            s, e = f["offsets"][f["start_positions"]], f["offsets"][f["end_positions"]]
            assert s[0] <= ans["answer_start"] < s[1] and e[0] < ans["answer_start"] + len(ans["text"]) <= e[1]


def test_long_questions_are_capped(tokenizer):
    task = get_task("xquad")
    ex = {"id": "q", "question": "  " + "Why " * 200 + "?", "context": "Word " * 300,
          "answers": [{"text": "Word", "answer_start": 1000}]}
    feats = family_of(task).featurize(task, [ex], tokenizer, MAX_LENGTH)
    cap, _ = window_sizes(MAX_LENGTH)
    assert len(feats) > 3 and all(f["offsets"].index(None, 1) <= cap + 1 for f in feats)
    assert sum(f["start_positions"] > 0 for f in feats) >= 1


def test_no_answer_decoding(data_dir, tokenizer):
    v2 = get_task("squad_v2")
    examples = v2.load_local(data_dir, "dev", "en")
    unanswerable = [not e["answers"] for e in examples]
    assert 0.3 < np.mean(unanswerable) < 0.7
    fam = family_of(v2)
    feats = fam.featurize(v2, examples, tokenizer, MAX_LENGTH)
    assert all(f["start_positions"] == f["end_positions"] == 0 for f in feats if unanswerable[f["example_index"]])
    logits = _label_logits(feats)
    preds = fam.decode(v2, logits, feats, examples)
    assert all(p == "" for p, u in zip(preds, unanswerable) if u)
    answered = [(p, e["answers"][0]["text"]) for p, e, u in zip(preds, examples, unanswerable) if not u]
    assert np.mean([bool(p) and g in p for p, g in answered]) > 0.95
    assert fam.score(v2, preds, examples, "en")["exact_match"] > 0.9
    # a task without no-answer never gives up: the best span wins whatever the CLS score
    squad = get_task("squad")
    assert all(fam.decode(squad, logits, feats, examples))


def test_mlqa_task_scores_with_the_language_aware_metric(data_dir):
    mlqa, xquad = get_task("mlqa"), get_task("xquad")
    examples = mlqa.load_local(data_dir, "test", "zh")
    preds = [e["answers"][0]["text"][1:] for e in examples]
    fam = family_of(mlqa)
    assert fam.score(mlqa, preds, examples, "zh")["f1"] > 0.5 > fam.score(xquad, preds, examples, "zh")["f1"]


def test_write_predictions_xtreme_layout(tmp_path, data_dir):
    task = get_task("xquad")
    examples = task.load_local(data_dir, "test", "zh")[:5]
    preds = [e["answers"][0]["text"] for e in examples]
    path = family_of(task).write_predictions(tmp_path, task, "zh", preds, examples)
    assert path == tmp_path / "xquad" / "test-zh.json"
    assert json.loads(path.read_text(encoding="utf-8")) == {e["id"]: p for e, p in zip(examples, preds)}
    assert preds[0] in path.read_text(encoding="utf-8")  # not \u-escaped


def test_qa_head_trains_and_predicts_on_a_tiny_model(data_dir, tokenizer, tiny_model_dir):
    import torch

    from adapter_stilts.evaluation.predict import predict_logits
    from adapter_stilts.models.loading import build_model
    from adapter_stilts.tasks.collate import collate

    task = get_task("xquad")
    fam = family_of(task)
    examples = task.load_local(data_dir, "test", "de")[:6]
    feats = fam.featurize(task, examples, tokenizer, MAX_LENGTH)
    model = build_model(str(tiny_model_dir), 0.0)
    fam.add_head(model, "qa", task)
    model.active_head = "qa"
    batch = collate(feats[:4], tokenizer.pad_token_id)
    assert {"start_positions", "end_positions"} <= set(batch) and set(MODEL_TARGETS) - set(batch) == {"labels"}
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.requires_grad
    outputs = predict_logits(model, feats, tokenizer.pad_token_id, batch_size=4, bf16=False)
    assert [o.shape for o in outputs] == [(len(f["input_ids"]), 2) for f in feats]
    preds = fam.decode(task, outputs, feats, examples)
    assert len(preds) == len(examples) and all(p and p in e["context"] for p, e in zip(preds, examples))


# ---------------------------------------------------------------- loaders on the real files
def test_xquad_all_languages_1190(data_dir):
    task = get_task("xquad")
    langs = task.local_languages(data_dir)
    assert len(langs) == 12 and set(task.languages) < set(langs)
    ids = None
    for lang in langs:
        ex = task.load_local(data_dir, "test", lang)
        assert len(ex) == 1190 and all(e["answers"] for e in ex)
        ids = ids or [e["id"] for e in ex]
        assert [e["id"] for e in ex] == ids  # parallel across languages


def test_mlqa_dev_files_serve_as_test(data_dir):
    task = get_task("mlqa")
    sizes = {lang: len(task.load_local(data_dir, "test", lang)) for lang in task.local_languages(data_dir)}
    assert sizes == {"ar": 517, "de": 512, "en": 1148, "es": 500, "hi": 507, "vi": 511, "zh": 504}


def test_tydiqa_files(data_dir):
    folder = data_dir / "tydiqa" / "tydiqa-goldp-v1.1-dev"
    counts = {p.name.split(".")[2]: len([e for _, ex in read_squad_file(p) for e in ex])
              for p in folder.glob("tydiqa.goldp.*.dev.json")}
    assert counts == {"ar": 921, "bn": 113, "en": 440, "fi": 782, "id": 565, "ko": 276, "ru": 812, "sw": 499, "te": 669}
    task = get_task("tydiqa")
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    assert len(train) + len(dev) == 3696 and 300 < len(dev) < 450
    assert not {e["context"] for e in train} & {e["context"] for e in dev}
    # the staged dev copies have no gold answers, so they cannot be test sets; ko and sw have
    # GoldP train files with answers, which serve instead
    assert task.local_languages(data_dir) == ("ko", "sw")
    assert len(task.load_local(data_dir, "test", "sw")) == 2755
    with pytest.raises(DataError, match=r"tydiqa\.goldp\.ar\.dev\.json is missing or its answers are stripped"):
        task.load_local(data_dir, "test", "ar")


def test_no_xquad_paragraph_or_question_in_offline_training_data(data_dir):
    xq = get_task("xquad").load_local(data_dir, "test", "en")
    norm = lambda s: " ".join(s.split())  # noqa: E731
    contexts, questions = {norm(e["context"]) for e in xq}, {norm(e["question"]) for e in xq}
    ids = {e["id"] for e in xq}
    sizes = {}
    for name in ("squad", "squad_v2", "xquad", "mlqa"):
        task = get_task(name)
        for split in ("train", "dev"):
            ex = task.load_local(data_dir, split, "en")
            sizes[name, split] = len(ex)
            assert not any(norm(e["context"]) in contexts or norm(e["question"]) in questions or e["id"] in ids
                           for e in ex), (name, split)
    assert sizes["squad", "train"] + sizes["squad", "dev"] == 10570 - 1190
    assert sizes["xquad", "dev"] == sizes["mlqa", "dev"] == sizes["squad", "dev"]


def test_squad_split_is_by_article(data_dir):
    task = get_task("squad")
    train, dev = task.load_local(data_dir, "train", "en"), task.load_local(data_dir, "dev", "en")
    titles = {title: {e["id"] for e in ex} for title, ex in read_squad_file(data_dir / "squad" / "dev-v1.1.json.zip")}
    dev_ids = {e["id"] for e in dev}
    dev_titles = {t for t, ids in titles.items() if ids & dev_ids}
    train_titles = {t for t, ids in titles.items() if ids & {e["id"] for e in train}}
    assert len(dev_titles) == 5 and not dev_titles & train_titles
    with pytest.raises(DataError, match="no test split"):
        task.load_local(data_dir, "test", "en")


def test_malformed_json_names_the_file(tmp_path, data_dir):
    (tmp_path / "xquad").mkdir()
    good = (data_dir / "xquad" / "xquad.de.json").read_text(encoding="utf-8")
    (tmp_path / "xquad" / "xquad.de.json").write_text(good[:5000], encoding="utf-8")
    with pytest.raises(DataError, match=r"xquad\.de\.json:116: not valid SQuAD-format JSON \(Unterminated string"):
        get_task("xquad").load_local(tmp_path, "test", "de")
    doc = json.loads(good)
    del doc["data"][3]["paragraphs"][1]["context"]
    (tmp_path / "xquad" / "xquad.de.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"xquad\.de\.json: article 3: malformed SQuAD entry \(KeyError: 'context'\)"):
        get_task("xquad").load_local(tmp_path, "test", "de")
    doc = json.loads(good)
    qa = doc["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 1
    (tmp_path / "xquad" / "xquad.de.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=rf"xquad\.de\.json:1: question {qa['id']}: answer .* is not at character"):
        get_task("xquad").load_local(tmp_path, "test", "de")


def test_squad_needs_the_xquad_file_for_the_leak_rule(tmp_path, data_dir):
    shutil.copytree(data_dir / "squad", tmp_path / "squad")
    with pytest.raises(DataError, match=r"missing data file: .*xquad\.en\.json"):
        get_task("squad").load_local(tmp_path, "train", "en")


def test_hub_loaders_offline_give_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load Hub dataset 'google/xquad' \\(config 'xquad.de'"):
        get_task("xquad").load_hub("test", "de")
    with pytest.raises(DataError, match="cannot load Hub dataset 'google/xtreme' \\(config 'MLQA.hi.hi'"):
        get_task("mlqa").load_hub("test", "hi")


def test_hub_loaders_map_rows_configs_and_the_leak_rule(monkeypatch, data_dir):
    """The Hub code paths, fed rows in the Hub's shape (answers as {text: [...], answer_start: [...]})
    built from the real local files."""
    from adapter_stilts.tasks.catalog import qa

    def rows(path, id_prefix=""):
        return [{"id": id_prefix + e["id"], "title": t, "context": e["context"], "question": e["question"],
                 "answers": {"text": [a["text"] for a in e["answers"]],
                             "answer_start": [a["answer_start"] for a in e["answers"]]}}
                for t, ex in read_squad_file(path) for e in ex]

    tydi = data_dir / "tydiqa" / "tydiqa-goldp-v1.1-train"
    hub = {("rajpurkar/squad", None, "validation"): rows(data_dir / "squad" / "dev-v1.1.json.zip"),
           ("google/xquad", "xquad.en", "validation"): rows(data_dir / "xquad" / "xquad.en.json"),
           ("google/xquad", "xquad.de", "validation"): rows(data_dir / "xquad" / "xquad.de.json"),
           ("google/xtreme", "MLQA.hi.hi", "test"):
               rows(data_dir / "mlqa" / "MLQA_V1" / "dev" / "dev-context-hi-question-hi.json"),
           ("google-research-datasets/tydiqa", "secondary_task", "train"):
               rows(tydi / "tydiqa.goldp.en.train.json", "english-") + rows(tydi / "tydiqa.goldp.sw.train.json"),
           ("google-research-datasets/tydiqa", "secondary_task", "validation"):
               rows(tydi / "tydiqa.goldp.ko.train.json", "korean-") + rows(tydi / "tydiqa.goldp.en.train.json",
                                                                         "english-")}
    monkeypatch.setattr(qa, "hub_split", lambda path, config, split: hub[path, config, split])
    dev = get_task("xquad").load_hub("dev", "en")
    assert len(dev) == 10570 - 1190 and all(e["answers"] for e in dev)
    xquad_en = get_task("xquad").load_local(data_dir, "test", "en")
    assert not {e["context"] for e in dev} & {e["context"] for e in xquad_en}
    assert get_task("xquad").load_hub("test", "de") == get_task("xquad").load_local(data_dir, "test", "de")
    assert len(get_task("mlqa").load_hub("test", "hi")) == 507
    train, dev = get_task("tydiqa").load_hub("train", "en"), get_task("tydiqa").load_hub("dev", "en")
    assert len(train) + len(dev) == 3696 and all(e["id"].startswith("english-") for e in train + dev)
    test = get_task("tydiqa").load_hub("test", "ko")
    assert len(test) == 1625 and all(e["id"].startswith("korean-") for e in test)
    with pytest.raises(DataError, match="squad has no test split"):
        get_task("squad").load_hub("test", "en")
