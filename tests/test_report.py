"""The results table and the report built on it, on a real MLflow SQLite store written with the
project's Tracker in the pipeline's run layout: target runs with identity tags (id.*), per-language
metrics and per-item outcome artifacts."""
import time

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from adapter_stilts.evaluation.outcomes import OUTCOMES_ARTIFACT, OUTCOMES_FILE, language_metrics, task_formulas
from adapter_stilts.identity import ResultIdentity
from adapter_stilts.report import ReportError, build_report
from adapter_stilts.results_table import TABLE_COLUMNS, build_results
from adapter_stilts.tasks.lookup import get_task
from adapter_stilts.tracking import Tracker

ME5, XLMR = "me5-small", "/models/xlm-roberta-base"
LANGS = ("de", "sw")
N = 300  # items per language
SUBSET_A, SUBSET_B = ("mnli", "squad", "anli_plus"), ("mnli", "squad", "hellaswag")
TEN = ("anli_plus", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "socialiqa", "squad", "squad_v2")


def _outcomes(task: str, quality: float, seed: int) -> pd.DataFrame:
    """Per-item outcomes on the SAME items for every arm and seed; `quality` sets the level."""
    rng = np.random.default_rng(seed)
    frames = []
    for lang in LANGS:
        ids = [f"{lang}-{j}" for j in range(N)]
        if task == "xnli":
            frames.append(pd.DataFrame({"language": lang, "item_id": ids, "correct": (rng.random(N) < quality) * 1}))
        else:
            f1 = np.clip(rng.random(N) * quality * 2, 0, 1)
            frames.append(pd.DataFrame({"language": lang, "item_id": ids, "exact_match": (f1 > 0.9) * 1.0, "f1": f1}))
    return pd.concat(frames, ignore_index=True)


# (experiment, mode, model, seed, {(strategy, tasks, target task): outcome quality}); the outcome
# draw is seeded by the arm and seed, so "none" and a setup with the same quality are the same items
BASE = {("none", (), "xnli"): 0.5, ("none", (), "xquad"): 0.3}
RUNS = [
    ("matrix", "adapters", ME5, 1, {**BASE, ("each", ("mnli",), "xnli"): 0.8, ("each", ("mnli",), "xquad"): 0.3,
                                    ("multitask", SUBSET_A, "xnli"): 0.5, ("multitask", SUBSET_B, "xnli"): 0.6,
                                    ("multitask", TEN, "xnli"): 0.5, ("multitask", ("mnli", "squad"), "xnli"): 0.5}),
    ("matrix", "adapters", ME5, 2, {**BASE, ("each", ("mnli",), "xnli"): 0.75, ("each", ("mnli",), "xquad"): 0.3}),
    ("matrix", "adapters", ME5, 1, {("each", ("mnli",), "xnli"): 0.7}),  # a later rerun of seed 1: it wins
    ("full_matrix", "full", XLMR, 1, {("none", (), "xnli"): 0.6, ("each", ("mnli",), "xnli"): 0.65}),
]


def _quality_seed(strategy, tasks, target, seed, quality):
    # the same draw for the same quality: an arm equal to the baseline scores the same items the same way
    return int(quality * 1000) + seed * 7 + (target == "xquad")


