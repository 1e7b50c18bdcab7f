"""The cross-experiment report (the paper's table): every finished target run in the MLflow store,
one row per intermediate setup (mode + intermediate task), one column per target task + the
benchmark average, mean ± std over seeds and the gain over the no-intermediate baseline row.

Reads only from MLflow, so it works on runs made on other machines; writes report.md, report.csv
and report.png and logs them on a run named "report" in the MLflow experiment "reports"."""
from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .evaluation.aggregate import headline, headline_name
from .tasks.registry import UnknownTaskError, get_task
from .setups import NO_INTERMEDIATE
from .tracking import Tracker, retry_if_locked, sqlite_path, tracking_uri

REPORTS_EXPERIMENT = "reports"
AVG = "avg"
# XTREME's column order: sentence pairs, structured prediction, QA, retrieval
FAMILY_ORDER = ("classification", "multiple_choice", "tagging", "extractive_qa", "retrieval")
CSV_FIELDS = ("model", "mode", "setup", "task", "seed", "score", "baseline", "gain", "experiment", "run_id")


class ReportError(Exception):
    """Nothing to report, or an experiment name the store does not have."""


class RowKey(NamedTuple):
    model: str
    mode: str
    setup: str


@dataclass(frozen=True)
class Sample:
    """The headline score (a fraction) of one finished target run."""
    experiment: str
    key: RowKey
    task: str
    seed: str
    score: float
    run_id: str
    started: tuple[int, int]  # (start_time, end_time): the larger is the later run
    source: str = ""  # the MLflow experiment holding the run


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float | None  # None: a single seed, or an average over tasks whose seeds differ
    n: int  # seeds; 0 where the value is not a per-seed mean
    gain: float | None = None  # mean - the baseline row's mean (None: baseline row, or no baseline)


def _seed_order(seed: str):
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def _task_order(name: str):
    task = get_task(name)
    family = FAMILY_ORDER.index(task.family) if task.family in FAMILY_ORDER else len(FAMILY_ORDER)
    return family, name


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
            raise ReportError(f"unknown experiment '{name}' in the MLflow store {uri}.{hint} "
                              f"Known experiments: {', '.join(sorted(known)) or 'none'}")
    return [known[n] for n in dict.fromkeys(names)]


