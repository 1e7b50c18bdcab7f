"""The cross-experiment report (the paper's table), a view of the results table
(results_table.py): one row per intermediate setup IDENTITY (model and layers, mode, strategy, the
set of intermediate tasks, the data budget; display name derived), one column per target task and
the average over tasks: mean ± std over seeds, and the gain over the no-intermediate row of the
same model and mode with its 95% interval (paired bootstrap over test items, and over seeds where
there are several: evaluation/bootstrap.py). A gain whose interval excludes 0 is marked `*`.

Writes report.md, report.csv (one line per row and task), report.png (the gains as a heatmap) and
results.parquet (the table it was built from), and logs them on a run named "report" in the
MLflow experiment "reports"."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .evaluation.aggregate import headline_name
from .evaluation.bootstrap import Interval, gain_interval, pair
from .identity import NO_TASKS, ROW_COLUMNS
from .results_table import (
    REPORTS_EXPERIMENT,
    ResultsError,
    ResultsTable,
    build_results,
    fetch_outcomes,
    open_client,
    write_table,
)
from .tasks.lookup import get_task
from .tracking import Tracker

AVG = "avg"
# XTREME's column order: sentence pairs, structured prediction, QA, retrieval
FAMILY_ORDER = ("classification", "multiple_choice", "tagging", "extractive_qa", "retrieval")
CSV_FIELDS = (*ROW_COLUMNS, "setup", "task", "seeds", "n_seeds", "mean", "std", "baseline", "gain", "gain_low",
              "gain_high", "significant", "n_items", "runs")

ReportError = ResultsError  # the report's user errors are the table's


def _task_order(name: str):
    task = get_task(name)
    family = FAMILY_ORDER.index(task.family) if task.family in FAMILY_ORDER else len(FAMILY_ORDER)
    return family, name


def _seed_order(seed) -> tuple:
    return (0, int(seed), "") if str(seed).lstrip("-").isdigit() else (1, 0, str(seed))


@dataclass(frozen=True)
class Cell:
    mean: float  # over seeds (avg: over the row's tasks of their means)
    std: float | None  # sample std over seeds (avg: of per-seed averages, where every task has the seeds)
    n: int  # seeds
    gain: Interval | None = None  # vs the baseline row, paired on common seeds; None: baseline row or none paired


@dataclass
class Table:
    """Run scores by row identity, task and seed, with the outcomes that give gains their intervals."""
    results: ResultsTable
    outcomes: dict[str, object] = field(default_factory=dict)  # run id -> per-item outcomes (DataFrame)
    replicates: int = 2000

    def __post_init__(self):
        frame = self.results.frame
        runs = frame.groupby("run_id", sort=False).agg(
            **{c: (c, "first") for c in [*ROW_COLUMNS, "setup", "target_task", "target_seed", "experiment"]},
            target_settings=("target_settings", "first"), started=("started", "first"),
            score=("score", "mean")).reset_index().sort_values("started")  # score: macro average over languages
        self.notes = list(self.results.notes)
        self.data: dict[tuple, dict[str, dict[int, tuple[float, str]]]] = {}
        self.names: dict[tuple, str] = {}
        for r in runs.itertuples(index=False):  # oldest first: a later run of the same cell replaces it
            row = tuple(getattr(r, c) for c in ROW_COLUMNS)
            cell = self.data.setdefault(row, {}).setdefault(r.target_task, {})
            if r.target_seed in cell and cell[r.target_seed][2] != r.target_settings:
                self.notes.append(f"{r.setup} ({r.mode}), {r.target_task}, seed {r.target_seed}: runs with other "
                                  f"target settings (sizes, languages or training) in experiment {r.experiment}; "
                                  "the latest is used (compare them with --exp)")
            cell[r.target_seed] = (float(r.score), r.run_id, r.target_settings)
            self.names[row] = r.setup
        self.rows = sorted(self.data, key=self._row_order)
        self.tasks = sorted({t for by_task in self.data.values() for t in by_task}, key=_task_order)
        self.multi_model = len({(r[0], r[1]) for r in self.rows}) > 1
        self.multi_seed = any(len(seeds) > 1 for by_task in self.data.values() for seeds in by_task.values())
        self._cells: dict[tuple, Cell | None] = {}

    @classmethod
    def of(cls, results: ResultsTable, replicates: int = 2000) -> Table:
        """The table of these results, with every run's per-item outcomes read from their store."""
        client, _ = open_client(results.uri)
        outcomes = fetch_outcomes(client, list(results.frame["run_id"].unique()))
        table = cls(results, {k: v for k, v in outcomes.items() if v is not None}, replicates)
        if lacking := sum(v is None for v in outcomes.values()):
            table.notes.append(f"{lacking} run(s) have no per-item outcomes (made before they were recorded): "
                               "their gains have no interval")
        return table

    @staticmethod
    def _row_order(row: tuple):
        model, layers, mode, strategy, tasks, k, budget, languages = row
        return model, layers, mode, strategy != NO_TASKS, k, strategy, tasks, budget, languages

    def label(self, row: tuple) -> str:
        model, layers, mode, strategy, tasks, k, budget, languages = row
        name = self.names[row]
        if k > 1 and strategy != "given":
            name += f" ({tasks.replace(',', ', ')})"
        if languages:  # translated intermediate data: the same tasks in other languages are another row
            name += f" [{languages.replace(',', ' ')}]"
        short = model.rstrip("/").rsplit("/", 1)[-1] if model.startswith(("/", ".")) else model
        return (f"[{short} L{layers}] " if self.multi_model else "") + f"{mode}: {name}"

    def baseline(self, row: tuple) -> tuple | None:
        base = (*row[:3], NO_TASKS, "", 0, 0, "")
        return base if row[3] != NO_TASKS and base in self.data else None

    def missing(self, row: tuple) -> list[str]:
        return [t for t in self.tasks if t not in self.data[row]]

    def shared_tasks(self, row: tuple) -> list[str]:
        base = self.baseline(row)
        return [t for t in self.tasks if t in self.data[row] and base and t in self.data[base]]

    def _outcomes(self, runs: dict) -> dict | None:
        got = {seed: self.outcomes.get(run[1]) for seed, run in runs.items()}
        return None if any(v is None for v in got.values()) else got

    def _gain(self, row: tuple, tasks: list[str]) -> Interval | None:
        """The paired gain over the baseline row on the seeds both have for every one of `tasks`."""
        base = self.baseline(row)
        if base is None or not tasks:
            return None
        # paired: the same seed, trained and scored the same way (target settings), in both rows
        seeds = set.intersection(*({s for s, run in self.data[row][t].items()
                                    if s in self.data[base][t] and self.data[base][t][s][2] == run[2]}
                                   for t in tasks))
        if not seeds:
            return None
        paired = []
        for t in tasks:
            arm = self._outcomes({s: self.data[row][t][s] for s in seeds})
            ref = self._outcomes({s: self.data[base][t][s] for s in seeds})
            if arm is None or ref is None:  # runs from before per-item outcomes: no interval
                diffs = [self.data[row][t][s][0] - self.data[base][t][s][0] for s in seeds for t in tasks]
                refs = [self.data[base][t][s][0] for s in seeds for t in tasks]
                return Interval(float(np.mean(diffs)), float("nan"), float("nan"), 0, len(seeds), 0,
                                float(np.mean(refs)))
            paired.append(pair(get_task(t), arm, ref))
        return gain_interval(paired, self.replicates)

    def cell(self, row: tuple, task: str) -> Cell | None:
        if (row, task) not in self._cells:
            self._cells[row, task] = self._compute(row, task)
        return self._cells[row, task]

    def _compute(self, row: tuple, task: str) -> Cell | None:
        by_task = self.data[row]
        if task != AVG:
            if task not in by_task:
                return None
            values = [run[0] for run in by_task[task].values()]
            return Cell(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None,
                        len(values), self._gain(row, [task]))
        seeds = set.intersection(*(set(s) for s in by_task.values()))
        per_seed = [np.mean([by_task[t][s][0] for t in by_task]) for s in seeds]
        mean = float(np.mean([np.mean([run[0] for run in by_task[t].values()]) for t in by_task]))
        return Cell(mean, float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None, len(per_seed),
                    self._gain(row, self.shared_tasks(row)))

    # ------------------------------------------------------------------ outputs
    def records(self) -> list[dict]:
        """One line per (row, task), avg included; scores and gains in points."""
        out = []
        for row in self.rows:
            for task in [t for t in self.tasks if t in self.data[row]] + [AVG]:
                c = self.cell(row, task)
                seeds = sorted(set.intersection(*(set(s) for s in self.data[row].values())) if task == AVG
                               else self.data[row][task], key=_seed_order)
                g = c.gain
                runs = [] if task == AVG else [self.data[row][task][s][1] for s in seeds]
                out.append({**dict(zip(ROW_COLUMNS, row)), "setup": self.names[row], "task": task,
                            "seeds": ",".join(map(str, seeds)), "n_seeds": c.n, "mean": _points(c.mean),
                            "std": _points(c.std), "baseline": _points(g and g.base),
                            "gain": _points(g and g.estimate), "gain_low": _points(g and g.low),
                            "gain_high": _points(g and g.high), "significant": bool(g and g.excludes_zero),
                            "n_items": g.n_items if g else None, "runs": ",".join(runs)})
        return out

    @staticmethod
    def gain_text(g: Interval | None) -> str:
        """+x.x [lo, hi] in points, * where the interval excludes 0; "-" without a gain."""
        if g is None:
            return "-"
        interval = "" if np.isnan(g.low) else f" [{g.low * 100:+.1f}, {g.high * 100:+.1f}]"
        return f"{g.estimate * 100:+.1f}{interval}{'*' if g.excludes_zero else ''}"

    def _text(self, c: Cell | None) -> str:
        if c is None:
            return "–"
        text = f"{c.mean * 100:.1f}" + (f" ± {c.std * 100:.1f}" if c.std is not None else "")
        if c.gain is not None:  # say so where the gain is paired on fewer seeds than the mean is over
            fewer = f", {c.gain.n_seeds} paired seed{'s' * (c.gain.n_seeds > 1)}" if c.gain.n_seeds != c.n else ""
            text += f" ({self.gain_text(c.gain)}{fewer})"
        return text + (f" n={c.n}" if self.multi_seed else "")

    def markdown(self) -> str:
        head = ["setup", "k"] + [f"{t} ({headline_name(get_task(t))})" for t in self.tasks] + [AVG]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        footnotes = []
        for row in self.rows:
            label = self.label(row)
            if missing := self.missing(row):
                label += " †"
                footnotes.append(f"† {self.label(row)}: no {', '.join(missing)}; its avg is over the tasks it has.")
            if self.baseline(row) and set(self.shared_tasks(row)) != set(self.data[row]):
                footnotes.append(f"{self.label(row)}: avg gain over the tasks the baseline has too "
                                 f"({', '.join(self.shared_tasks(row))}).")
            lines.append(f"| {label} | {row[5]} | " + " | ".join(self._text(self.cell(row, t))
                                                                for t in self.tasks + [AVG]) + " |")
        lines += ["", "Scores x100 (QA: (EM+F1)/2), mean over languages"
                  + ("; mean ± sample std over n seeds" if self.multi_seed else "")
                  + f". (+x [lo, hi]) = gain over the '{NO_TASKS}' row of the same model and mode, paired on the "
                  "seeds both have, with its 95% interval (paired bootstrap over test items, stratified by language"
                  + (", and over seeds" if self.multi_seed else "") + "); * = the interval excludes 0. "
                  "avg = mean over tasks. k = number of intermediate tasks."]
        return "\n".join(lines + [f"- {n}" for n in footnotes + self.notes]) + "\n"

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = self.tasks + [AVG]
        cells = [[self.cell(r, t) for t in cols] for r in self.rows]
        gain = np.array([[np.nan if c is None else 0.0 if c.gain is None else c.gain.estimate * 100 for c in line]
                         for line in cells])
        limit = (float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 0.0) or 1.0  # centred at 0
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")  # grey: no result
        fig, ax = plt.subplots(figsize=(3.5 + 1.2 * len(cols), 1.2 + 0.6 * len(self.rows)))
        image = ax.imshow(np.ma.masked_invalid(gain), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        for i, line in enumerate(cells):
            for j, c in enumerate(line):
                text, strong = "–" if c is None else f"{c.mean * 100:.1f}", False
                if c is not None and c.gain is not None:
                    strong = c.gain.excludes_zero
                    text += f"\n{c.gain.estimate * 100:+.1f}{'*' if strong else ''}"
                dark = np.isfinite(gain[i, j]) and abs(gain[i, j]) > 0.6 * limit  # white on dark cells
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                        fontweight="bold" if strong else "normal")
                if strong:  # a frame around gains whose interval excludes 0
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(self.rows)), [self.label(r) for r in self.rows])
        fig.colorbar(image, ax=ax, label="gain over baseline (points)")
        ax.set_title("Zero-shot score by intermediate setup (framed, *: 95% interval of the gain excludes 0)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def write(self, folder: Path) -> dict[str, Path]:
        import pandas as pd

        folder.mkdir(parents=True, exist_ok=True)
        paths = {"md": folder / "report.md", "csv": folder / "report.csv", "png": folder / "report.png",
                 "table": folder / "results.parquet"}
        paths["md"].write_text(self.markdown())
        pd.DataFrame(self.records(), columns=list(CSV_FIELDS)).to_csv(paths["csv"], index=False)
        self.plot(paths["png"])
        write_table(self.results.frame, paths["table"])
        return paths


def _points(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else round(value * 100, 6)


@dataclass
class Report:
    table: Table
    paths: dict[str, Path]
    run_id: str | None
    experiments: list[str]


def build_report(experiments: list[str] | None, output: Path, seeds: list[str] | None = None,
                 replicates: int = 2000) -> Report:
    """Build the results table (these seeds only, if given), fetch the runs' per-item outcomes,
    write the files and log them on a new "report" run."""
    results = build_results(experiments, seeds=seeds)
    table = Table.of(results, replicates)
    paths = table.write(Path(output))
    tracker = Tracker(REPORTS_EXPERIMENT)
    run = tracker.start("report", tags={"kind": "report", "experiments": ",".join(results.experiments)[:5000]})
    status = "FAILED"
    try:
        for p in paths.values():
            run.log_artifacts(p)
        run.describe(f"Report over {', '.join(results.experiments)}: gains with 95% intervals\n\n{table.markdown()}")
        status = "FINISHED"
    finally:
        run.end(status)
    return Report(table, paths, run.run_id, results.experiments)
