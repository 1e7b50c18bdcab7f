"""The results table: every finished target run of an MLflow store as ONE long-format table, one
row per run and test language, keyed by the run's structured identity (identity.py): the identity
columns, the headline metric and its score, the number of test items, the experiment and the run
id. Built from the store alone (tags and metrics), so it holds runs made on any machine; the
report, the per-invocation summary and the scaling analysis are views of it.

    python run.py results [--exp NAME ...] [--out results.parquet | results.csv]
"""
from __future__ import annotations

import difflib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .evaluation.aggregate import headline, headline_name
from .evaluation.outcomes import OUTCOMES_ARTIFACT, OUTCOMES_FILE
from .identity import IDENTITY_COLUMNS, ResultIdentity
from .tasks.lookup import UnknownTaskError, get_task
from .tracking import retry_if_locked, sqlite_path, tracking_uri

log = logging.getLogger(__name__)
REPORTS_EXPERIMENT = "reports"
PARAMETERS_TAG = "model.parameters"
RUN_COLUMNS = ("experiment", "run_id", "parent_run_id", "started")
# model_parameters: the encoder's size as a number (the `model.parameters` tag; empty for runs made before it)
TABLE_COLUMNS = (*IDENTITY_COLUMNS, "language", "metric", "score", "n_items", *RUN_COLUMNS, "model_parameters")


class ResultsError(Exception):
    """No store, nothing in it, or an experiment name the store does not have."""


@dataclass
class ResultsTable:
    frame: object  # pandas.DataFrame with TABLE_COLUMNS
    notes: list[str] = field(default_factory=list)
    uri: str = ""
    experiments: list[str] = field(default_factory=list)  # those read


def open_client(uri: str | None = None):
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    if (db := sqlite_path(uri)) and not db.exists():  # MlflowClient would create an empty store
        raise ResultsError(f"no MLflow store at {uri} (set MLFLOW_TRACKING_URI to read another one)")
    return MlflowClient(uri), uri


