"""Retrieval scoring: faiss search, ratio-margin mining, threshold choice and F1 on synthetic
embeddings; Tatoeba and BUCC end to end with the tiny model."""
import numpy as np
import pytest

from adapter_stilts.evaluation.retrieval import (
    best_threshold,
    bucc_f1,
    knn,
    margin_mine,
    normalized,
    retrieval_eval,
    retrieval_layer,
)
from adapter_stilts.tasks.lookup import get_task

DIM = 48


def _vectors(rng, n: int, offset: np.ndarray) -> np.ndarray:
    # a shared offset makes every cosine positive, as with pooled transformer states
    return rng.normal(size=(n, DIM)) + offset


def test_faiss_search_agrees_with_brute_force():
    rng = np.random.default_rng(1)
    q, keys = normalized(rng.normal(size=(300, DIM))), normalized(rng.normal(size=(500, DIM)))
    sims, idx = knn(q, keys, 4, batch=64)  # several query batches
    full = q.astype(np.float64) @ keys.T.astype(np.float64)
    expected = np.argsort(-full, axis=1)[:, :4]
    assert (idx == expected).all()
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-5)
    assert knn(q, keys[:2], 4)[1].shape == (300, 2)  # k is capped by the number of keys


def _brute_margin(x: np.ndarray, y: np.ndarray, i: int, j: int, k: int = 4) -> float:
    """The ratio margin written out from its definition."""
    cos = x.astype(np.float64) @ y.T.astype(np.float64)
    x_nn = np.sort(cos[i])[::-1][:k].sum() / (2 * k)
    y_nn = np.sort(cos[:, j])[::-1][:k].sum() / (2 * k)
    return cos[i, j] / (x_nn + y_nn)


