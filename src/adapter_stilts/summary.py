"""The summary of one invocation, a view of the results table (results_table.py) restricted to
its own target runs: per task, the zero-shot score of every setup in every language and the
difference to the no-intermediate row; the report's table of that invocation (means, gains with
their 95% intervals); a bar chart; and summary metrics on the parent MLflow run. Nothing here
computes an average or a gain of its own: those come from the report's `Table`."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .identity import NO_TASKS
from .report import AVG, Table
from .results_table import build_results, write_table

log = logging.getLogger(__name__)


def invocation_table(experiment: str, parent_run_id: str, replicates: int = 2000) -> Table:
    """The report table of one invocation's target runs (read back from the MLflow store)."""
    return Table.of(build_results([experiment], parent_run_id=parent_run_id), replicates)


def by_language(table: Table) -> str:
    """Per task: languages as rows, setups as columns (and each setup minus the baseline), the
    avg row from the table's cells."""
    frame, lines = table.results.frame, []
    rows = table.rows
    names = [table.names[r] for r in rows]
    base = next((r for r in rows if r[3] == NO_TASKS), None)
    others = [r for r in rows if r != base]
    for task in table.tasks:
        sub = frame[frame["target_task"] == task]
        scores = sub.pivot_table(index="language", columns="setup", values="score", aggfunc="mean")
        head = [f"{task} ({sub['metric'].iloc[0]})"] + [f"inter={n}" for n in names]
        head += [f"{table.names[r]} - {NO_TASKS}" for r in others] if base else []
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for lang in scores.index:
            vals = [scores.at[lang, table.names[r]] if table.names[r] in scores else np.nan for r in rows]
            cells = ["-" if np.isnan(v) else f"{v * 100:.1f}" for v in vals]
            if base:
                b = vals[rows.index(base)]
                cells += [f"{(vals[rows.index(r)] - b) * 100:+.1f}" for r in others]
            lines.append(f"| {lang} | " + " | ".join(cells) + " |")
        avg = ["-" if (c := table.cell(r, task)) is None else f"{c.mean * 100:.1f}" for r in rows]
        if base:
            avg += [table.gain_text(c and c.gain) if (c := table.cell(r, task)) else "-" for r in others]
        lines += ["| **avg** | " + " | ".join(avg) + " |", ""]
    return "\n".join(lines)


def plot(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = table.results.frame
    fig, axes = plt.subplots(len(table.tasks), 1, figsize=(12, 3.2 * len(table.tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], table.tasks):
        scores = frame[frame["target_task"] == task].pivot_table(index="language", columns="setup", values="score")
        langs = list(scores.index)
        x = np.arange(len(langs) + 1)
        width = 0.8 / len(table.rows)
        for i, row in enumerate(table.rows):
            name, cell = table.names[row], table.cell(row, task)
            vals = [scores.at[lang, name] if name in scores else 0.0 for lang in langs] + [cell.mean if cell else 0.0]
            ax.bar(x + i * width, np.nan_to_num(np.array(vals, float)) * 100, width, label=f"intermediate: {name}")
        ax.set_xticks(x + width * (len(table.rows) - 1) / 2, langs + [AVG])
        ax.set_title(f"{task}: zero-shot score by language")
        ax.set_ylabel("score")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_metrics(table: Table) -> dict[str, float]:
    """<task>/<setup>/avg and /gain, and benchmark/<setup>/avg and /gain (the mean over tasks)."""
    out = {}
    for row in table.rows:
        name = table.names[row]
        for task in table.tasks + [AVG]:
            cell = table.cell(row, task)
            if cell is None:
                continue
            prefix = "benchmark" if task == AVG else task
            out[f"{prefix}/{name}/avg"] = cell.mean
            if cell.gain is not None:
                out[f"{prefix}/{name}/gain"] = cell.gain.estimate
    return out


def log_summary(run, experiment: str, folder: Path) -> Table | None:
    """Write the invocation's summary (results.csv, summary.md, the chart) and log it on `run`."""
    if not run.active:
        return None
    table = invocation_table(experiment, run.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    write_table(table.results.frame, folder / "results.csv")
    md = table.markdown() + "\n\n" + by_language(table)  # the paper's table first, then every language
    (folder / "summary.md").write_text(md)
    plot(table, folder / "zero_shot_by_language.png")
    run.log_new_metrics(summary_metrics(table))
    run.log_artifacts(folder, "summary")
    run.describe(f"**{experiment}**: zero-shot scores per language, with and without intermediate training "
                 f"(the paper's table; chart and CSV under the artifacts' `summary/`)\n\n{md}")
    log.info("Zero-shot results (%s):\n%s", folder, md)
    return table
