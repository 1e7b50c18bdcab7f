"""Gains of a study with hierarchical bootstrap intervals: subsets, seeds, test items.

A cell's gain on a target is its score minus the no-intermediate score of the same model size and
seed (the same test items: data.eval_seed). A k's gain is the mean over its subsets of the mean
over seeds. Each bootstrap replicate draws (1) the test items, once per target and language,
shared by every run, and recomputes each run's corpus metric on them (evaluation/bootstrap.py);
(2) the subsets of each k with replacement; (3) within each drawn subset, its seeds with
replacement. The subset and seed draws depend only on (size, k), so averages over targets (a task
family, the XTREME average) average replicates drawn together.

Without per-item outcomes (rows from a table only), level (1) is skipped and a note says so."""
from __future__ import annotations

import contextlib
import logging
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..evaluation.bootstrap import LEVEL, corpus_scores, draw_counts
from ..evaluation.outcomes import task_formulas
from ..identity import NO_TASKS
from ..intermediate_setups import UNTRAINED
from ..tasks.lookup import get_task

log = logging.getLogger(__name__)
SIZE = ["model", "model_layers"]
XTREME = "xtreme"  # the average over every non-retrieval target (retrieval is reported apart)


@dataclass
class Curves:
    points: pd.DataFrame  # target, model, model_layers, k, intermediate_tasks, seed, gain, base
    curve: pd.DataFrame  # target, model, model_layers, k, gain, low, high, n_subsets, n_seeds
    replicates: dict[tuple, tuple[list[int], np.ndarray]]  # (target, model, layers) -> (ks, [R, len(ks)])
    controls: pd.DataFrame  # untrained adapter vs none: target, model, model_layers, gain, low, high, n_seeds
    per_language: pd.DataFrame  # target, model, model_layers, k, language, gain
    variance: pd.DataFrame  # target, model, model_layers, k, subsets, seeds, items (variance of one cell's gain)
    groups: dict[str, list[str]]  # aggregate name -> its targets
    notes: list[str] = field(default_factory=list)


def _run_scores(task_name: str, runs: pd.DataFrame, rows: pd.DataFrame, outcomes: dict, replicates: int, seed: int
                ) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
    """Per run (one row each in `runs`; `rows` has every language): its score per replicate [R]
    and on the full sample; True when items were resampled."""
    task = get_task(task_name)
    ids = list(runs["run_id"])
    frames = [outcomes.get(r) for r in ids]
    full = rows.groupby("run_id")["score"].mean().to_dict()  # the logged macro average
    if any(f is None for f in frames):
        return {r: np.full(replicates, full[r]) for r in ids}, full, False
    formulas = task_formulas(task)
    columns = sorted({c for f in formulas.values() for c in f.columns()})
    every = pd.concat([f[["language", "item_id", *columns]].assign(run=i) for i, f in enumerate(frames)],
                      ignore_index=True).drop_duplicates(["run", "language", "item_id"])
    every["language"], every["item_id"] = every["language"].astype(object), every["item_id"].astype(object)
    side = {}
    for lang, part in every.groupby("language", sort=True):
        present = part.groupby("item_id")["run"].nunique()
        common = present.index[present == len(frames)]  # items every run scored: they pair
        if len(common) == 0:
            continue
        part = part[part["item_id"].isin(common)].sort_values(["run", "item_id"])
        side[lang] = part[columns].to_numpy(float).reshape(len(frames), len(common), len(columns))
    rng = np.random.default_rng([seed, zlib.crc32(task_name.encode())])
    counts = draw_counts({lang: a.shape[1] for lang, a in side.items()}, rng, replicates)
    drawn = corpus_scores(task, formulas, columns, side, counts)  # [runs, R]
    ones = {lang: np.ones((1, a.shape[1])) for lang, a in side.items()}
    on_all = corpus_scores(task, formulas, columns, side, ones)[:, 0]
    return dict(zip(ids, drawn)), dict(zip(ids, on_all.tolist())), True


