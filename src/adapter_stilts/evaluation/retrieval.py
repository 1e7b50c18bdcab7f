"""Retrieval scoring with pooled hidden states (no trained head), dispatched on the task's
`notes["retrieval"]`:

- "alignment" (Tatoeba): each non-English sentence retrieves its nearest English sentence by
  cosine; accuracy@1 (the retrieved line must be the aligned line, as XTREME compares indices).
- "mining" (BUCC 2018): bitext mining with the ratio margin of Artetxe & Schwenk (2019), as used
  by LASER and XTREME: k=4 neighbours each way, candidates from both directions ("max"
  retrieval, each sentence in at most one pair), the threshold that maximises F1 on the dev
  gold, applied to test. F1/precision/recall as XTREME's bucc_f1 (overlap of pair sets).
- "answer_retrieval" (LAReQA, Mewsli-X): every query of every language ranks ONE shared candidate
  pool (the task's `pool` split) by cosine; mAP@20 (evaluation/ranking.py), the average precision
  of each query its per-item outcome. The pool is embedded once per scoring, each distinct text
  once; query and candidate texts go through the same pooled encoder (XTREME's baselines have a
  question and an answer encoder: a fine-tuned dual model, which phase 2 is not).

Neighbour search is exact inner product (faiss IndexFlatIP) on L2-normalised float32 vectors,
i.e. cosine, run in query batches so that corpora of 100k+ sentences per side fit in memory."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from ..tasks.families import write_lines
from ..tasks.registry import Task
from .embedding import embed_sentences
from .outcomes import item_ids, write_language
from .ranking import TOP_K, average_precision_at_k

log = logging.getLogger(__name__)

MARGIN_K = 4  # neighbourhood size of the margin (LASER/XTREME)
QUERY_BATCH = 8192  # queries per faiss search call: bounds the (batch x k) result buffers

Embed = Callable[[list[str]], np.ndarray]
Items = tuple[list[str], dict[str, list]]  # per-item ids and outcome columns


def retrieval_layer(layer: int, num_layers: int) -> int:
    """-1 means the paper's depth: layer 14 of 24 (XLM-R large), scaled to this model's depth."""
    if layer == -1:
        return round(14 * num_layers / 24)
    if not 0 <= layer <= num_layers:
        raise ValueError(f"retrieval.layer={layer} is outside 0..{num_layers} for this model")
    return layer


# ---------------------------------------------------------------- neighbour search
def normalized(vectors) -> np.ndarray:
    """float32, C-contiguous, unit rows (what faiss needs for inner product = cosine)."""
    x = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    faiss.normalize_L2(x)
    return x


def knn(queries: np.ndarray, keys: np.ndarray, k: int, batch: int = QUERY_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """The k largest inner products of each query among the keys: (similarities, key indices),
    both [n_queries, k], best first. Inputs must be float32 (see `normalized`)."""
    k = min(k, len(keys))
    sims = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    if k == 0 or len(queries) == 0:
        return sims, idx
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    for start in range(0, len(queries), batch):
        sims[start:start + batch], idx[start:start + batch] = index.search(queries[start:start + batch], k)
    return sims, idx


# ---------------------------------------------------------------- Tatoeba
def nearest(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of each source's nearest target (cosine)."""
    return knn(sources, targets, 1)[1][:, 0]


def tatoeba_language(embed: Embed, pairs: list[dict], out: Path) -> tuple[dict[str, float], Items]:
    found = nearest(embed([p["source"] for p in pairs]), embed([p["target"] for p in pairs]))
    write_lines(out, [str(int(i)) for i in found])
    correct = found == np.arange(len(pairs))
    return {"accuracy": float(np.mean(correct))}, (item_ids(pairs), {"correct": correct.astype(int).tolist()})


def mining_items(predicted: set, gold: set, sources: list[str]) -> tuple[list[str], dict[str, list]]:
    """Per source sentence of the corpus (every one, so that two systems' rows pair one to one,
    whatever each mined): its right, mined and gold pairs; their sums give `bucc_f1` exactly."""
    sources = sorted({*sources, *(s for s, _ in predicted | gold)})
    stats = {"tp": dict.fromkeys(sources, 0), "n_pred": dict.fromkeys(sources, 0), "n_gold": dict.fromkeys(sources, 0)}
    for pair in predicted:
        stats["n_pred"][pair[0]] += 1
        stats["tp"][pair[0]] += pair in gold
    for pair in gold:
        stats["n_gold"][pair[0]] += 1
    return sources, {k: [v[s] for s in sources] for k, v in stats.items()}