def _invocation(exp, mode, model, seed, results, tmp):
    tracker = Tracker(exp)
    parent = tracker.start(exp, tags={"experiment": exp, "mode": mode, "seed": seed, "model": model})
    ids = {}
    for (strategy, tasks, target), quality in results.items():
        ident = ResultIdentity(model, 12 if model == ME5 else 24, mode, strategy, tasks, 400 * len(tasks),
                               seed if tasks else None, seed, target)
        frame = _outcomes(target, quality, _quality_seed(strategy, tasks, target, seed, quality))
        per_lang = language_metrics(task_formulas(get_task(target)), frame)
        tags = {"experiment": exp, "phase": "target", "task": target, **ident.tags()}
        with tracker.child(f"target/{target}/{ident.display_name}", parent, tags) as run:
            run.log_metrics({f"test/{lang}/{m}": v for lang, ms in per_lang.items() for m, v in ms.items()})
            run.log_metrics({f"n_items/{lang}": N for lang in LANGS})
            path = tmp / run.run_id / OUTCOMES_FILE
            path.parent.mkdir(parents=True)
            frame.to_parquet(path)
            run.log_artifacts(path, OUTCOMES_ARTIFACT)
        ids[strategy, tasks, target] = run.run_id
        time.sleep(0.01)  # distinct start times: "latest" is well defined
    parent.end()
    return ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        ids = [_invocation(*r, folder / "artifacts-in") for r in RUNS]
        tracker = Tracker("matrix")  # an unfinished run and one without identity tags: left out
        parent = tracker.start("matrix")
        run = tracker.start("target/xnli/x", parent, {"phase": "target", "task": "xnli",
                                                      **ResultIdentity(ME5, 12, "adapters", "each", ("sst2",),
                                                                       400, 1, 1, "xnli").tags()})
        run.log_metrics({"test/de/accuracy": 0.01})
        old = tracker.start("target/xnli/old", parent, {"phase": "target", "task": "xnli", "intermediate": "old"})
        old.log_metrics({"test/de/accuracy": 0.02})
        old.end()
        Tracker("empty_exp").start("empty_exp").end()
        report = build_report(["matrix", "full_matrix"], folder / "out", replicates=1000)
        yield dict(folder=folder, ids=ids, report=report, mp=mp, uri=f"sqlite:///{folder / 'mlflow.db'}")


def _row(table, mode, name, tasks=None):
    return next(r for r in table.rows if r[2] == mode and table.names[r] == name and (tasks is None or r[4] == tasks))


def test_results_table_is_one_row_per_run_and_language(store):
    results = build_results(["matrix"], store["uri"])
    frame = results.frame
    assert tuple(frame.columns) == TABLE_COLUMNS
    # runs: none x2 + mnli x2 + 4 multitask on seed 1; none x2 + mnli x2 on seed 2; the seed-1 xnli rerun
    # replaces the first (latest wins); the unfinished and the tagless run are left out
    assert frame["run_id"].nunique() == 8 + 4 and len(frame) == 12 * len(LANGS)
    assert any("left out: no identity tag" in n for n in results.notes)
    rerun = frame[(frame["setup"] == "mnli") & (frame["target_task"] == "xnli") & (frame["target_seed"] == 1)]
    assert set(rerun["run_id"]) == {store["ids"][2]["each", ("mnli",), "xnli"]}
    de = rerun[rerun["language"] == "de"].iloc[0]
    assert de["metric"] == "accuracy" and de["n_items"] == N and de["k"] == 1 and de["model_layers"] == 12
    qa = frame[(frame["target_task"] == "xquad")].iloc[0]
    assert qa["metric"] == "(EM+F1)/2"
    assert all(s > 0.1 for s in frame["score"])  # the unfinished run scored 0.01


def test_two_subsets_of_one_size_are_two_rows_and_rows_sort_by_k(store):
    table = store["report"].table
    me5 = [r for r in table.rows if r[2] == "adapters"]
    assert [(table.names[r], r[4]) for r in me5] == [
        ("none", ""), ("mnli", "mnli"), ("multitask2", "mnli,squad"), ("multitask3", "anli_plus,mnli,squad"),
        ("multitask3", "hellaswag,mnli,squad"), ("multitask10", ",".join(TEN))]
    md = table.markdown()
    assert "multitask3 (anli_plus, mnli, squad)" in md and "multitask3 (hellaswag, mnli, squad)" in md