def _seed_draws(model: str, layers: int, n_seed: int, replicates: int, seed: int) -> np.ndarray:
    """[R, n_seed]: the seeds drawn per replicate for one model size. Seeds are crossed with
    subsets (a seed's baseline run serves every subset and k), so one draw serves every subset,
    every k and every target of the size."""
    rng = np.random.default_rng([seed, zlib.crc32(f"seeds/{model}/{layers}".encode())])
    return rng.integers(0, n_seed, size=(replicates, n_seed))


def _subset_draws(model: str, layers: int, k: int, n_sub: int, replicates: int, seed: int) -> np.ndarray:
    """[R, n_sub]: the subsets of one (size, k) drawn per replicate, the same for every target."""
    rng = np.random.default_rng([seed, zlib.crc32(f"subsets/{model}/{layers}/{k}".encode())])
    return rng.integers(0, n_sub, size=(replicates, n_sub))


def _hierarchical(gains: np.ndarray, subsets: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """gains [subsets, seeds, R] (NaN where a cell is missing) -> the k's mean gain per replicate
    [R]: the drawn subsets x the drawn seeds (each run's gain already on its drawn test items)."""
    r = np.arange(gains.shape[2])[:, None, None]
    picked = gains[subsets[:, :, None], seeds[:, None, :], r]  # [R, n_sub, n_seed]
    with np.errstate(all="ignore"), _quiet():
        return np.nanmean(np.nanmean(picked, axis=2), axis=1)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a missing cell
        yield


def compute_gains(frame: pd.DataFrame, outcomes: dict, strategy: str, replicates: int = 1000,
                  level: float = LEVEL, seed: int = 0) -> Curves:
    """Every target's (and aggregate's) gain vs k per model size, with intervals; `strategy` is
    the study's (k >= 2); k = 1 is the single-task rows, k = 0 the baseline."""
    notes: list[str] = []
    rows = frame[frame["strategy"].isin([NO_TASKS, UNTRAINED, "each", strategy])].copy()
    rows = _one_protocol(rows, notes)
    alpha = (1 - level) / 2
    points, curve, per_language, variance, controls = [], [], [], [], []
    reps: dict[tuple, tuple[list[int], np.ndarray]] = {}
    resampled_any = False
    design = _design(rows, strategy)
    for (target, model, layers), group in rows.groupby(["target_task", *SIZE], sort=True):
        runs = group.drop_duplicates("run_id")
        base_runs = runs[runs["strategy"] == NO_TASKS].drop_duplicates("target_seed").set_index("target_seed")["run_id"]
        if base_runs.empty:
            notes.append(f"{target} at {model}/{layers} layers: no baseline (k = 0) run; no gains")
            continue
        scores, full, resampled = _run_scores(target, runs, group, outcomes, replicates, seed)
        resampled_any |= resampled
        if not resampled:
            notes.append(f"{target} at {model}/{layers} layers: some runs have no per-item outcomes; intervals "
                         f"resample subsets and seeds only")
        lang_base = group[group["strategy"] == NO_TASKS].set_index(["target_seed", "language"])["score"]
        seeds, by_k = design[(model, layers)]
        seed_draw = _seed_draws(model, layers, len(seeds), replicates, seed)
        ks, k_reps = [], []
        arms = runs[runs["strategy"].isin(["each", strategy, NO_TASKS])]
        for k, subsets in by_k.items():
            at_k = arms[arms["k"] == k]
            g = np.full((len(subsets), len(seeds), replicates), np.nan)
            g_full = np.full((len(subsets), len(seeds)), np.nan)
            for _, run in at_k.iterrows():
                s = run["target_seed"]
                if s not in base_runs.index:
                    notes.append(f"{target} {run['setup']} seed {s} at {layers} layers: no baseline of that seed")
                    continue
                i, j, b = subsets.index(run["intermediate_tasks"]), seeds.index(s), base_runs[s]
                g[i, j] = scores[run["run_id"]] - scores[b]
                g_full[i, j] = full[run["run_id"]] - full[b]
                points.append({"target": target, "model": model, "model_layers": layers, "k": k,
                               "intermediate_tasks": run["intermediate_tasks"], "seed": s,
                               "gain": g_full[i, j], "base": full[b]})
                mine = group[group["run_id"] == run["run_id"]]
                for _, lr in mine.iterrows():
                    if (s, lr["language"]) in lang_base.index:
                        per_language.append({"target": target, "model": model, "model_layers": layers, "k": k,
                                             "language": lr["language"],
                                             "gain": lr["score"] - lang_base[(s, lr["language"])]})
            if not np.isfinite(g_full).any():
                continue  # this target has no run at this k (yet)
            rep = _hierarchical(g, _subset_draws(model, layers, k, len(subsets), replicates, seed), seed_draw)
            ks.append(int(k))
            k_reps.append(rep)
            with _quiet():
                estimate = float(np.nanmean(np.nanmean(g_full, axis=1)))
            low, high = np.nanquantile(rep, [alpha, 1 - alpha]) if np.isfinite(rep).any() else (np.nan, np.nan)
            done = np.isfinite(g_full)
            curve.append({"target": target, "model": model, "model_layers": layers, "k": int(k), "gain": estimate,
                          "low": float(low), "high": float(high), "n_subsets": int(done.any(axis=1).sum()),
                          "n_seeds": int(done.any(axis=0).sum()), "n_points": int(done.sum())})
            if done.any(axis=1).sum() > 1 and done.any(axis=0).sum() > 1:
                variance.append(_variance_split(target, model, layers, int(k), g, g_full))
        reps[(target, model, layers)] = (ks, np.stack(k_reps, axis=1))
        ctrl = runs[runs["strategy"] == UNTRAINED].drop_duplicates("target_seed").set_index("target_seed")["run_id"]
        paired = [s for s in seeds if s in ctrl.index and s in base_runs.index]
        if paired:
            g = np.full((1, len(seeds), replicates), np.nan)
            for s in paired:
                g[0, seeds.index(s)] = scores[ctrl[s]] - scores[base_runs[s]]
            rep = _hierarchical(g, np.zeros((replicates, 1), dtype=int), seed_draw)
            low, high = np.nanquantile(rep, [alpha, 1 - alpha])
            controls.append({"target": target, "model": model, "model_layers": layers,
                             "gain": float(np.mean([full[ctrl[s]] - full[base_runs[s]] for s in paired])),
                             "low": float(low), "high": float(high), "n_seeds": len(paired)})
    if not curve:
        raise ValueError("no target has both baseline and intermediate runs")
    curves = Curves(pd.DataFrame(points), pd.DataFrame(curve), reps, pd.DataFrame(controls),
                    pd.DataFrame(per_language), pd.DataFrame(variance), {}, notes)
    _add_aggregates(curves, alpha)
    if not resampled_any:
        curves.notes.append("no per-item outcomes: intervals resample subsets and seeds only")
    return curves


def _design(rows: pd.DataFrame, strategy: str) -> dict[tuple, tuple[list, dict[int, list[str]]]]:
    """Per model size, from every target's runs: the seeds (of the baselines) and each k's subsets,
    so every target of a size indexes (and draws) the same subsets and seeds."""
    out = {}
    for (model, layers), group in rows.groupby(SIZE, sort=True):
        seeds = sorted(group[group["strategy"] == NO_TASKS]["target_seed"].dropna().unique())
        arms = group[group["strategy"].isin(["each", strategy, NO_TASKS])]
        out[(model, layers)] = (seeds, {int(k): sorted(part["intermediate_tasks"].unique())
                                        for k, part in arms.groupby("k", sort=True)})
    return out


def _one_protocol(rows: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """One target protocol (target_settings) per target and size: the most common; others are noted."""
    keep = []
    for (target, model, layers), group in rows.groupby(["target_task", *SIZE]):
        counts = group.drop_duplicates("run_id")["target_settings"].value_counts()
        if len(counts) > 1:
            notes.append(f"{target} at {model}/{layers} layers: runs under {len(counts)} target protocols; "
                         f"using {counts.index[0]} ({counts.iloc[0]} runs), leaving out {int(counts.iloc[1:].sum())}")
        keep.append(group[group["target_settings"] == counts.index[0]])
    return pd.concat(keep) if keep else rows.iloc[0:0]


def _variance_split(target, model, layers, k, g: np.ndarray, g_full: np.ndarray) -> dict:
    """Method-of-moments components of one cell's gain at this k: between subsets, between seeds
    (same subset; test items fixed across seeds), and test-item sampling (the bootstrap variance
    of a run's gain over item draws)."""
    with _quiet():
        within = float(np.nanmean(np.nanvar(g_full, axis=1, ddof=1)))
        between = float(np.nanvar(np.nanmean(g_full, axis=1), ddof=1))
        items = float(np.nanmean(np.nanvar(g, axis=2, ddof=1)))
    n_seeds = int(np.median(np.isfinite(g_full).sum(axis=1)))
    return {"target": target, "model": model, "model_layers": layers, "k": k,
            "subsets": max(between - within / max(n_seeds, 1), 0.0), "seeds": within, "items": items}


def target_groups(targets: list[str]) -> dict[str, list[str]]:
    """Aggregates: each task family with a target, and the XTREME average (retrieval apart)."""
    groups: dict[str, list[str]] = {}
    for t in targets:
        groups.setdefault(f"family:{get_task(t).family}", []).append(t)
    non_retrieval = [t for t in targets if get_task(t).family != "retrieval"]
    if len(non_retrieval) > 1:
        groups[XTREME] = non_retrieval
    return {name: members for name, members in groups.items() if len(members) > 1 or name == XTREME}


def _add_aggregates(c: Curves, alpha: float) -> None:
    targets = sorted(c.curve["target"].unique())
    c.groups = target_groups(targets)
    rows, points = [], []
    for name, members in c.groups.items():
        for (model, layers), _ in c.curve.groupby(SIZE):
            parts = [c.replicates.get((t, model, layers)) for t in members]
            if any(p is None for p in parts):
                continue
            ks = sorted(set.intersection(*(set(p[0]) for p in parts)))
            stacked = np.mean([p[1][:, [p[0].index(k) for k in ks]] for p in parts], axis=0)
            c.replicates[(name, model, layers)] = (ks, stacked)
            for k in ks:
                at = c.curve[(c.curve["model"] == model) & (c.curve["model_layers"] == layers) & (c.curve["k"] == k)
                             & c.curve["target"].isin(members)]
                low, high = np.nanquantile(stacked[:, ks.index(k)], [alpha, 1 - alpha])
                rows.append({"target": name, "model": model, "model_layers": layers, "k": k,
                             "gain": float(at["gain"].mean()), "low": float(low), "high": float(high),
                             "n_subsets": int(at["n_subsets"].min()), "n_seeds": int(at["n_seeds"].min()),
                             "n_points": int(at["n_points"].min())})
        mine = c.points[c.points["target"].isin(members)]
        for key, group in mine.groupby([*SIZE, "k", "intermediate_tasks", "seed"]):
            if group["target"].nunique() == len(members):  # a point of the average needs every member
                points.append(dict(zip([*SIZE, "k", "intermediate_tasks", "seed"], key), target=name,
                                   gain=float(group["gain"].mean()), base=float(group["base"].mean())))
    if rows:
        c.curve = pd.concat([c.curve, pd.DataFrame(rows)], ignore_index=True)
    if points:
        c.points = pd.concat([c.points, pd.DataFrame(points)], ignore_index=True)
