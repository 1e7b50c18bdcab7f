"""The paired bootstrap: identical arms give an interval around 0, a planted difference is found,
intervals narrow as items grow, and the full-sample metric is the logged one."""
import numpy as np
import pandas as pd
import pytest

from adapter_stilts.evaluation.aggregate import headline, macro_average
from adapter_stilts.evaluation.bootstrap import full_sample_scores, gain_interval, pair
from adapter_stilts.evaluation.outcomes import language_metrics, task_formulas
from adapter_stilts.tasks.lookup import get_task

XNLI, XQUAD, UDPOS = get_task("xnli"), get_task("xquad"), get_task("udpos")


def _accuracy_frame(p_correct: dict[str, float], n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.concat([pd.DataFrame({"language": lang, "item_id": [f"i{j}" for j in range(n)],
                                    "correct": (rng.random(n) < p).astype(int)}) for lang, p in p_correct.items()])


def _qa_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f1 = np.clip(rng.random(n) + shift, 0, 1)
    return pd.DataFrame({"language": "de", "item_id": [f"q{j}" for j in range(n)], "exact_match": (f1 > 0.8) * 1.0,
                         "f1": f1})


def test_identical_arms_give_an_interval_around_zero():
    frame = _accuracy_frame({"de": 0.6, "sw": 0.4}, 150, 0)
    iv = gain_interval([pair(XNLI, {42: frame}, {42: frame.copy()})], replicates=500)
    assert iv.estimate == 0 and iv.low <= 0 <= iv.high and not iv.excludes_zero
    # two independent runs of the same system: a difference, but not a claim
    iv = gain_interval([pair(XNLI, {42: _accuracy_frame({"de": 0.6}, 150, 1)},
                             {42: _accuracy_frame({"de": 0.6}, 150, 2)})])
    assert iv.low < 0 < iv.high


def test_a_planted_difference_is_found_and_intervals_narrow_with_items():
    widths = []
    for n in (100, 400, 1600):
        base = _accuracy_frame({"de": 0.5, "sw": 0.5}, n, 3)
        arm = base.copy()
        flip = np.random.default_rng(4).random(len(arm)) < 0.2  # 20% of the wrong items made right
        arm["correct"] = np.where(flip, 1, arm["correct"])
        iv = gain_interval([pair(XNLI, {1: arm}, {1: base})], replicates=1000)
        assert iv.excludes_zero and iv.low > 0 and iv.low < iv.estimate < iv.high
        assert iv.n_items == 2 * n
        widths.append(iv.high - iv.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.3)  # ~ 1 / sqrt(n)


def test_full_sample_bootstrap_metric_is_the_logged_metric():
    rng = np.random.default_rng(5)
    tags = pd.concat([pd.DataFrame({"language": lang, "item_id": [f"s{j}" for j in range(90)],
                                    "tp": rng.integers(0, 5, 90), "n_pred": rng.integers(4, 9, 90),
                                    "n_gold": rng.integers(4, 9, 90), "tok_correct": rng.integers(0, 5, 90),
                                    "n_tokens": rng.integers(5, 9, 90)}) for lang in ("de", "ja", "zh")])
    for task, frame in ((UDPOS, tags), (XQUAD, _qa_frame(120, 6))):
        arm, _ = full_sample_scores(pair(task, {7: frame}, {7: frame}))
        logged = macro_average(language_metrics(task_formulas(task), frame))  # what the pipeline logs per run
        assert arm[0] == pytest.approx(headline(task, logged), abs=1e-12)


def test_seeds_widen_the_interval_and_pair_by_seed():
    """Two-level bootstrap: a gain that flips sign between seeds is not a claim, though every
    seed's own item-level interval excludes 0."""
    base = {s: _accuracy_frame({"de": 0.5}, 400, 10 + s) for s in range(3)}
    arm = {}
    for s, frame in base.items():
        shifted = frame.copy()
        rng = np.random.default_rng(20 + s)
        target = 1 if s != 1 else 0  # seeds 0 and 2 gain, seed 1 loses
        shifted["correct"] = np.where(rng.random(len(frame)) < 0.4, target, frame["correct"])
        arm[s] = shifted
        assert gain_interval([pair(XNLI, {s: shifted}, {s: frame})]).excludes_zero
    iv = gain_interval([pair(XNLI, arm, base)])
    assert iv.n_seeds == 3 and iv.low < 0 < iv.high
    # consistent gains over seeds stay a claim
    steady = {s: f.assign(correct=np.maximum(f["correct"], (np.random.default_rng(s).random(len(f)) < 0.3) * 1))
              for s, f in base.items()}
    assert gain_interval([pair(XNLI, steady, base)]).excludes_zero


def test_pooled_tasks_and_unpaired_items():
    acc = _accuracy_frame({"de": 0.5}, 200, 30)
    qa_base, qa_arm = _qa_frame(200, 31), _qa_frame(200, 31, shift=0.3)
    tasks = [pair(XNLI, {1: acc}, {1: acc}), pair(XQUAD, {1: qa_arm}, {1: qa_base})]
    pooled = gain_interval(tasks)
    alone = gain_interval(tasks[1:])
    assert pooled.estimate == pytest.approx(alone.estimate / 2) and pooled.n_items == 400
    # items only one arm scored are left out, and counted
    short = pair(XNLI, {1: acc.iloc[:150]}, {1: acc})
    assert short.unpaired == 50 and short.n_items == 150
    with pytest.raises(ValueError, match="share no seed"):
        pair(XNLI, {1: acc}, {2: acc})
