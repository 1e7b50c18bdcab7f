"""Per-item outcomes recompute every target metric exactly: accuracy, SQuAD / MLQA EM and F1,
seqeval span F1 and token accuracy, Tatoeba accuracy and BUCC F1 / precision / recall."""
import random

import pandas as pd
import pytest

from adapter_stilts.evaluation.outcomes import (
    item_ids,
    language_metrics,
    read_languages,
    task_formulas,
    write_language,
    write_outcomes,
)
from adapter_stilts.evaluation.retrieval import bucc_f1, mining_items
from adapter_stilts.tasks.catalog.tagging import UPOS
from adapter_stilts.tasks.families import family_of
from adapter_stilts.tasks.lookup import get_task


def _recomputed(task, preds, examples, lang, tmp_path):
    fam = family_of(task)
    write_language(tmp_path, task.name, lang, item_ids(examples), fam.item_stats(task, preds, examples, lang))
    frames = read_languages(tmp_path, task.name, [lang])
    assert not list(tmp_path.rglob("outcomes-*.parquet"))  # read once, then removed from the predictions
    frame = pd.read_parquet(write_outcomes([frames], tmp_path / "outcomes.parquet"))
    assert list(frame["item_id"]) == item_ids(examples) and (frame["language"] == lang).all()
    return language_metrics(task_formulas(task), frame)[lang], fam.score(task, preds, examples, lang)


def test_classification_and_multiple_choice(tmp_path):
    rng = random.Random(0)
    xnli = get_task("xnli")
    examples = [{"text_a": f"a{i}", "text_b": "b", "label": rng.choice(xnli.labels)} for i in range(57)]
    preds = [rng.choice(xnli.labels) for _ in examples]
    mine, logged = _recomputed(xnli, preds, examples, "de", tmp_path / "c")
    assert mine == pytest.approx(logged, abs=1e-12)
    xcopa = get_task("xcopa")
    examples = [{"premise": f"p{i}", "question": "cause", "choices": ["x", "y"], "label": rng.randint(0, 1)}
                for i in range(41)]
    preds = [rng.randint(0, 1) for _ in examples]
    mine, logged = _recomputed(xcopa, preds, examples, "et", tmp_path / "m")
    assert mine == pytest.approx(logged, abs=1e-12)


@pytest.mark.parametrize("name,lang", [("xquad", "de"), ("mlqa", "zh"), ("mlqa", "ar"), ("tydiqa", "sw")])
def test_qa_em_and_f1_per_question(name, lang, tmp_path):
    rng = random.Random(1)
    words = ["the", "Berlin", "wall", "fell", "in", "1989", "北京", "大学", "المدينة", "a", "of", "!"]
    examples, preds = [], []
    for i in range(80):
        gold = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        examples.append({"id": f"q{i}", "question": "?", "context": "c",
                         "answers": [{"text": g, "answer_start": 0} for g in gold]})
        preds.append(rng.choice([gold[0], " ".join(rng.choices(words, k=3)), ""]))
    mine, logged = _recomputed(get_task(name), preds, examples, lang, tmp_path)
    assert mine == pytest.approx(logged, abs=1e-12)
    assert 0 < logged["exact_match"] < logged["f1"] < 1


def test_seqeval_span_f1_from_sentence_counts(tmp_path):
    rng = random.Random(2)
    udpos = get_task("udpos")
    examples, preds = [], []
    for _ in range(60):
        tags = [rng.choice(UPOS[:5]) for _ in range(rng.randint(1, 12))]
        examples.append({"words": [f"w{i}" for i in range(len(tags))], "tags": tags})
        preds.append([t if rng.random() < 0.7 else rng.choice(UPOS[:5]) for t in tags])
    mine, logged = _recomputed(udpos, preds, examples, "fr", tmp_path)
    assert mine == pytest.approx(logged, abs=1e-12)
    panx = get_task("panx")  # B-/I- spans across sentences
    bio = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
    examples = [{"words": ["w"] * 8, "tags": [rng.choice(bio) for _ in range(8)]} for _ in range(40)]
    preds = [[t if rng.random() < 0.6 else rng.choice(bio) for t in e["tags"]] for e in examples]
    mine, logged = _recomputed(panx, preds, examples, "de", tmp_path / "panx")
    assert mine == pytest.approx(logged, abs=1e-12)


def test_bucc_per_source_counts_give_bucc_f1():
    rng = random.Random(3)
    gold = {(f"s{i}", f"t{i}") for i in range(50)}
    predicted = {(f"s{i}", f"t{i if rng.random() < 0.6 else i + 1}") for i in range(0, 70)}
    corpus = [f"s{i}" for i in range(200)]  # most sentences have no pair: rows of zeros
    ids, stats = mining_items(predicted, gold, corpus)
    frame = pd.DataFrame({"language": "zh", "item_id": ids, **stats})
    mine = language_metrics(task_formulas(get_task("bucc2018")), frame)["zh"]
    assert mine == pytest.approx(bucc_f1(predicted, gold), abs=1e-12)
    # every arm has a row per source sentence, so two systems pair on all of them
    other = {(f"s{i}", f"t{i}") for i in range(120, 150)}
    assert mining_items(other, gold, corpus)[0] == ids


def test_item_ids_are_unique_and_content_based():
    ex = [{"text_a": "x", "label": "a"}, {"text_a": "y", "label": "a"}, {"text_a": "x", "label": "a"}]
    ids = item_ids(ex)
    assert len(set(ids)) == 3 and ids[2] == ids[0] + "#2"
    assert item_ids(ex[::-1])[1] == ids[1]  # the same item keeps its id when the file is reordered
    assert item_ids([{"id": "q7", "question": "?"}]) == ["q7"]
