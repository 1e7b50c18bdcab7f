"""The cross-experiment report, on a real MLflow SQLite store written with the project's Tracker in
the pipeline's run layout (parents, intermediate and target children, their tags and metrics)."""
import csv
import time

import numpy as np
import pytest

from adapter_stilts.report import NO_INTERMEDIATE, ReportError, RowKey, Sample, build_report, keep_latest
from adapter_stilts.tracking import Tracker
from conftest import run_cli

# inputs: (experiment, mode, model, seed) -> {(setup, task): test/avg metrics (fractions)}
ADAPTERS, FULL_MODEL = "me5-small", "/models/xlm-roberta-base"
RUNS = [
    ("matrix_a", "adapters", ADAPTERS, 1, {
        ("anli_plus", "xnli"): {"accuracy": 0.20},  # replaced by the rerun below
        ("anli_plus", "xquad"): {"exact_match": 0.40, "f1": 0.60},
        ("none", "xnli"): {"accuracy": 0.50},
        ("none", "xquad"): {"exact_match": 0.30, "f1": 0.50}}),
    ("matrix_a", "adapters", ADAPTERS, 2, {
        ("anli_plus", "xnli"): {"accuracy": 0.62},
        ("anli_plus", "xquad"): {"exact_match": 0.44, "f1": 0.66},
        ("none", "xnli"): {"accuracy": 0.54},
        ("none", "xquad"): {"exact_match": 0.32, "f1": 0.56}}),
    ("matrix_a", "adapters", ADAPTERS, 1, {  # a later rerun of seed 1: it wins
        ("anli_plus", "xnli"): {"accuracy": 0.58}}),
    ("matrix_full", "full", FULL_MODEL, 1, {  # has no xquad
        ("mnli", "xnli"): {"accuracy": 0.70},
        ("none", "xnli"): {"accuracy": 0.65}}),
]
LATER_BASELINE = ("matrix_b", "adapters", ADAPTERS, 1, {("none", "xnli"): {"accuracy": 0.90}})


def _invocation(exp, mode, model, seed, results):
    """One `run.py` invocation as the pipeline logs it; returns {(setup, task): target run id}."""
    tracker = Tracker(exp)
    parent = tracker.start(exp, tags={"experiment": exp, "mode": mode, "seed": seed, "model": model,
                                      "config_key": "k"})
    ids = {}
    for setup in dict.fromkeys(s for s, _ in results):
        if setup != NO_INTERMEDIATE:
            tags = {"experiment": exp, "mode": mode, "intermediate": setup, "phase": "intermediate",
                    "task": setup, "seed": seed}
            with tracker.child(f"intermediate/{setup}", parent, tags) as run:
                run.log_metrics({"dev/accuracy": 0.99})
        for (s, task), metrics in results.items():
            if s != setup:
                continue
            tags = {"experiment": exp, "mode": mode, "intermediate": setup, "phase": "target", "task": task,
                    "seed": seed}
            with tracker.child(f"target/{task}/{setup}", parent, tags) as run:
                run.log_metrics({**{f"test/{lang}/{m}": v for m, v in metrics.items() for lang in ("de", "sw")},
                                 **{f"test/avg/{m}": v for m, v in metrics.items()}})
            ids[setup, task] = run.run_id
            time.sleep(0.01)  # distinct start times: "latest" is well defined
    parent.end()
    return ids


def _unfinished(exp, status):
    """A target run that did not finish (with a score that would show if it were read)."""
    tracker = Tracker(exp)
    parent = tracker.start(exp, tags={"experiment": exp, "mode": "adapters", "seed": 1, "model": ADAPTERS})
    run = tracker.start("target/xnli/anli_plus", parent, {"experiment": exp, "mode": "adapters", "seed": 1,
                                                          "intermediate": "anli_plus", "phase": "target",
                                                          "task": "xnli"})
    run.log_metrics({"test/avg/accuracy": 0.01})
    if status != "RUNNING":
        run.end(status)
    parent.end(status)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        ids = [_invocation(*r) for r in RUNS]
        _unfinished("matrix_a", "FAILED")
        _unfinished("matrix_a", "RUNNING")
        Tracker("empty_exp").start("empty_exp", tags={"experiment": "empty_exp"}).end()
        later = _invocation(*LATER_BASELINE)
        report = build_report(["matrix_a", "matrix_full"], folder / "out")
        yield dict(folder=folder, ids=ids, later=later, report=report, mp=mp)


def _headline(metrics):
    return (metrics["exact_match"] + metrics["f1"]) / 2 if "f1" in metrics else metrics["accuracy"]


def _scores(setup, task, mode="adapters", runs=RUNS):
    """The expected per-seed headline scores, the latest input per seed."""
    out = {}
    for _, m, _, seed, results in runs:
        if m == mode and (setup, task) in results:
            out[seed] = _headline(results[setup, task])
    return [out[s] for s in sorted(out)]


def _row(table, mode, setup):
    return next(r for r in table.rows if (r.mode, r.setup) == (mode, setup))