def _planted(rng, n_pairs=40, src_noise=260, tgt_noise=420):
    """Sources: n_pairs planted then distractors; targets: distractors around the translations."""
    offset = rng.normal(size=DIM) * 1.5
    base = rng.normal(size=(n_pairs, DIM))
    x = normalized(np.vstack([base, rng.normal(size=(src_noise, DIM))]) + offset)
    translations = base + 0.35 * rng.normal(size=base.shape)
    y = normalized(np.vstack([_vectors(rng, tgt_noise // 2, 0), translations, _vectors(rng, tgt_noise // 2, 0)])
                   + offset)
    gold = {(i, tgt_noise // 2 + i) for i in range(n_pairs)}
    return x, y, gold


def test_margin_mining_finds_planted_pairs_among_distractors():
    x, y, gold = _planted(np.random.default_rng(2))
    pairs, scores = margin_mine(x, y)
    mined = [tuple(p) for p in pairs.tolist()]
    assert gold <= set(mined)
    assert len({s for s, _ in mined}) == len(mined) == len({t for _, t in mined})  # one-to-one
    assert (np.diff(scores) <= 0).all()  # best first
    for (i, j), s in list(zip(mined, scores))[::25]:
        assert s == pytest.approx(_brute_margin(x, y, i, j), rel=1e-5)
    correct = np.array([p in gold for p in mined])
    # the planted pairs outscore every distractor pair, so the best threshold keeps exactly them
    assert scores[correct].min() > scores[~correct].max()
    threshold = best_threshold(scores, correct, len(gold))
    assert scores[~correct].max() < threshold < scores[correct].min()
    assert bucc_f1({p for p, s in zip(mined, scores) if s >= threshold}, gold)["f1"] == 1.0


def test_margin_penalises_a_hub_that_is_close_to_everything():
    rng = np.random.default_rng(3)
    x, y, gold = _planted(rng, n_pairs=10, src_noise=50, tgt_noise=60)
    hub = normalized(x.mean(axis=0, keepdims=True))  # cosine-nearest target of many sources
    y = np.vstack([y, hub])
    hub_index = len(y) - 1
    cos_best = (x @ y.T).argmax(axis=1)
    assert (cos_best == hub_index).sum() > 1  # plain cosine would send several sources to the hub
    pairs, _ = margin_mine(x, y)
    assert (pairs[:, 1] == hub_index).sum() <= 1 and gold <= {tuple(p) for p in pairs.tolist()}


def test_best_threshold_maximises_f1_between_scores():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([True, True, False, True, False, False])
    # F1 after 1..6 candidates with 4 gold pairs: .40 .67 .57 .75 .67 .60 -> keep the first 4
    assert best_threshold(scores, correct, 4) == pytest.approx(0.55)
    assert best_threshold(scores[::-1], correct[::-1], 4) == pytest.approx(0.55)  # order-free
    # a cut inside a run of equal scores is impossible: both 0.9s are kept or neither
    # (cutting after the first 0.9 would give F1 1.0, but no threshold keeps only one of them)
    assert best_threshold(np.array([0.9, 0.9, 0.5, 0.1]), np.array([True, False, False, False]), 1) == \
        pytest.approx(0.7)
    assert best_threshold(np.array([0.9, 0.5]), np.array([False, False]), 3) == pytest.approx(0.5)  # keep all
    assert best_threshold(np.array([]), np.array([], dtype=bool), 3) == 0.0


def test_bucc_f1_is_set_overlap():
    gold = {("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")}
    got = bucc_f1({("a", "1"), ("b", "2"), ("x", "9")}, gold)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert bucc_f1({("x", "9")}, gold) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert bucc_f1(set(), gold)["f1"] == 0.0


def test_retrieval_layer():
    assert retrieval_layer(-1, 24) == 14 and retrieval_layer(-1, 12) == 7 and retrieval_layer(3, 12) == 3
    with pytest.raises(ValueError, match="outside 0..12"):
        retrieval_layer(13, 12)


# ---------------------------------------------------------------- end to end, tiny model
@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from adapter_stilts.models.loading import build_model, load_tokenizer

    return build_model(str(tiny_model_dir), 0.0), load_tokenizer(str(tiny_model_dir))


def _score(tiny, task, tests, devs, tmp_path):
    model, tok = tiny
    return retrieval_eval(model, tok, task, tests, devs, layer=2, pooling="mean", batch_size=8, max_length=32,
                          bf16=False, pred_dir=tmp_path)


def test_tatoeba_end_to_end_writes_one_index_per_line(tiny, data_dir, tmp_path):
    from adapter_stilts.evaluation.embedding import embed_sentences

    task = get_task("tatoeba")
    pairs = task.load_local(data_dir, "test", "de")[:40]
    english = [{"source": p["target"], "target": p["target"]} for p in pairs]
    result = _score(tiny, task, {"de": pairs, "en": english}, {}, tmp_path)
    found = [int(line) for line in (tmp_path / "tatoeba" / "test-de.tsv").read_text().splitlines()]
    assert len(found) == 40 and all(0 <= i < 40 for i in found)
    assert result["de"]["accuracy"] == pytest.approx(np.mean(np.array(found) == np.arange(40)))
    model, tok = tiny  # the file agrees with a brute-force cosine argmax over the same embeddings
    src, tgt = (embed_sentences(model, tok, [p[k] for p in pairs], 2, "mean", 8, 32, False)
                for k in ("source", "target"))
    assert found == (src @ tgt.T).argmax(dim=1).tolist()
    # identical sentences embed identically, so English -> English retrieval is exact (distinct lines)
    assert len({p["target"] for p in pairs}) < 40 or result["en"]["accuracy"] == 1.0


def _record(ids_src, src, ids_tgt, tgt, gold):
    return {"source_ids": ids_src, "sources": src, "target_ids": ids_tgt, "targets": tgt, "gold": gold}


def test_bucc_end_to_end_mines_copies_and_writes_pairs(tiny, data_dir, tmp_path):
    """Sources are copies of some targets (the tiny random model embeds a copy exactly like its
    original) among unrelated sentences: the gold pairs are the copies."""
    task = get_task("bucc2018")
    english = list(dict.fromkeys(p["target"] for p in get_task("tatoeba").load_local(data_dir, "test", "fr")))
    german = list(dict.fromkeys(p["source"] for p in get_task("tatoeba").load_local(data_dir, "test", "de")))

    def corpus(start: int, n_gold: int) -> dict:
        tgt = english[start:start + 60]
        src = tgt[:n_gold] + german[start:start + 30]
        sid, tid = [f"s{start}-{i}" for i in range(len(src))], [f"t{start}-{i}" for i in range(len(tgt))]
        return _record(sid, src, tid, tgt, [(sid[i], tid[i]) for i in range(n_gold)])

    dev, test = corpus(0, 12), corpus(100, 10)
    result = _score(tiny, task, {"zh": [test]}, {"zh": [dev]}, tmp_path)["zh"]
    lines = (tmp_path / "bucc2018" / "test-zh.tsv").read_text().splitlines()
    predicted = {tuple(line.split("\t")) for line in lines}
    assert len(predicted) == len(lines) and all(s in test["source_ids"] for s, _ in predicted)
    assert result == {**bucc_f1(predicted, set(test["gold"])), "threshold": result["threshold"]}
    assert result["recall"] == 1.0 and result["f1"] > 0.5
    with pytest.raises(ValueError, match="no dev data for 'zh'"):
        _score(tiny, task, {"zh": [test]}, {}, tmp_path)