def _search(client, experiment_ids: list[str], filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = retry_if_locked(client.search_runs, experiment_ids, filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def fetch_samples(client, experiments: list) -> tuple[list[Sample], list[str]]:
    """Every FINISHED target run of these experiments as a Sample, with notes on runs left out."""
    runs = _search(client, [e.experiment_id for e in experiments],
                   "tags.phase = 'target' and attributes.status = 'FINISHED'")
    names = {e.experiment_id: e.name for e in experiments}
    models: dict[str, str] = {}  # parent run id -> model (the model tag is on the invocation's run)
    samples, notes = [], []
    for run in runs:
        tags, where = run.data.tags, f"run {run.info.run_id} ({run.info.run_name})"
        parent = tags.get("mlflow.parentRunId", "")
        if parent and parent not in models:
            models[parent] = retry_if_locked(client.get_run, parent).data.tags.get("model", "")
        try:
            task = get_task(tags["task"])
            scores = {k[len("test/avg/"):]: v for k, v in run.data.metrics.items() if k.startswith("test/avg/")}
            score = headline(task, scores)
        except UnknownTaskError as e:
            notes.append(f"{where} left out: {e}")
            continue
        except KeyError as e:
            notes.append(f"{where} left out: no tag or test/avg metric {e}")
            continue
        key = RowKey(models.get(parent, ""), tags.get("mode", "?"), tags.get("intermediate", NO_INTERMEDIATE))
        samples.append(Sample(tags.get("experiment", names[run.info.experiment_id]), key, task.name,
                              tags.get("seed", "?"), float(score), run.info.run_id,
                              (run.info.start_time or 0, run.info.end_time or 0), names[run.info.experiment_id]))
    return samples, notes


def keep_latest(samples: list[Sample]) -> tuple[list[Sample], list[str]]:
    """One sample per (row, task, seed): the latest run. Reruns of one experiment replace earlier
    ones; the same seed from several experiments (e.g. a shared baseline) is one seed, not two.
    A note names the experiments only where their scores differ (not for cache hits)."""
    best: dict[tuple, Sample] = {}
    groups: dict[tuple, list[Sample]] = {}
    for s in samples:
        k = (s.key, s.task, s.seed)
        groups.setdefault(k, []).append(s)
        if k not in best or s.started > best[k].started:
            best[k] = s
    notes = []
    for k, group in groups.items():
        experiments = sorted({s.experiment for s in group})
        if len(experiments) > 1 and len({s.score for s in group}) > 1:
            notes.append(f"{_label(k[0])}, {k[1]}, seed {k[2]}: runs from experiments {', '.join(experiments)} "
                         f"differ; the latest ({best[k].experiment}) is used")
    return list(best.values()), notes


def _points(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 6)


def _label(key: RowKey, with_model: bool = False) -> str:
    model = key.model.rstrip("/").rsplit("/", 1)[-1] if key.model.startswith(("/", ".")) else key.model
    return (f"[{model}] " if with_model else "") + f"{key.mode}: {key.setup}"


@dataclass
class Table:
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.data: dict[RowKey, dict[str, dict[str, Sample]]] = {}
        for s in self.samples:
            self.data.setdefault(s.key, {}).setdefault(s.task, {})[s.seed] = s
        # per (mode, model): the baseline first, then the intermediate setups by name
        self.rows = sorted(self.data, key=lambda k: (k.mode, k.model, k.setup != NO_INTERMEDIATE, k.setup))
        self.tasks = sorted({s.task for s in self.samples}, key=_task_order)
        self.multi_model = len({k.model for k in self.rows}) > 1
        self.multi_seed = any(len(seeds) > 1 for row in self.data.values() for seeds in row.values())

    def label(self, row: RowKey) -> str:
        return _label(row, self.multi_model)

    def baseline(self, row: RowKey) -> RowKey | None:
        base = RowKey(row.model, row.mode, NO_INTERMEDIATE)
        return base if row.setup != NO_INTERMEDIATE and base in self.data else None

    def missing(self, row: RowKey) -> list[str]:
        return [t for t in self.tasks if t not in self.data[row]]

    def _mean(self, row: RowKey, task: str) -> float:
        return float(np.mean([s.score for s in self.data[row][task].values()]))

    def per_seed(self, row: RowKey, task: str) -> dict[str, tuple[float, str, str]]:
        """(score, experiment, run id) per seed; for avg, per seed that has every task of the row."""
        runs = self.data[row]
        if task != AVG:
            return {seed: (s.score, s.experiment, s.run_id) for seed, s in runs[task].items()}
        seeds = set.intersection(*(set(by_seed) for by_seed in runs.values()))
        return {seed: (float(np.mean([runs[t][seed].score for t in runs])),
                       ",".join(sorted({runs[t][seed].experiment for t in runs})), "") for seed in seeds}

    def _paired_base_mean(self, row: RowKey, task: str, seeds: list[str] | None = None) -> float:
        """The baseline's mean on `seeds` (default: the seeds `row` has), where it has them all: a
        paired comparison (with data.eval_seed fixed, both saw the same dev and test items); else
        on all its seeds."""
        have = self.data[self.baseline(row)][task]
        seeds = list(self.data[row][task]) if seeds is None else seeds
        return float(np.mean([have[s].score for s in seeds] if set(seeds) <= set(have)
                             else [s.score for s in have.values()]))

    def baseline_mean(self, row: RowKey, task: str, seeds: list[str] | None = None) -> float | None:
        """The baseline row's mean on `seeds` (default: this row's; avg: over this row's tasks, if
        it has them all)."""
        base, tasks = self.baseline(row), list(self.data[row]) if task == AVG else [task]
        if base is None or any(t not in self.data[base] for t in tasks):
            return None
        return float(np.mean([self._paired_base_mean(row, t, seeds) for t in tasks]))

    def shared_tasks(self, row: RowKey) -> list[str]:
        """The tasks an avg gain is over: the row's tasks that its baseline has too."""
        base = self.baseline(row)
        return [t for t in self.data[row] if base and t in self.data[base]]

    def cell(self, row: RowKey, task: str) -> Cell | None:
        """The mean over seeds (± sample std) and the gain over the baseline row. avg: the mean
        over the row's tasks of their means; its std is over per-seed averages, only where every
        task has the same seeds (then their mean is the same number)."""
        if task != AVG and task not in self.data[row]:
            return None
        if task != AVG:
            values = [v[0] for v in self.per_seed(row, task).values()]
            mean, aligned = float(np.mean(values)), True
            b = self.baseline_mean(row, task)
            gain = None if b is None else mean - b
        else:
            seeds = [set(by_seed) for by_seed in self.data[row].values()]
            aligned = all(s == seeds[0] for s in seeds)
            values = [v[0] for v in self.per_seed(row, AVG).values()] if aligned else []
            mean = float(np.mean([self._mean(row, t) for t in self.data[row]]))
            shared = self.shared_tasks(row)
            gain = float(np.mean([self._mean(row, t) - self._paired_base_mean(row, t) for t in shared])) if shared else None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return Cell(mean, std, len(values), gain)

    def records(self) -> list[dict]:
        """The long format: one line per (row, task, seed), in points; task "avg" per seed that
        has every task of its row. baseline: the baseline row's score at the same seed (paired)."""
        out = []
        for row in self.rows:
            for task in [t for t in self.tasks if t in self.data[row]] + [AVG]:
                for seed, (score, exp, run_id) in sorted(self.per_seed(row, task).items(),
                                                         key=lambda kv: _seed_order(kv[0])):
                    b = self.baseline_mean(row, task, [seed])
                    out.append(dict(model=row.model, mode=row.mode, setup=row.setup, task=task, seed=seed,
                                    score=_points(score), baseline=_points(b),
                                    gain=None if b is None else _points(score - b), experiment=exp, run_id=run_id))
        return out

    def _text(self, c: Cell | None, with_n: bool) -> str:
        if c is None:
            return "–"
        text = f"{c.mean * 100:.1f}" + (f" ± {c.std * 100:.1f}" if c.std is not None else "")
        text += f" ({c.gain * 100:+.1f})" if c.gain is not None else ""
        return text + (f" n={c.n}" if with_n and c.n else "")

    def markdown(self) -> str:
        head = ["setup"] + [f"{t} ({headline_name(get_task(t))})" for t in self.tasks] + [AVG]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        footnotes = []
        for row in self.rows:
            label = self.label(row)
            if missing := self.missing(row):
                label += " *"
                footnotes.append(f"* {self.label(row)}: no {', '.join(missing)}; its avg is over the tasks it has.")
            if self.baseline(row) and set(self.shared_tasks(row)) != set(self.data[row]):
                footnotes.append(f"{self.label(row)}: avg gain over the tasks the baseline has too "
                                 f"({', '.join(self.shared_tasks(row))}).")
            cells = [self._text(self.cell(row, t), self.multi_seed) for t in self.tasks + [AVG]]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "Scores x100 (QA: (EM+F1)/2), mean over languages; "
                  + ("mean ± sample std over n seeds; " if self.multi_seed else "")
                  + f"(+x) = gain over the '{NO_INTERMEDIATE}' row of the same mode and model"
                  + (" on the same seeds" if self.multi_seed else "") + ". avg = mean over tasks."]
        return "\n".join(lines + [f"- {n}" for n in footnotes + self.notes]) + "\n"

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = self.tasks + [AVG]
        cells = [[self.cell(r, t) for t in cols] for r in self.rows]
        gain = np.array([[np.nan if c is None else 0.0 if c.gain is None else c.gain * 100 for c in line]
                         for line in cells])
        limit = (float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 0.0) or 1.0  # centred at 0
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")  # grey: no result
        fig, ax = plt.subplots(figsize=(3.5 + 1.2 * len(cols), 1.2 + 0.55 * len(self.rows)))
        image = ax.imshow(np.ma.masked_invalid(gain), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        for i, line in enumerate(cells):
            for j, c in enumerate(line):
                text = "–" if c is None else f"{c.mean * 100:.1f}"
                text += f"\n{c.gain * 100:+.1f}" if c is not None and c.gain is not None else ""
                dark = np.isfinite(gain[i, j]) and abs(gain[i, j]) > 0.6 * limit  # white on dark cells
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(self.rows)), [self.label(r) for r in self.rows])
        fig.colorbar(image, ax=ax, label="gain over baseline (points)")
        ax.set_title("Zero-shot score by intermediate setup")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"md": folder / "report.md", "csv": folder / "report.csv", "png": folder / "report.png"}
        paths["md"].write_text(self.markdown())
        with open(paths["csv"], "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(self.records())
        self.plot(paths["png"])
        return paths


@dataclass
class Report:
    table: Table
    paths: dict[str, Path]
    run_id: str | None
    experiments: list[str]


def build_report(experiments: list[str] | None, output: Path, seeds: list[str] | None = None) -> Report:
    """Read the runs (of these seeds only, if given), write the three files, and log them on a new
    "report" run."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    if (db := sqlite_path(uri)) and not db.exists():  # MlflowClient would create an empty store
        raise ReportError(f"no MLflow store at {uri} (set MLFLOW_TRACKING_URI to read another one)")
    client = MlflowClient(uri)
    chosen = select_experiments(client, experiments, uri)
    samples, notes = fetch_samples(client, chosen)
    if seeds:
        found = sorted({s.seed for s in samples}, key=_seed_order)
        samples = [s for s in samples if s.seed in seeds]
        if not samples:
            raise ReportError(f"no finished target runs with seed {', '.join(seeds)} in experiment(s) "
                              f"{', '.join(e.name for e in chosen)} (their seeds: {', '.join(found) or 'none'})")
    if not samples:
        raise ReportError(f"no finished target runs in experiment(s) "
                          f"{', '.join(e.name for e in chosen) or '(none: the store is empty)'} "
                          f"of the MLflow store {uri}" + (f" ({'; '.join(notes)})" if notes else ""))
    samples, dup_notes = keep_latest(samples)
    table = Table(samples, notes + dup_notes)
    paths = table.write(Path(output))
    names = [e.name for e in chosen if e.name in {s.source for s in samples}]  # those with runs
    tracker = Tracker(REPORTS_EXPERIMENT)
    run = tracker.start("report", tags={"kind": "report", "experiments": ",".join(names)[:5000]})
    status = "FAILED"
    try:
        for p in paths.values():
            run.log_artifacts(p)
        status = "FINISHED"
    finally:
        run.end(status)
    return Report(table, paths, run.run_id, names)