def select_experiments(client, names: list[str] | None, uri: str) -> list:
    """The MLflow experiments to read (an experiment's name unless its tracking.experiment says
    otherwise): the named ones, or every one in the store but the reports themselves."""
    known = {e.name: e for e in retry_if_locked(client.search_experiments) if e.name != REPORTS_EXPERIMENT}
    if not names:
        return list(known.values())
    for name in names:
        if name not in known:
            near = difflib.get_close_matches(name, list(known), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ResultsError(f"unknown experiment '{name}' in the MLflow store {uri}.{hint} "
                               f"Known experiments: {', '.join(sorted(known)) or 'none'}")
    return [known[n] for n in dict.fromkeys(names)]


def search_runs(client, experiment_ids: list[str], filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = retry_if_locked(client.search_runs, experiment_ids, filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def run_rows(run, experiment: str) -> list[dict]:
    """A finished target run as table rows, one per test language; KeyError / UnknownTaskError
    when it lacks identity tags, metrics or a known task."""
    tags, metrics = run.data.tags, run.data.metrics
    identity = ResultIdentity.from_tags(tags)
    task = get_task(identity.target_task)
    per_lang: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test" and parts[1] != "avg":
            per_lang.setdefault(parts[1], {})[parts[2]] = value
    if not per_lang:
        raise KeyError("test/<language>/<metric>")
    base = {**identity.columns(), "metric": headline_name(task), "experiment": experiment, "run_id": run.info.run_id,
            "parent_run_id": tags.get("mlflow.parentRunId", ""), "started": run.info.start_time or 0,
            "model_parameters": int(tags[PARAMETERS_TAG]) if tags.get(PARAMETERS_TAG) else None}
    return [{**base, "language": lang, "score": float(headline(task, scores)),
             "n_items": int(metrics[f"n_items/{lang}"]) if f"n_items/{lang}" in metrics else None}
            for lang, scores in sorted(per_lang.items())]


def keep_latest(frame) -> tuple[object, list[str]]:
    """One run per identity (model, mode, strategy, tasks, budget, seeds, target task): the latest.
    A rerun replaces an earlier run; the same result recorded by several experiments (a shared
    baseline, a cache hit) is one result, not several. A note names the experiments only where
    their scores differ."""
    keys = [c for c in IDENTITY_COLUMNS if c != "setup"]
    runs = frame.groupby("run_id", sort=False).agg(
        **{c: (c, "first") for c in [*keys, "experiment", "started"]}, score=("score", "mean")).reset_index()
    runs = runs.sort_values(["started", "run_id"])
    latest = runs.groupby(keys, dropna=False, sort=False).tail(1)
    notes = []
    for _, group in runs.groupby(keys, dropna=False, sort=False):
        if group["experiment"].nunique() > 1 and group["score"].round(12).nunique() > 1:
            last = group.iloc[-1]
            notes.append(f"{last['setup']} ({last['mode']}), {last['target_task']}, seed {last['target_seed']}: "
                         f"runs from experiments {', '.join(sorted(group['experiment'].unique()))} differ; the latest "
                         f"({last['experiment']}) is used")
    return frame[frame["run_id"].isin(set(latest["run_id"]))].reset_index(drop=True), notes


def build_results(experiments: list[str] | None = None, uri: str | None = None, seeds: list[str] | None = None,
                  parent_run_id: str | None = None) -> ResultsTable:
    """The table of the named experiments (default: all), only these target seeds if given, only
    the children of one invocation if `parent_run_id` is given; latest run per identity."""
    import pandas as pd

    client, uri = open_client(uri)
    chosen = select_experiments(client, experiments, uri)
    names = {e.experiment_id: e.name for e in chosen}
    query = "tags.phase = 'target' and attributes.status = 'FINISHED'"
    if parent_run_id:
        query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    rows, notes = [], []
    for run in search_runs(client, list(names), query) if names else []:
        try:
            rows += run_rows(run, run.data.tags.get("experiment", names[run.info.experiment_id]))
        except UnknownTaskError as e:
            notes.append(f"run {run.info.run_id} ({run.info.run_name}) left out: {e}")
        except (KeyError, ValueError) as e:
            notes.append(f"run {run.info.run_id} ({run.info.run_name}) left out: no identity tag or metric {e}")
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for column in ("intermediate_seed", "target_seed", "n_items"):  # integers with gaps, not floats
        frame[column] = frame[column].astype("Int64")
    if seeds:
        found = sorted({str(s) for s in frame["target_seed"]})
        frame = frame[frame["target_seed"].astype(str).isin(seeds)]
        if frame.empty and found:
            raise ResultsError(f"no finished target runs with seed {', '.join(seeds)} in experiment(s) "
                               f"{', '.join(names.values())} (their seeds: {', '.join(found)})")
    if frame.empty:
        raise ResultsError(f"no finished target runs in experiment(s) "
                           f"{', '.join(names.values()) or '(none: the store is empty)'} of the MLflow store {uri}"
                           + (f" ({'; '.join(notes)})" if notes else ""))
    frame, dup_notes = keep_latest(frame)
    return ResultsTable(frame, notes + dup_notes, uri, sorted(set(frame["experiment"])))


def write_table(frame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ResultsError(f"--out: '{path}' must end in .parquet or .csv")
    return path


def load_outcomes(client, run_id: str):
    """A target run's per-item outcomes (evaluation/outcomes.py), or None if it has none (runs
    made before they were recorded)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = retry_if_locked(client.download_artifacts, run_id, f"{OUTCOMES_ARTIFACT}/{OUTCOMES_FILE}", tmp)
        except Exception as e:  # MlflowException / OSError: not logged for this run
            log.debug("run %s has no outcomes: %s", run_id, e)
            return None
        return pd.read_parquet(local)


def fetch_outcomes(client, run_ids: list[str]) -> dict[str, object]:
    """Every run's per-item outcomes (None where a run has none), with one progress bar."""
    import os

    from tqdm.auto import tqdm

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar here, not one per file
    return {run_id: load_outcomes(client, run_id)
            for run_id in tqdm(run_ids, desc="per-item outcomes", unit="run", leave=False)}
