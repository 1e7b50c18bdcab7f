"""The study's analysis on synthetic results with a planted law: gains with hierarchical
intervals recover it, the law comparison finds its form, extrapolation is measured on held-out k
only, task membership effects are found, and the whole analysis runs from a results folder."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from adapter_stilts.scaling.analysis import fit_table, load_rows, membership_table, run_analysis
from adapter_stilts.scaling.design import balanced_subsets
from adapter_stilts.scaling.gains import XTREME, compute_gains

POOL = ["anli_plus", "mnli", "squad", "hellaswag", "sst2", "siqa"]
KS = [0, 1, 2, 3, 4, 6]
LANGS = ["de", "sw"]
BASE = 0.5


def planted_gain(k: int, tasks: tuple[str, ...], layers: int) -> float:
    """log law in k, larger for larger models; sst2 in the subset adds 0.04."""
    return 0.03 * np.log1p(k) * layers / 12 + (0.04 if "sst2" in tasks else 0.0) * (k > 0)


def synthetic_study(tmp_path, layers_list=(12,), seeds=(1, 2), items=3000, seed_sd=0.004, untrained=True):
    """Cells of a study (targets xnli and pawsx), written as a sweep writes them: cells/*.csv and outcomes/*.parquet."""
    rng = np.random.default_rng(0)
    difficulty = {lang: np.random.default_rng(i).random(items) for i, lang in enumerate(LANGS)}
    rows, outcome_frames = [], []
    run = itertools.count()
    for layers in layers_list:
        for k in KS:
            subsets = balanced_subsets(POOL, k, 3, 0)
            for tasks in subsets + ([("untrained",)] if k == 0 and untrained else []):
                strategy = "none" if k == 0 else "each" if k == 1 else "multitask"
                real_tasks = () if k == 0 else tasks
                if tasks == ("untrained",):
                    strategy = "untrained"
                for s in seeds:
                    for target in ("xnli", "pawsx"):
                        run_id = f"r{next(run)}"
                        p = BASE + planted_gain(k, real_tasks, layers) + rng.normal(0, seed_sd) * (k > 0)
                        for lang in LANGS:
                            # an item is right when its difficulty is below the run's skill: runs pair on items
                            noise = rng.normal(0, 0.02, items)  # run-specific item luck (what items resampling sees)
                            correct = difficulty[lang][:items] + noise < p
                            outcome_frames.append(pd.DataFrame({"language": lang, "item_id": [f"i{i}" for i in
                                                                                               range(items)],
                                                                "correct": correct.astype(float), "run_id": run_id}))
                            rows.append({"model": "me5-small", "model_layers": layers, "mode": "adapters",
                                         "strategy": strategy, "intermediate_tasks": ",".join(real_tasks),
                                         "k": len(real_tasks), "intermediate_examples": 100 * len(real_tasks),
                                         "intermediate_seed": s if strategy != "none" else None, "target_seed": s,
                                         "target_task": target, "target_settings": f"proto-{target}",
                                         "setup": strategy, "language": lang, "metric": "accuracy",
                                         "score": correct.mean(), "n_items": items, "experiment": "synthetic",
                                         "run_id": run_id, "parent_run_id": "p", "started": 0})
    frame, outcomes = pd.DataFrame(rows), pd.concat(outcome_frames, ignore_index=True)
    folder = tmp_path / "results"
    (folder / "cells").mkdir(parents=True)
    (folder / "outcomes").mkdir()
    frame.to_csv(folder / "cells" / "all.csv", index=False)
    outcomes.to_parquet(folder / "outcomes" / "all.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    return synthetic_study(tmp_path_factory.mktemp("study"), layers_list=(4, 8, 12))


def test_gains_recover_the_planted_law_with_intervals_that_cover_it(study_folder):
    frame, outcomes, _ = load_rows("synthetic", study_folder)
    curves = compute_gains(frame, outcomes, "multitask", replicates=300)
    c = curves.curve[(curves.curve["target"] == "xnli") & (curves.curve["model_layers"] == 12)].set_index("k")
    assert list(c.index) == KS
    for k in KS[1:]:
        subsets = balanced_subsets(POOL, k, 3, 0)
        truth = np.mean([planted_gain(k, s, 12) for s in subsets])
        assert c.loc[k, "low"] <= truth <= c.loc[k, "high"], (k, truth, c.loc[k].to_dict())
        assert abs(c.loc[k, "gain"] - truth) < 0.02
    assert c.loc[0, "gain"] == 0 and c.loc[6, "low"] > 0  # all six tasks: a clear gain
    assert set(curves.curve["target"]) >= {"xnli", "pawsx", XTREME, "family:classification"}
    # the untrained control gains nothing: its interval covers 0
    ctrl = curves.controls.set_index(["target", "model_layers"]).loc[("xnli", 12)]
    assert ctrl["low"] <= 0 <= ctrl["high"]


def test_more_test_items_give_narrower_intervals(tmp_path):
    widths = []
    for items in (300, 3000):
        frame, outcomes, _ = load_rows("s", synthetic_study(tmp_path / str(items), items=items, seed_sd=0.0))
        c = compute_gains(frame, outcomes, "multitask", replicates=300).curve
        at = c[(c["target"] == "xnli") & (c["k"] == 6)].iloc[0]
        widths.append(at["high"] - at["low"])
    assert widths[1] < 0.6 * widths[0]


def test_without_outcomes_the_items_are_not_resampled_and_a_note_says_so(study_folder):
    frame, _, _ = load_rows("synthetic", study_folder)
    curves = compute_gains(frame, {}, "multitask", replicates=200)
    assert any("per-item outcomes" in n for n in curves.notes)
    c = curves.curve
    whole = c[(c["target"] == "xnli") & (c["k"] == 6) & (c["model_layers"] == 12)].iloc[0]
    pts = curves.points[(curves.points["target"] == "xnli") & (curves.points["k"] == 6)
                        & (curves.points["model_layers"] == 12)]["gain"]
    # one subset: only its two seeds are drawn, so the interval lies within their gains
    assert pts.min() - 1e-12 <= whole["low"] <= whole["high"] <= pts.max() + 1e-12
    with_items = compute_gains(frame, load_rows("synthetic", study_folder)[1], "multitask", replicates=200).curve
    wider = with_items[(with_items["target"] == "xnli") & (with_items["k"] == 6) & (with_items["model_layers"] == 12)]
    assert (wider["high"] - wider["low"]).iloc[0] > whole["high"] - whole["low"]


def test_fits_pick_the_log_law_and_extrapolate_on_held_out_k_only(study_folder):
    frame, outcomes, _ = load_rows("synthetic", study_folder)
    curves = compute_gains(frame, outcomes, "multitask", replicates=60)
    loko, extra = fit_table(curves)
    mine = loko[(loko["target"] == XTREME) & (loko["model_layers"] == 12)].dropna(subset=["loko_rmse"])
    rmse = mine.set_index("form")["loko_rmse"]
    assert rmse["log"] < rmse["linear"]
    e = extra[(extra["target"] == XTREME) & (extra["model_layers"] == 12)].set_index("form")
    held_out = sorted(int(c[7:]) for c in e.columns if c.startswith("error_k") and e[c].notna().any())
    assert held_out == [4, 6]  # fitted on k <= 3, measured on the larger k only
    assert e.loc["log", "mean_abs_error"] < 0.02 and e.loc["log", "low"] <= e.loc["log", "high"]


def test_membership_regression_finds_the_planted_task(study_folder):
    frame, outcomes, _ = load_rows("synthetic", study_folder)
    members = membership_table(compute_gains(frame, outcomes, "multitask", replicates=100))
    xnli = members[(members["target"] == "xnli") & (members["model_layers"] == 12)].set_index("task")
    assert xnli.loc["sst2", "low"] > 0.02
    assert xnli.drop(index="sst2")["effect"].abs().max() < xnli.loc["sst2", "effect"]


def test_the_whole_analysis_from_a_results_folder(study_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "analysis"
    summary = run_analysis("synthetic", source=str(study_folder), output=str(out), replicates=50)
    assert "## The answer (xtreme, me5-small at 12 layers)" in summary and "stand-in" in summary
    for name in ("curve", "points", "fits", "extrapolation", "size_extrapolation", "membership", "variance",
                 "per_language", "controls"):
        assert (out / f"{name}.csv").is_file(), name
    for plot in ("gain_vs_k", "targets", "predicted_vs_observed", "variance", "languages"):
        assert (out / f"{plot}.png").stat().st_size > 5000, plot
    sizes = pd.read_csv(out / "size_extrapolation.csv")
    assert set(sizes["held_out_layers"]) == {12} and (sizes["low"] <= sizes["high"]).all()
    # the planted law is log(1+k) x layers: the interaction law extrapolates to 12 layers, within a point
    inter = sizes[(sizes["target"] == "xtreme") & (sizes["form"] == "interaction")].iloc[0]
    assert inter["mean_abs_error"] < 0.01
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("reports").experiment_id], "tags.kind = 'scaling'")
    assert len(runs) == 1 and "summary.md" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}


def test_a_results_folder_without_cells_is_a_clear_error(tmp_path):
    from adapter_stilts.scaling.analysis import AnalysisError

    with pytest.raises(AnalysisError, match="no cells/\\*.csv"):
        load_rows("x", tmp_path)


def test_seeds_are_drawn_once_per_size_so_a_shared_baseline_moves_every_k_together():
    from adapter_stilts.scaling.gains import _hierarchical, _seed_draws, _subset_draws

    replicates, seed_effect = 400, np.array([0.0, 0.05, -0.03])  # a gain that depends on the seed only
    seeds = _seed_draws("m", 12, 3, replicates, 0)
    curves = [_hierarchical(np.broadcast_to(seed_effect[None, :, None], (n_sub, 3, replicates)).copy(),
                            _subset_draws("m", 12, k, n_sub, replicates, 0), seeds) for k, n_sub in ((2, 4), (3, 5))]
    assert np.allclose(curves[0], curves[1])  # the same seed draw at every k (crossed, not nested)
    assert curves[0].std() > 0.01  # and the seeds' spread is in the interval, not averaged away