def test_cells_are_means_over_seeds_with_std_and_gain(store):
    table = store["report"].table
    assert [(r.mode, r.setup) for r in table.rows] == [("adapters", "none"), ("adapters", "anli_plus"),
                                                      ("full", "none"), ("full", "mnli")]
    assert table.tasks == ["xnli", "xquad"]
    row, base = _row(table, "adapters", "anli_plus"), _row(table, "adapters", NO_INTERMEDIATE)
    for task in ("xnli", "xquad"):
        mine, theirs = _scores("anli_plus", task), _scores("none", task)
        cell = table.cell(row, task)
        assert cell.n == 2
        assert cell.mean == pytest.approx(np.mean(mine))
        assert cell.std == pytest.approx(np.std(mine, ddof=1))
        assert cell.gain == pytest.approx(np.mean(mine) - np.mean(theirs))
        assert table.cell(base, task).gain is None  # the baseline itself
    # QA: (EM + F1) / 2 per seed, e.g. seed 2 of anli_plus: (0.44 + 0.66) / 2
    assert table.cell(row, "xquad").mean == pytest.approx(np.mean([(0.40 + 0.60) / 2, (0.44 + 0.66) / 2]))
    # avg: the mean over tasks; std over the per-seed averages
    per_seed = np.mean([_scores("anli_plus", "xnli"), _scores("anli_plus", "xquad")], axis=0)
    base_avg = np.mean([np.mean(_scores("none", t)) for t in ("xnli", "xquad")])
    avg = table.cell(row, "avg")
    assert avg.mean == pytest.approx(per_seed.mean()) and avg.std == pytest.approx(np.std(per_seed, ddof=1))
    assert avg.gain == pytest.approx(per_seed.mean() - base_avg)


def test_seed_filter_keeps_only_those_seeds(store, tmp_path):
    table = build_report(["matrix_a"], tmp_path / "seed2", seeds=["2"]).table
    row = _row(table, "adapters", "anli_plus")
    for task in ("xnli", "xquad"):
        cell = table.cell(row, task)
        assert cell.n == 1 and cell.mean == pytest.approx(_scores("anli_plus", task)[1])  # seed 2's
        assert cell.gain == pytest.approx(_scores("anli_plus", task)[1] - _scores("none", task)[1])
    with pytest.raises(ReportError, match="no finished target runs with seed 9 .*their seeds: 1, 2"):
        build_report(["matrix_a"], tmp_path / "seed9", seeds=["9"])


def test_gain_is_paired_with_the_baselines_runs_of_the_same_seeds():
    from adapter_stilts.report import Table
    none, mnli = RowKey(ADAPTERS, "adapters", NO_INTERMEDIATE), RowKey(ADAPTERS, "adapters", "mnli")
    base = [Sample("baseline", none, "xnli", seed, score, f"b{seed}", (1, 2)) for seed, score in (("42", 0.50), ("43", 0.40))]
    table = Table(base + [Sample("single", mnli, "xnli", "42", 0.55, "m42", (3, 4))])
    assert table.cell(mnli, "xnli").gain == pytest.approx(0.05)  # against seed 42's 0.50, not the mean 0.45
    assert table.cell(mnli, "avg").gain == pytest.approx(0.05)
    assert table.records()[-1]["baseline"] == pytest.approx(50.0)
    # a seed the baseline lacks: its mean over every seed it has
    table = Table(base + [Sample("single", mnli, "xnli", "7", 0.55, "m7", (3, 4))])
    assert table.cell(mnli, "xnli").gain == pytest.approx(0.10)


def test_latest_run_wins_and_unfinished_runs_are_ignored(store):
    table = store["report"].table
    row = _row(table, "adapters", "anli_plus")
    seed1 = table.data[row]["xnli"]["1"]
    assert seed1.score == pytest.approx(0.58) and seed1.run_id == store["ids"][2]["anli_plus", "xnli"]
    assert all(s.score > 0.1 for s in table.samples)  # the FAILED / RUNNING runs scored 0.01
    assert len(table.samples) == 4 * 2 + 2  # adapters: 2 setups x 2 tasks x 2 seeds; full: 2 x xnli


def test_markdown_marks_missing_tasks_and_shows_gains(store):
    table, md = store["report"].table, store["report"].table.markdown()
    row = _row(table, "adapters", "anli_plus")
    c = table.cell(row, "xnli")
    assert f"{c.mean * 100:.1f} ± {c.std * 100:.1f} ({c.gain * 100:+.1f}) n=2" in md
    full = next(line for line in md.splitlines() if "full: mnli" in line)
    assert full.startswith("| [xlm-roberta-base] full: mnli * |")  # two models: labels name them
    assert f"{70.0:.1f} ({(0.70 - 0.65) * 100:+.1f}) n=1 | – | {70.0:.1f} ({5.0:+.1f}) n=1 |" in full
    assert "no xquad" in md and "xquad ((EM+F1)/2)" in md
    assert table.cell(_row(table, "full", "mnli"), "xquad") is None