# ---------------------------------------------------------------- BUCC mining
def margin_mine(x: np.ndarray, y: np.ndarray, k: int = MARGIN_K,
                batch: int = QUERY_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i, j) of source i and target j with their ratio-margin scores
        score(x, y) = cos(x, y) / (sum_{z in NN_k(x)} cos(x, z) / 2k + sum_{z in NN_k(y)} cos(y, z) / 2k).
    Forward candidates (each source's best target among its k nearest, by score) and backward
    ones (each target's best source) are pooled, then taken best score first while neither
    sentence is already used ("max" retrieval of LASER/XTREME): a one-to-one set, unthresholded.
    Returns (pairs [m, 2] int64, scores [m] float64), best first."""
    if len(x) == 0 or len(y) == 0:
        return np.empty((0, 2), dtype=np.int64), np.empty(0)
    fwd_sim, fwd_idx = knn(x, y, k, batch)
    bwd_sim, bwd_idx = knn(y, x, k, batch)
    x_mean = fwd_sim.mean(axis=1, dtype=np.float64)  # mean cosine of each source to its k NN
    y_mean = bwd_sim.mean(axis=1, dtype=np.float64)
    fwd = fwd_sim / ((x_mean[:, None] + y_mean[fwd_idx]) / 2)
    bwd = bwd_sim / ((y_mean[:, None] + x_mean[bwd_idx]) / 2)
    f_arg, b_arg = fwd.argmax(axis=1), bwd.argmax(axis=1)
    rows_x, rows_y = np.arange(len(x)), np.arange(len(y))
    src = np.concatenate([rows_x, bwd_idx[rows_y, b_arg]])
    tgt = np.concatenate([fwd_idx[rows_x, f_arg], rows_y])
    score = np.concatenate([fwd[rows_x, f_arg], bwd[rows_y, b_arg]])
    used_src, used_tgt, keep = set(), set(), []
    for c in np.argsort(-score, kind="stable"):
        s, t = int(src[c]), int(tgt[c])
        if s not in used_src and t not in used_tgt:
            used_src.add(s)
            used_tgt.add(t)
            keep.append(c)
    keep = np.array(keep, dtype=np.int64)
    return np.stack([src[keep], tgt[keep]], axis=1), score[keep]


def best_threshold(scores: np.ndarray, correct: np.ndarray, n_gold: int) -> float:
    """The score threshold (keep candidates with score >= it) that maximises F1 against n_gold
    gold pairs; `correct` marks the candidates that are gold. Only cuts between different scores
    are possible; the threshold is the midpoint to the next lower score. With no correct
    candidate every candidate is kept (the lowest score)."""
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], np.cumsum(correct[order])
    extracted = np.arange(1, len(s) + 1)
    cut = np.append(s[:-1] > s[1:], True)  # the last candidate of each run of equal scores
    f1 = np.where(hits > 0, 2 * hits / (extracted + max(n_gold, 1)), 0.0)  # = 2PR / (P + R)
    f1[~cut] = -1.0
    best = int(np.argmax(f1))
    if f1[best] <= 0:
        return float(s[-1])
    return float((s[best] + s[best + 1]) / 2) if best + 1 < len(s) else float(s[best])


def bucc_f1(predicted: set, gold: set) -> dict[str, float]:
    """XTREME's bucc_f1 on pair sets, as fractions."""
    correct = len(predicted & gold)
    if not correct:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    p, r = correct / len(predicted), correct / len(gold)
    return {"f1": 2 * p * r / (p + r), "precision": p, "recall": r}


def _unique(texts: list[str], ids: list[str]) -> tuple[list[str], list[str | None]]:
    """Distinct texts, and for each the id it belongs to (None when the text has several ids:
    such a text takes part in the search but is never predicted, as in XTREME's evaluation)."""
    owner: dict[str, str | None] = {}
    for text, sid in zip(texts, ids):
        owner[text] = None if text in owner else sid
    return list(owner), list(owner.values())


def mine_record(embed: Embed, record: dict, k: int = MARGIN_K) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Mine one corpus: (candidate id pairs, their scores), best first. Sentences are embedded
    once per distinct text (LASER/XTREME "unify")."""
    src_texts, src_owner = _unique(record["sources"], record["source_ids"])
    tgt_texts, tgt_owner = _unique(record["targets"], record["target_ids"])
    pairs, scores = margin_mine(embed(src_texts), embed(tgt_texts), k)
    keep = [n for n, (i, j) in enumerate(pairs) if src_owner[i] is not None and tgt_owner[j] is not None]
    return [(src_owner[pairs[n, 0]], tgt_owner[pairs[n, 1]]) for n in keep], scores[keep]


def bucc_language(embed: Embed, dev: dict, test: dict, out: Path) -> tuple[dict[str, float], Items]:
    dev_pairs, dev_scores = mine_record(embed, dev)
    gold_dev = set(map(tuple, dev["gold"]))
    threshold = best_threshold(dev_scores, np.array([p in gold_dev for p in dev_pairs], dtype=bool), len(gold_dev))
    test_pairs, test_scores = mine_record(embed, test)
    predicted = [p for p, s in zip(test_pairs, test_scores) if s >= threshold]
    write_lines(out, [f"{s}\t{t}" for s, t in predicted])
    gold = set(map(tuple, test["gold"]))
    items = mining_items(set(predicted), gold, test["source_ids"])
    return {**bucc_f1(set(predicted), gold), "threshold": threshold}, items


# ---------------------------------------------------------------- answer retrieval (LAReQA, Mewsli-X)
def embed_distinct(embed: Embed, texts: list[str]) -> np.ndarray:
    """One vector per text, each distinct text embedded once (in one call: batched by length)."""
    distinct = list(dict.fromkeys(texts))
    vectors = embed(distinct)
    if len(distinct) == len(texts):
        return vectors
    row = {t: i for i, t in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]


def answer_retrieval_language(embed: Embed, queries: list[dict], pool_ids: list[str], keys: np.ndarray,
                              out: Path) -> tuple[dict[str, float], Items]:
    """Rank the pool for each query ({id, query, relevant}); writes {query id: [top-20 candidate
    ids]} as JSON (XTREME's Mewsli-X prediction layout)."""
    found = knn(embed_distinct(embed, [q["query"] for q in queries]), keys, TOP_K)[1]
    ranked = [[pool_ids[j] for j in row] for row in found.tolist()]
    ap = [average_precision_at_k(q["relevant"], r) for q, r in zip(queries, ranked)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({q["id"]: r for q, r in zip(queries, ranked)}, ensure_ascii=False), encoding="utf-8")
    return {"map_at_20": float(np.mean(ap))}, (item_ids(queries), {"ap": ap})


def _single(records: list[dict], what: str) -> dict:
    if len(records) != 1:
        raise ValueError(f"{what}: a mining split is one record (the whole corpus), got {len(records)}")
    return records[0]


# ---------------------------------------------------------------- entry point
def retrieval_eval(model, tokenizer, task: Task, tests: dict[str, list[dict]], devs: dict[str, list[dict]],
                   layer: int, pooling: str, batch_size: int, max_length: int, bf16: bool,
                   pred_dir: Path, pool: list[dict] | None = None) -> dict[str, dict[str, float]]:
    """Score a retrieval task in each test language; returns {lang: {metric: value in 0..1}} and
    writes `<pred_dir>/<task>/test-<lang>.tsv` (Tatoeba: the retrieved English line index per
    line; BUCC: `source_id<TAB>english_id` per mined pair; answer retrieval: `test-<lang>.json`).
    `devs` is only read for mining, `pool` (the candidates every query searches) for answer retrieval."""

    kind = task.notes.get("retrieval")
    # Tatoeba's English sides repeat across languages (63,564 distinct of 80,877 lines offline):
    # each distinct sentence is embedded once per call
    seen: dict[str, np.ndarray] = {}

    def vectors(sentences: list[str]) -> np.ndarray:
        return normalized(embed_sentences(model, tokenizer, sentences, layer, pooling, batch_size, max_length,
                                          bf16).numpy())

    def embed(sentences: list[str]) -> np.ndarray:
        if kind != "alignment":
            return vectors(sentences)
        if todo := list(dict.fromkeys(s for s in sentences if s not in seen)):
            seen.update(zip(todo, vectors(todo)))
        return np.stack([seen[s] for s in sentences]) if sentences else np.zeros((0, model.config.hidden_size),
                                                                                   np.float32)

    results, keys = {}, None
    for lang, examples in tests.items():
        out = Path(pred_dir) / task.name / f"test-{lang}.tsv"
        if kind == "answer_retrieval":
            if keys is None:  # once, for every language: the pool does not depend on it
                if not pool:
                    raise ValueError(f"{task.name}: no candidate pool to retrieve from")
                t0 = time.perf_counter()
                keys, pool_ids = embed_distinct(vectors, [c["text"] for c in pool]), [c["id"] for c in pool]
                log.info("%s: pool of %d candidates (%d distinct texts) embedded in %.1f s", task.name, len(pool),
                         len({c["text"] for c in pool}), time.perf_counter() - t0)
            results[lang], items = answer_retrieval_language(vectors, examples, pool_ids, keys,
                                                             out.with_suffix(".json"))
        elif kind == "alignment":
            results[lang], items = tatoeba_language(embed, examples, out)
        elif kind == "mining":
            if lang not in devs:
                raise ValueError(f"{task.name}: no dev data for '{lang}' (its threshold is chosen on dev gold)")
            results[lang], items = bucc_language(embed, _single(devs[lang], f"{task.name} dev {lang}"),
                                                 _single(examples, f"{task.name} test {lang}"), out)
        else:
            raise ValueError(f"task {task.name}: notes['retrieval'] must be 'alignment', 'mining' or "
                             f"'answer_retrieval', not {kind!r}")
        write_language(pred_dir, task.name, lang, *items)
        log.info("%s %s: %s", task.name, lang, {m: round(v, 4) for m, v in results[lang].items()})
    return results