def test_cells_are_means_over_seeds_with_paired_gains_and_intervals(store):
    table = store["report"].table
    runs = store["report"].table.results.frame.groupby("run_id")["score"].mean()
    ids = store["ids"]
    mnli = [runs[ids[2]["each", ("mnli",), "xnli"]], runs[ids[1]["each", ("mnli",), "xnli"]]]  # seeds 1, 2
    none = [runs[ids[0]["none", (), "xnli"]], runs[ids[1]["none", (), "xnli"]]]
    cell = table.cell(_row(table, "adapters", "mnli"), "xnli")
    assert cell.n == 2 and cell.mean == pytest.approx(np.mean(mnli)) and cell.std == pytest.approx(np.std(mnli, ddof=1))
    assert cell.gain.estimate == pytest.approx(np.mean(mnli) - np.mean(none), abs=1e-12)
    assert cell.gain.n_seeds == 2 and cell.gain.n_items == N * len(LANGS)
    assert cell.gain.excludes_zero and cell.gain.low > 0  # planted: 0.5 -> 0.7 / 0.75
    same = table.cell(_row(table, "adapters", "multitask3", "anli_plus,mnli,squad"), "xnli")
    assert same.gain.estimate == 0 and same.gain.low <= 0 <= same.gain.high and not same.gain.excludes_zero
    assert table.cell(_row(table, "adapters", "none"), "xnli").gain is None
    # avg: over the row's tasks; its gain pools the tasks' paired gains
    avg = table.cell(_row(table, "adapters", "mnli"), "avg")
    xquad = table.cell(_row(table, "adapters", "mnli"), "xquad")
    assert avg.gain.estimate == pytest.approx((cell.gain.estimate + xquad.gain.estimate) / 2)


def test_markdown_csv_and_heatmap_mark_gains_whose_interval_excludes_zero(store):
    report = store["report"]
    table, md = report.table, report.table.markdown()
    g = table.cell(_row(table, "adapters", "mnli"), "xnli").gain
    assert f"({g.estimate * 100:+.1f} [{g.low * 100:+.1f}, {g.high * 100:+.1f}]*)" in md
    same = table.cell(_row(table, "adapters", "multitask3", "anli_plus,mnli,squad"), "xnli").gain
    assert f"({same.estimate * 100:+.1f} [{same.low * 100:+.1f}, {same.high * 100:+.1f}])" in md
    full = next(line for line in md.splitlines() if "full: mnli" in line)
    assert full.startswith("| [xlm-roberta-base L24] full: mnli † | 1 |")  # two models: labels name them
    csv = pd.read_csv(report.paths["csv"])
    line = csv[(csv["setup"] == "mnli") & (csv["task"] == "xnli") & (csv["mode"] == "adapters")].iloc[0]
    assert line["significant"] and line["gain_low"] == pytest.approx(g.low * 100) and line["seeds"] == "1,2"
    assert not csv[(csv["intermediate_tasks"] == "anli_plus,mnli,squad")
                   & (csv["task"] == "xnli")]["significant"].iloc[0]
    assert csv[csv["setup"] == "none"]["gain"].isna().all()
    assert pd.read_parquet(report.paths["table"]).equals(table.results.frame)


