"""Confidence intervals for gains: a paired bootstrap over test items, stratified by language,
recomputing the real corpus-level metric (seqeval span F1, SQuAD/MLQA EM and F1, accuracy, BUCC
F1) from per-item outcomes (evaluation/outcomes.py) on every resample; with several seeds, a
two-level bootstrap: each replicate draws the test items once (every seed of both arms scored the
same items: data.eval_seed), scores every seed on them, then draws seeds with replacement and
averages their gains. A task's score is its macro average over languages (XTREME's), and the gain
of several tasks (the `avg` column) averages their per-replicate gains, with the same seed draw.

Pairing is by (language, item id); items only one arm has are left out and counted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .aggregate import headline
from .outcomes import Formula, metrics_from_sums, task_formulas

DEFAULT_REPLICATES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float  # the gain on the full sample (mean over seeds)
    low: float
    high: float
    n_items: int  # paired test items (all languages, all tasks of the comparison)
    n_seeds: int
    unpaired: int = 0  # items only one arm had (left out)
    base: float = float("nan")  # the baseline's score on the same paired seeds, items and tasks

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass
class PairedTask:
    """One task's outcomes for two arms on their common seeds and items, as arrays
    `[seed, item, column]` per language."""
    task: object
    formulas: dict[str, Formula]
    columns: list[str]
    seeds: list
    arm: dict[str, np.ndarray]
    base: dict[str, np.ndarray]
    unpaired: int

    @property
    def n_items(self) -> int:
        return sum(a.shape[1] for a in self.arm.values())


def pair(task, arm: dict, base: dict) -> PairedTask:
    """Align two arms' outcome frames ({seed: DataFrame}) on their common seeds and items."""
    formulas = task_formulas(task)
    columns = sorted({c for f in formulas.values() for c in f.columns()})
    seeds = sorted(set(arm) & set(base), key=str)
    if not seeds:
        raise ValueError(f"{task.name}: the two arms share no seed ({sorted(arm)} vs {sorted(base)})")
    frames = [arm[s] for s in seeds] + [base[s] for s in seeds]
    languages = sorted(set.intersection(*(set(f["language"]) for f in frames)))
    arrays: tuple[dict, dict] = ({}, {})
    unpaired = 0
    for lang in languages:
        per = [f[f["language"] == lang].set_index("item_id") for f in frames]
        every = set.union(*(set(p.index) for p in per))
        common = sorted(set.intersection(*(set(p.index) for p in per)))
        unpaired += len(every) - len(common)
        stacked = np.stack([p.loc[common, columns].to_numpy(float) for p in per])  # [2 * seeds, items, columns]
        arrays[0][lang], arrays[1][lang] = stacked[: len(seeds)], stacked[len(seeds):]
    return PairedTask(task, formulas, columns, seeds, arrays[0], arrays[1], unpaired)


def corpus_scores(task, formulas: dict[str, Formula], columns: list[str], side: dict[str, np.ndarray],
                  counts: dict[str, np.ndarray]) -> np.ndarray:
    """A task's macro-averaged headline score per run and replicate, [runs, replicates]: side[lang]
    is [runs, items, columns] of per-item outcomes, counts[lang] is [replicates, items] (how often
    each item is drawn); the real corpus metric is recomputed from the drawn items' column sums."""
    per_lang = []
    for lang, values in side.items():
        sums = np.einsum("ri,sic->src", counts[lang], values)  # [runs, replicates, columns]
        metrics = metrics_from_sums(formulas, {c: sums[..., j] for j, c in enumerate(columns)},
                                    counts[lang].sum(axis=1))
        per_lang.append(headline(task, metrics))
    return np.mean(per_lang, axis=0)


def _scores(p: PairedTask, side: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> np.ndarray:
    return corpus_scores(p.task, p.formulas, p.columns, side, counts)


def full_sample_scores(p: PairedTask) -> tuple[np.ndarray, np.ndarray]:
    """(arm, base) scores per seed on every paired item (what was logged, if nothing was unpaired)."""
    ones = {lang: np.ones((1, a.shape[1])) for lang, a in p.arm.items()}
    return _scores(p, p.arm, ones)[:, 0], _scores(p, p.base, ones)[:, 0]


def draw_counts(n_items: dict[str, int], rng: np.random.Generator, replicates: int) -> dict[str, np.ndarray]:
    """A bootstrap resample of each language's items (stratified by language): [replicates, items] counts."""
    return {lang: rng.multinomial(n, np.full(n, 1 / n), size=replicates) for lang, n in n_items.items()}


def _draw_counts(p: PairedTask, rng: np.random.Generator, replicates: int) -> dict[str, np.ndarray]:
    return draw_counts({lang: a.shape[1] for lang, a in p.arm.items()}, rng, replicates)


def gain_interval(tasks: list[PairedTask], replicates: int = DEFAULT_REPLICATES, level: float = LEVEL,
                  seed: int = 0) -> Interval:
    """The gain (arm - base), averaged over `tasks`, with its percentile interval. Every task must
    have the same seeds (the avg column: the seeds every task of the row has)."""
    seeds = tasks[0].seeds
    if any(t.seeds != seeds for t in tasks):
        raise ValueError("every task of a pooled gain needs the same seeds")
    rng = np.random.default_rng(seed)
    draws, full, base = [], [], []
    for t in tasks:
        counts = _draw_counts(t, rng, replicates)
        draws.append(_scores(t, t.arm, counts) - _scores(t, t.base, counts))  # [seeds, replicates]
        arm_full, base_full = full_sample_scores(t)
        full.append(arm_full - base_full)
        base.append(base_full)
    per_seed = np.mean(draws, axis=0)  # [seeds, replicates]
    if len(seeds) > 1:  # second level: the seeds themselves, drawn with replacement per replicate
        pick = rng.integers(0, len(seeds), size=(replicates, len(seeds)))
        replicate_gain = per_seed[pick, np.arange(replicates)[:, None]].mean(axis=1)
    else:
        replicate_gain = per_seed[0]
    alpha = (1 - level) / 2
    low, high = np.quantile(replicate_gain, [alpha, 1 - alpha])
    return Interval(float(np.mean(full)), float(low), float(high), sum(t.n_items for t in tasks), len(seeds),
                    sum(t.unpaired for t in tasks), float(np.mean(base)))
