"""MLflow tracking, rank 0 only: one parent run per invocation, nested runs per phase and task.

Default store: SQLite at mlruns/mlflow.db with artifacts in mlruns/artifacts (MLflow's embedded
default, kept together); any store through MLFLOW_TRACKING_URI."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from . import distributed as dist

log = logging.getLogger(__name__)
DEFAULT_DIR = "mlruns"


# MLflow 3's UI opens an experiment on the GenAI pages (traces) unless its kind says otherwise
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the UI
DESCRIPTION_LIMIT = 8000  # MLflow's longest tag value


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(DEFAULT_DIR).resolve() / 'mlflow.db'}"  # created by the Tracker, not by asking


def retry_if_locked(fn, *args, **kwargs):
    """Call an MLflow client method, retrying (bounded) while SQLite reports a lock held by another
    experiment writing to the same store."""
    for attempt in range(8):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MlflowException or sqlalchemy OperationalError, depending on the call
            if "locked" not in str(e).lower() or attempt == 7:
                raise
            time.sleep(0.1 * 2 ** attempt)


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _store_lock(uri: str):
    db = sqlite_path(uri)
    if db is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(str(db) + ".lock", timeout=600)


def _param_value(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


class RunHandle:
    """One MLflow run. Every method is a no-op on ranks other than 0."""

    def __init__(self, client=None, run_id: str | None = None):
        self.client, self.run_id = client, run_id

    @property
    def active(self) -> bool:
        return self.client is not None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.active or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        retry_if_locked(self.client.log_batch, self.run_id,
                        metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_new_metrics(self, metrics: dict[str, float], step: int = 0,
                        logged: dict[str, set[int]] | None = None) -> None:
        """Log only what this run does not have at `step` yet (a resumed unit may redo steps).
        `logged` is a `logged_steps()` result to reuse instead of asking the store again."""
        logged = self.logged_steps() if logged is None else logged
        self.log_metrics({k: v for k, v in metrics.items() if step not in logged.get(k, ())}, step)

    def logged_steps(self) -> dict[str, set[int]]:
        """The steps already logged per metric key (what a resumed phase must not log again)."""
        if not self.active:
            return {}
        run = retry_if_locked(self.client.get_run, self.run_id)
        return {key: {m.step for m in retry_if_locked(self.client.get_metric_history, self.run_id, key)}
                for key in run.data.metrics}

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            retry_if_locked(self.client.log_batch, self.run_id, params=items[i: i + 100])

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            for k, v in tags.items():
                retry_if_locked(self.client.set_tag, self.run_id, k, str(v))

    def describe(self, markdown: str) -> None:
        """The run's description (Markdown), shown at the top of its page in the MLflow UI."""
        if len(markdown) > DESCRIPTION_LIMIT:  # MLflow's tag limit: the whole table stays in the artifacts
            cut = markdown[:DESCRIPTION_LIMIT - 80].rsplit("\n", 1)[0]
            markdown = cut + "\n\n(cut here: the whole table is in the artifacts)"
        self.set_tags({DESCRIPTION_TAG: markdown})

    def log_artifacts(self, local: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(local).exists():
            if Path(local).is_dir():
                retry_if_locked(self.client.log_artifacts, self.run_id, str(local), artifact_path)
            else:
                retry_if_locked(self.client.log_artifact, self.run_id, str(local), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.active:
            retry_if_locked(self.client.set_terminated, self.run_id, status)


class Tracker:
    """Creates the parent run and its nested children."""

    def __init__(self, experiment: str):
        self.client = None
        self.experiment_id = None
        self.uri: str | None = None
        if not dist.is_main():
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = self.uri = tracking_uri()
        if db := sqlite_path(uri):
            db.parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        with _store_lock(uri):  # two invocations must not create the SQLite schema at the same time
            self.client = MlflowClient(uri)
            self.experiment_id = self._experiment_id(uri, experiment)
        log.info("MLflow: %s (experiment '%s')", uri, experiment)

    def _experiment_id(self, uri: str, experiment: str) -> str:
        exp = retry_if_locked(self.client.get_experiment_by_name, experiment)
        if exp is None:
            db = sqlite_path(uri)  # artifacts beside a SQLite database, not in the cwd
            location = (db.parent / "artifacts").resolve().as_uri() if db else None
            return retry_if_locked(self.client.create_experiment, experiment, artifact_location=location,
                                   tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before, or by another tool
            retry_if_locked(self.client.set_experiment_tag, exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id

    def has_run(self, run_id: str) -> bool:
        """Whether the run exists in this store, in this tracker's experiment (a deleted one does not)."""
        from mlflow.exceptions import MlflowException

        try:
            run = retry_if_locked(self.client.get_run, run_id)
        except MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active"

    def start(self, name: str, parent: RunHandle | None = None, tags: dict[str, Any] | None = None,
              run_id: str | None = None) -> RunHandle:
        """A new run, or (run_id given) the same run reopened to continue logging after a crash."""
        if self.client is None:
            return RunHandle()
        if run_id:
            retry_if_locked(self.client.update_run, run_id, status="RUNNING")
            handle = RunHandle(self.client, run_id)
            handle.set_tags(tags or {})  # e.g. tags a newer version writes (id.*), and the cache status of this attempt
            return handle
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if parent is not None and parent.run_id:
            all_tags["mlflow.parentRunId"] = parent.run_id
        run = retry_if_locked(self.client.create_run, self.experiment_id, run_name=name, tags=all_tags)
        return RunHandle(self.client, run.info.run_id)

    @contextlib.contextmanager
    def child(self, name: str, parent: RunHandle, tags: dict[str, Any] | None = None, run_id: str | None = None,
              on_start=None):
        """A nested run that ends FINISHED, or FAILED (KILLED on Ctrl-C) with the reason as a tag."""
        run = self.start(name, parent, tags, run_id)
        if on_start:
            on_start(run)
        try:
            yield run
        except BaseException as e:
            run.set_tags({"error": f"{type(e).__name__}: {e}"[:5000]})
            run.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
        run.end()
