"""mAP@20 of LAReQA and Mewsli-X: hand-computed cases, the official repository's own Mewsli-X
example, an independent formula of average precision, and answer retrieval end to end with the
tiny model on the real XQuAD-R pool."""
import json

import numpy as np
import pytest

from adapter_stilts.evaluation.ranking import TOP_K, average_precision_at_k
from adapter_stilts.evaluation.retrieval import answer_retrieval_language, embed_distinct, normalized, retrieval_eval
from adapter_stilts.tasks.lookup import get_task


def test_average_precision_by_hand():
    ranked = ["a", "b", "c", "d", "e", "f"]
    # relevant at ranks 1, 3, 6: precisions 1/1, 2/3, 3/6, over min(3 relevant, k)
    assert average_precision_at_k({"a", "c", "f"}, ranked) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert average_precision_at_k({"a", "c", "f"}, ranked, k=4) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k({"a", "c", "f"}, ranked, k=2) == pytest.approx(1 / 2)  # divisor min(3, 2)
    assert average_precision_at_k({"a", "c", "f"}, ranked, k=None) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert average_precision_at_k({"x"}, ranked) == 0.0
    assert average_precision_at_k({"a", "c"}, ["a", "a", "c"]) == pytest.approx((1 + 2 / 3) / 2)  # repeats count once
    # a relevant candidate ranked 21st is outside the cut, and the divisor stays min(R, 20)
    ranked = [f"c{i}" for i in range(25)]
    assert average_precision_at_k({"c0", "c20"}, ranked) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="at least one relevant"):
        average_precision_at_k(set(), ranked)


def test_mewslix_mock_example_of_the_official_repository():
    """google-research/xtreme mock_test_data/{labels,predictions}/mewslix/test-de.json: the gold
    entity is the second prediction, so utils_mewslix.evaluate gives MRR 1/2."""
    gold = ["Q156913"]
    predicted = ["Q11490423", "Q156913", "Q490356", "Q16222746", "Q4873731", "Q2102531", "Q209944", "Q4630241",
                 "Q9033638", "Q18249334", "Q65216438", "Q333185", "Q2530561", "Q20013418", "Q10826362", "Q2575270",
                 "Q2914850", "Q55697199", "Q853167", "Q111730"]
    assert average_precision_at_k(gold, predicted) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_one_relevant_is_the_reciprocal_rank_within_twenty(seed):
    """utils_mewslix.mean_reciprocal_rank over the top 20: 1/rank of the gold, 0 when not there."""
    rng = np.random.default_rng(seed)
    ranked = list(rng.permutation(60))
    gold = int(rng.integers(60))
    rank = ranked.index(gold) + 1
    assert average_precision_at_k([gold], ranked) == (1 / rank if rank <= TOP_K else 0.0)