def test_report_run_holds_its_files(store):
    from matplotlib.image import imread
    from mlflow.tracking import MlflowClient

    report = store["report"]
    client = MlflowClient(store["uri"])
    run = client.get_run(report.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "reports" and run.info.status == "FINISHED"
    assert run.data.tags["experiments"] == "full_matrix,matrix"
    assert {a.path for a in client.list_artifacts(report.run_id)} == {"report.md", "report.csv", "report.png",
                                                                      "results.parquet"}
    image = imread(report.paths["png"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_seed_filter(store, tmp_path):
    table = build_report(["matrix"], tmp_path / "seed2", seeds=["2"], replicates=200).table
    cell = table.cell(_row(table, "adapters", "mnli"), "xnli")
    assert cell.n == 1 and cell.gain.n_seeds == 1
    with pytest.raises(ReportError, match="no finished target runs with seed 9 .*their seeds: 1, 2"):
        build_report(["matrix"], tmp_path / "seed9", seeds=["9"])


def test_errors_name_the_store_and_the_nearest_experiment(store, tmp_path, monkeypatch):
    with pytest.raises(ReportError, match=r"unknown experiment 'full_matrx'.*Did you mean 'full_matrix'\?"):
        build_report(["matrix", "full_matrx"], tmp_path)
    with pytest.raises(ReportError, match=f"no finished target runs in experiment\\(s\\) empty_exp of the "
                                          f"MLflow store {store['uri']}"):
        build_report(["empty_exp"], tmp_path)
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", missing)
    with pytest.raises(ReportError, match=f"no MLflow store at {missing}"):
        build_report(None, tmp_path)
    assert not (tmp_path / "nowhere.db").exists()


def test_cli_results_and_report(store, tmp_path):
    out = tmp_path / "t.csv"
    proc = run_cli(["results", "--exp", "matrix", "--out", str(out)], store["folder"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"written to {out}" in proc.stdout and len(pd.read_csv(out)) == 12 * len(LANGS)
    proc = run_cli(["results", "--out", str(tmp_path / "t.json")], store["folder"])
    assert proc.returncode == 2 and "must end in .parquet or .csv" in proc.stderr
    proc = run_cli(["report", "--exp", "matrix,full_matrix", "--output", str(tmp_path / "cli")], store["folder"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| [me5-small L12] adapters: mnli | 1 |" in proc.stdout and "* = the interval excludes 0" in proc.stdout
    proc = run_cli(["report", "--exp", "matrx", "--output", str(tmp_path / "bad")], store["folder"])
    assert proc.returncode == 2 and "error: unknown experiment 'matrx'" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_gains_pair_only_runs_trained_and_scored_the_same_way(store):
    """Two protocols of one setup (e.g. the demo's and the matrix's XNLI sizes) are never paired."""
    from adapter_stilts.report import Table
    from adapter_stilts.results_table import ResultsTable

    frame = build_results(["matrix"], store["uri"], seeds=["2"]).frame
    ours = frame["setup"].isin(["none", "mnli"]) & (frame["target_task"] == "xnli")
    assert Table(ResultsTable(frame[ours].copy())).cell(_row_of(frame, "mnli"), "xnli").gain is not None
    other = frame[ours].copy()
    other.loc[other["setup"] == "none", "target_settings"] = "another-protocol"
    table = Table(ResultsTable(other))
    assert table.cell(_row_of(frame, "mnli"), "xnli").gain is None


def _row_of(frame, setup):
    from adapter_stilts.identity import ROW_COLUMNS

    return tuple(frame[frame["setup"] == setup].iloc[0][list(ROW_COLUMNS)])


def test_translated_intermediate_data_is_its_own_row(store):
    """The same task trained on translated data is another identity: kept beside its English-only
    twin in the results table, another row of the report with its own paired gain."""
    from adapter_stilts.report import Table
    from adapter_stilts.results_table import ResultsTable, fetch_outcomes, keep_latest, open_client

    frame = build_results(["matrix"], store["uri"], seeds=["2"]).frame
    ours = frame[frame["setup"].isin(["none", "mnli"]) & (frame["target_task"] == "xnli")]
    twin = ours[ours["setup"] == "mnli"]
    translated = twin.assign(intermediate_languages="de,en", run_id=twin["run_id"] + "-tt", started=twin["started"] + 1,
                             score=twin["score"] + 0.01)
    both, _ = keep_latest(pd.concat([ours, translated], ignore_index=True))
    assert set(both["run_id"]) == set(ours["run_id"]) | set(translated["run_id"])  # the later run replaced nothing
    outcomes = fetch_outcomes(open_client(store["uri"])[0], list(ours["run_id"].unique()))
    outcomes.update({f"{r}-tt": outcomes[r] for r in twin["run_id"].unique()})
    table = Table(ResultsTable(both), outcomes, replicates=200)
    assert [table.label(r) for r in table.rows] == ["adapters: none", "adapters: mnli", "adapters: mnli [de en]"]
    english, tt = table.rows[1:]
    assert tt[:7] == english[:7] and tt[7] == "de,en" and table.baseline(tt) == table.rows[0]
    assert table.cell(tt, "xnli").gain.n_items == N * len(LANGS)  # paired with the none row, with its interval
    assert "| adapters: mnli [de en] | 1 |" in table.markdown()