def test_csv_long_format(store):
    table = store["report"].table
    with open(store["report"].paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:8] == ["model", "mode", "setup", "task", "seed", "score", "baseline", "gain"]
    xquad = [r for r in rows if (r["mode"], r["setup"], r["task"]) == ("adapters", "anli_plus", "xquad")]
    assert [float(r["score"]) for r in xquad] == pytest.approx([s * 100 for s in _scores("anli_plus", "xquad")])
    # each seed against the baseline's run of the same seed
    assert [float(r["baseline"]) for r in xquad] == pytest.approx([s * 100 for s in _scores("none", "xquad")])
    # the mean of the per-seed gains is the table's gain
    for task in ("xnli", "xquad", "avg"):
        gains = [float(r["gain"]) for r in rows if (r["setup"], r["task"]) == ("anli_plus", task)]
        assert np.mean(gains) == pytest.approx(table.cell(_row(table, "adapters", "anli_plus"), task).gain * 100)
    baseline_rows = [r for r in rows if r["setup"] == NO_INTERMEDIATE]
    assert baseline_rows and all(r["gain"] == "" for r in baseline_rows)


def test_report_run_holds_the_three_files(store):
    from matplotlib.image import imread
    from mlflow.tracking import MlflowClient

    report = store["report"]
    client = MlflowClient(f"sqlite:///{store['folder'] / 'mlflow.db'}")
    run = client.get_run(report.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "reports"
    assert run.info.run_name == "report" and run.info.status == "FINISHED"
    assert run.data.tags["kind"] == "report" and run.data.tags["experiments"] == "matrix_a,matrix_full"
    assert {a.path for a in client.list_artifacts(report.run_id)} == {"report.md", "report.csv", "report.png"}
    png = report.paths["png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_default_reads_every_experiment_and_one_seed_across_experiments(store, tmp_path):
    report = build_report(None, tmp_path / "all")
    assert set(report.experiments) == {"matrix_a", "matrix_full", "matrix_b"}  # those with runs
    table = report.table
    base = _row(table, "adapters", NO_INTERMEDIATE)
    # matrix_b's later seed-1 baseline replaces matrix_a's: one seed, not two, and a note says so
    assert table.data[base]["xnli"]["1"].run_id == store["later"]["none", "xnli"]
    assert table.cell(base, "xnli").n == 2
    assert "runs from experiments matrix_a, matrix_b differ; the latest (matrix_b) is used" in table.markdown()


def test_a_shared_result_with_the_same_score_is_one_sample_without_a_note():
    row = RowKey("me5-small", "adapters", NO_INTERMEDIATE)
    first = Sample("baseline", row, "xnli", "42", 0.5, "r1", (1, 2))
    hit = Sample("multitask9", row, "xnli", "42", 0.5, "r2", (3, 4))  # a cache hit: the same score
    kept, notes = keep_latest([first, hit])
    assert kept == [hit] and notes == []
    kept, notes = keep_latest([first, Sample("multitask9", row, "xnli", "42", 0.6, "r3", (3, 4))])
    assert [s.run_id for s in kept] == ["r3"]
    assert notes == ["adapters: none, xnli, seed 42: runs from experiments baseline, multitask9 differ; "
                     + "the latest (multitask9) is used"]


def test_errors_name_the_store_and_the_nearest_experiment(store, tmp_path, monkeypatch):
    uri = f"sqlite:///{store['folder'] / 'mlflow.db'}"
    with pytest.raises(ReportError, match=r"unknown experiment 'matrix_ful'.*Did you mean 'matrix_full'\?"
                                          r".*Known experiments: Default, empty_exp, matrix_a, matrix_b, matrix_full"):
        build_report(["matrix_a", "matrix_ful"], tmp_path)
    with pytest.raises(ReportError, match=f"no finished target runs in experiment\\(s\\) empty_exp of the "
                                          f"MLflow store {uri}"):
        build_report(["empty_exp"], tmp_path)
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", missing)
    with pytest.raises(ReportError, match=f"no MLflow store at {missing}"):
        build_report(None, tmp_path)
    assert not (tmp_path / "nowhere.db").exists()


def test_cli(store, tmp_path):
    proc = run_cli(["report", "--exp", "matrix_a,matrix_full", "--output", str(tmp_path / "cli")], store["folder"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == store["report"].table.markdown().strip()
    assert {p.name for p in (tmp_path / "cli").iterdir()} == {"report.md", "report.csv", "report.png"}


def test_cli_error(store, tmp_path, monkeypatch, capsys):
    from adapter_stilts.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store['folder'] / 'mlflow.db'}")
    assert main(["report", "--exp", "matrx_full", "--output", str(tmp_path / "bad")]) == 2
    assert "error: unknown experiment 'matrx_full'" in capsys.readouterr().err
    assert main(["report", "--exp", "matrix_a", "--seed", "9,10", "--output", str(tmp_path / "bad")]) == 2
    assert "error: no finished target runs with seed 9, 10 in experiment(s) matrix_a" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