def _ap_from_definition(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Average precision written from its textbook definition: sum over the top-k ranks of
    precision@rank x relevance@rank, over min(number relevant, k); ranks from a full sort."""
    order = np.argsort(-scores, kind="stable")[:k]
    rel = relevant[order].astype(float)
    precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((precision * rel).sum() / min(relevant.sum(), k))


def test_answer_retrieval_agrees_with_a_full_ranking(tmp_path):
    """The faiss top-20 search with the per-query AP gives, query by query, what ranking the whole
    pool (utils_lareqa.mean_avg_prec_at_k sorts every candidate) and the textbook AP give."""
    rng = np.random.default_rng(4)
    pool = normalized(rng.normal(size=(300, 16)))
    ids = [f"c{i}" for i in range(300)]
    texts = {f"q{i}": normalized(rng.normal(size=(1, 16)) + 8 * pool[i * 7:i * 7 + 1])[0] for i in range(40)}
    queries = [{"id": q, "query": q, "relevant": [f"c{i * 7}"] + [f"c{j}" for j in rng.choice(
        np.arange(1, 300, 7), size=rng.integers(0, 25), replace=False)]} for i, q in enumerate(texts)]
    embed = lambda batch: np.stack([texts[t] for t in batch])  # noqa: E731
    metrics, (item_ids, columns) = answer_retrieval_language(embed, queries, ids, pool, tmp_path / "test-xx.json")
    scores = np.stack(list(texts.values())) @ pool.T
    expected = [_ap_from_definition(scores[n], np.isin(ids, q["relevant"]), TOP_K) for n, q in enumerate(queries)]
    assert columns["ap"] == pytest.approx(expected, abs=1e-6)
    assert metrics["map_at_20"] == pytest.approx(np.mean(expected)) and item_ids == [q["id"] for q in queries]
    written = json.loads((tmp_path / "test-xx.json").read_text())
    assert list(written) == list(texts) and all(len(v) == TOP_K for v in written.values())
    assert written["q0"] == [ids[j] for j in np.argsort(-scores[0])[:TOP_K]]
    assert 0.2 < metrics["map_at_20"] < 1.0  # the planted neighbour makes it neither trivial nor hopeless


def test_embed_distinct_embeds_each_text_once():
    calls = []

    def embed(batch):
        calls.append(list(batch))
        return np.array([[len(t), 1.0] for t in batch])

    out = embed_distinct(embed, ["aa", "b", "aa", "ccc", "b"])
    assert calls == [["aa", "b", "ccc"]] and out[:, 0].tolist() == [2, 1, 2, 3, 1]


# ---------------------------------------------------------------- end to end, tiny model, real pool
@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from adapter_stilts.models.loading import build_model, load_tokenizer

    return build_model(str(tiny_model_dir), 0.0), load_tokenizer(str(tiny_model_dir))


def test_lareqa_end_to_end_on_the_real_pool(tiny, data_dir, tmp_path):
    """Real XQuAD-R questions against the real pool's German and English sentences (for time), plus
    queries that are copies of pool sentences (the tiny random model embeds a copy exactly like its
    original, so that sentence is ranked first)."""
    from adapter_stilts.evaluation.embedding import embed_sentences

    task = get_task("lareqa")
    pool = [c for c in task.load_local(data_dir, "pool", "all") if c["language"] in ("de", "en")]
    kept = {c["id"] for c in pool}
    questions = [{**q, "relevant": [r for r in q["relevant"] if r in kept]}
                 for q in task.load_local(data_dir, "test", "de")[:30]]
    assert all(len(q["relevant"]) == 2 for q in questions)
    copies = [{"id": f"copy{i}", "query": c["text"], "relevant": [c["id"]]} for i, c in enumerate(pool[1500:1510])
              if sum(d["text"] == c["text"] for d in pool) == 1]
    model, tok = tiny
    result = retrieval_eval(model, tok, task, {"de": questions, "xx": copies}, {}, layer=2, pooling="mean",
                            batch_size=64, max_length=48, bf16=False, pred_dir=tmp_path, pool=pool)
    assert len(copies) >= 8 and result["xx"]["map_at_20"] == pytest.approx(1.0)
    found = json.loads((tmp_path / "lareqa" / "test-de.json").read_text())
    assert list(found) == [q["id"] for q in questions] and all(len(v) == TOP_K for v in found.values())
    # the written rankings are the brute-force cosine ranking of the same embeddings
    vectors = embed_sentences(model, tok, [q["query"] for q in questions[:5]], 2, "mean", 64, 48, False)
    keys = embed_sentences(model, tok, [c["text"] for c in pool], 2, "mean", 64, 48, False)
    for q, v in zip(questions[:5], vectors):
        top = (keys @ v).argsort(descending=True)[:TOP_K].tolist()
        assert found[q["id"]][:5] == [pool[j]["id"] for j in top[:5]]
    expected = np.mean([average_precision_at_k(q["relevant"], found[q["id"]]) for q in questions])
    assert result["de"]["map_at_20"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="no candidate pool"):
        retrieval_eval(model, tok, task, {"de": questions}, {}, layer=2, pooling="mean", batch_size=64,
                       max_length=48, bf16=False, pred_dir=tmp_path)
