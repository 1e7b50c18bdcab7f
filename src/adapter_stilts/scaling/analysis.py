"""`python run.py scaling [--exp scaling] [--from results/scaling]`: the study's answer, read from
the results table only (the MLflow store, or the rows a sweep committed under results/<study>).

Per target task, per task family and for the XTREME average (retrieval apart), per model size:
gain vs k with intervals (gains.py), laws of gain vs k compared by leave-one-k-out error and
tested by extrapolation from k <= 3 (fits.py), a joint law in k and size extrapolated to the
largest size, the variance split, which intermediate tasks help or hurt (a regression of gain on
task membership), per-language gains, plots, and a Markdown summary with the numbers. Everything
is written to one folder and logged as artifacts of a `scaling` run in MLflow."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.bootstrap import LEVEL
from ..identity import IDENTITY_COLUMNS, LATER_COLUMNS
from . import fits
from .gains import SIZE, XTREME, Curves, compute_gains

log = logging.getLogger(__name__)
FIT_MAX_K = 3  # the extrapolation test fits on k <= 3 and predicts the larger k
# bootstrap replicates refitted for an extrapolation error's interval (a fit of the 4-parameter law takes ~10 ms)
EXTRAPOLATION_REPLICATES = 200
# what Phang et al. 2020 found on XLM-R large, for the comparison in the summary
PAPER_PATTERN = "QA and retrieval targets gain; NER (PAN-X) loses"
STAND_IN = ("me5-small is a stand-in: a retrieval-trained 118M multilingual encoder, not the paper's XLM-R; its "
            "sizes are truncations to its first layers")


class AnalysisError(Exception):
    """Nothing to analyse: no rows, no baseline, an unreadable results folder."""


def load_rows(study: str, source: str | Path | None = None) -> tuple[pd.DataFrame, dict, str]:
    """The study's rows of the results table and per-item outcomes by run id: from a results
    folder (cells/*.csv, outcomes/*.parquet, as the sweep writes them) or from the MLflow store."""
    if source:
        folder = Path(source)
        files = sorted((folder / "cells").glob("*.csv"))
        if not files:
            raise AnalysisError(f"--from {folder}: no cells/*.csv (a sweep writes one per finished cell)")
        try:
            frame = pd.concat([pd.read_csv(f, dtype={"intermediate_tasks": str, "target_settings": str})
                               for f in files], ignore_index=True)
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise AnalysisError(f"--from {folder}: unreadable CSV ({e})") from None
        for column, value in LATER_COLUMNS.items():  # cells written before the column existed
            frame[column] = frame[column].fillna(value) if column in frame else value
        missing = [c for c in (*IDENTITY_COLUMNS, "language", "score", "run_id") if c not in frame.columns]
        if missing:
            raise AnalysisError(f"--from {folder}: the cells' CSV files lack columns {', '.join(missing)}")
        frame["intermediate_tasks"] = frame["intermediate_tasks"].fillna("")
        outcomes: dict = {}
        for f in sorted((folder / "outcomes").glob("*.parquet")):
            for run_id, part in pd.read_parquet(f).groupby("run_id"):
                outcomes[run_id] = part.drop(columns="run_id")
        return frame, outcomes, f"{len(files)} cells in {folder}"
    from ..results_table import build_results, fetch_outcomes, open_client

    table = build_results([study])
    client, _ = open_client(table.uri)
    frame = table.frame
    outcomes = fetch_outcomes(client, sorted(set(frame["run_id"])))
    return frame, outcomes, f"MLflow experiment '{study}' in {table.uri}"


def find_study(name: str):
    """The study file `name` names (experiments/<name>.yaml or a path), or None without one."""
    from ..config import ConfigError
    from .study import load_study

    try:
        return load_study(name)
    except ConfigError:
        return None


def study_strategy(study, frame: pd.DataFrame) -> str:
    """The study's multi-task strategy: from its file when there is one, else the rows' own."""
    if study is not None:
        return study.config.strategy
    several = frame[frame["k"] > 1]["strategy"]
    return str(several.value_counts().index[0]) if not several.empty else "multitask"


def current_cells(study, frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Rows of the study's current design only: a results folder can hold cells of an earlier
    design (e.g. before the pool grew), which would mix two studies."""
    if study is None or "cell" not in frame.columns:
        return frame
    from .design import cells
    from .sweep import available_pool

    ids = {c.id for c in cells(study, available_pool(study)[0])}
    stale = sorted(set(frame["cell"]) - ids)
    if stale:
        notes.append(f"{len(stale)} cells not in the current design of {study.source_file} left out "
                     f"(e.g. {stale[0]})")
    return frame[frame["cell"].isin(ids)]


# ---------------------------------------------------------------------- fits
def _means(curves: Curves, target: str, model: str, layers: int) -> pd.DataFrame:
    c = curves.curve
    return c[(c["target"] == target) & (c["model"] == model) & (c["model_layers"] == layers)].sort_values("k")


def fit_table(curves: Curves) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per target and size: each form's leave-one-k-out error (on the mean gain per k), and its
    extrapolation error from k <= FIT_MAX_K to the larger k, with its bootstrap interval."""
    loko, extra = [], []
    for (target, model, layers), group in curves.curve.groupby(["target", *SIZE]):
        means = group.sort_values("k")
        k, y = means["k"].to_numpy(float), means["gain"].to_numpy(float)
        if len(k) < 3:
            continue
        compared = fits.compare_forms(k, y)
        for _, row in compared.iterrows():
            loko.append({"target": target, "model": model, "model_layers": layers, **row.to_dict()})
        ks, reps = curves.replicates[(target, model, layers)]
        if not any(v > FIT_MAX_K for v in ks) or sum(v <= FIT_MAX_K for v in ks) < 2:
            continue
        for name in fits.FORMS:
            try:
                point = fits.extrapolate(name, k, y, FIT_MAX_K)
            except ValueError:
                continue
            interval = fits.extrapolation_interval(name, ks, reps[:EXTRAPOLATION_REPLICATES], FIT_MAX_K, LEVEL)
            extra.append({"target": target, "model": model, "model_layers": layers, "form": name,
                          "fit_on": f"k <= {FIT_MAX_K}", "mean_abs_error": point["mean_abs_error"],
                          "low": interval["low"], "high": interval["high"], "n_ok": interval["n_ok"],
                          **{f"error_k{int(kk)}": e for kk, e in point["per_k"].items()}})
    return pd.DataFrame(loko), pd.DataFrame(extra)


def size_table(curves: Curves) -> pd.DataFrame:
    """Joint laws in k and size: fit on every size but the largest, predict the largest; the
    error's interval refits on bootstrap replicates of the mean gains (the same draws as the curves)."""
    rows = []
    for (target, model), group in curves.curve.groupby(["target", "model"]):
        sizes = sorted(group["model_layers"].unique())
        if len(sizes) < 3:  # two smaller sizes to fit on, the largest to predict
            continue
        shared = sorted(set.intersection(*(set(group[group["model_layers"] == s]["k"]) for s in sizes)))
        use = group[group["k"].isin(shared)].sort_values(["model_layers", "k"])
        k, layers = use["k"].to_numpy(float), use["model_layers"].to_numpy(float)
        reps = np.concatenate([curves.replicates[(target, model, s)][1][:, [curves.replicates[(target, model, s)][0]
                                                                            .index(kk) for kk in shared]]
                               for s in sizes], axis=1)[:EXTRAPOLATION_REPLICATES]  # [R, sizes x shared k]
        for name in fits.JOINT_FORMS:
            try:
                result = fits.extrapolate_size(name, k, layers, use["gain"].to_numpy(float))
            except ValueError:
                continue
            errors = np.array([_size_error(name, k, layers, rep) for rep in reps])
            low, high = np.nanquantile(errors, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]) if np.isfinite(errors).any() \
                else (np.nan, np.nan)
            rows.append({"target": target, "model": model, "form": name, "formula": fits.JOINT_FORMS[name].formula,
                         "held_out_layers": result["held_out_layers"], "mean_abs_error": result["mean_abs_error"],
                         "low": float(low), "high": float(high),
                         **{f"error_k{int(kk)}": e for kk, e in result["per_k"].items()}})
    return pd.DataFrame(rows)


def _size_error(form: str, k, layers, y) -> float:
    try:
        return fits.extrapolate_size(form, k, layers, y)["mean_abs_error"]
    except ValueError:  # a replicate without the largest size's points
        return float("nan")


def membership_table(curves: Curves) -> pd.DataFrame:
    """Which intermediate tasks help or hurt each target beyond the number of tasks: OLS of a
    cell's gain on indicators of the tasks in its subset plus one level per k (k >= 1, one point
    per subset x seed). The indicators of a subset sum to its k, so only differences between
    tasks are identified: a task's effect is its coefficient minus the mean coefficient (the gain
    from having it in a subset instead of an average task of the pool, at the same k), with a
    heteroskedasticity-robust (HC3) 95% interval."""
    import statsmodels.api as sm

    rows = []
    pts = curves.points[curves.points["k"] >= 1]
    for (target, model, layers), group in pts.groupby(["target", *SIZE]):
        tasks = sorted({t for s in group["intermediate_tasks"] for t in s.split(",") if t})
        x = pd.DataFrame({t: group["intermediate_tasks"].map(lambda s, t=t: float(t in s.split(","))) for t in tasks})
        levels = pd.get_dummies(group["k"], prefix="k", drop_first=True, dtype=float)
        design = sm.add_constant(pd.concat([x, levels], axis=1), has_constant="add")
        if len(group) <= design.shape[1]:
            continue
        with warnings.catch_warnings():  # rank-deficient by design (indicators sum to k): only contrasts are used
            warnings.simplefilter("ignore")
            model_fit = sm.OLS(group["gain"].to_numpy(float), design).fit(cov_type="HC3")
        contrasts = np.zeros((len(tasks), design.shape[1]))
        for i, t in enumerate(tasks):
            contrasts[i, [design.columns.get_loc(s) for s in tasks]] = -1 / len(tasks)
            contrasts[i, design.columns.get_loc(t)] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = model_fit.t_test(contrasts)
        ci = np.asarray(test.conf_int(1 - LEVEL))
        for i, t in enumerate(tasks):
            rows.append({"target": target, "model": model, "model_layers": layers, "task": t,
                         "effect": float(np.asarray(test.effect)[i]), "low": float(ci[i, 0]), "high": float(ci[i, 1]),
                         "n_points": len(group)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- the run
def run_analysis(study_name: str = "scaling", source: str | None = None, output: str | None = None,
                 replicates: int = 1000) -> str:
    """Analyse the study (`study_name`: a study file's name or path, or the name of an MLflow
    experiment without one); write tables, plots and summary.md to `output`; log them to MLflow;
    return the summary."""
    from . import plots

    study = find_study(study_name)
    if study is not None:
        study_name = study.name
    experiment = study.mlflow_experiment if study is not None else study_name
    frame, outcomes, origin = load_rows(experiment, source)
    notes: list[str] = []
    frame = current_cells(study, frame, notes)
    strategy = study_strategy(study, frame)
    try:
        curves = compute_gains(frame, outcomes, strategy, replicates=replicates)
    except ValueError as e:
        raise AnalysisError(f"{origin}: {e}") from None
    curves.notes[:0] = notes
    loko, extra = fit_table(curves)
    sizes = size_table(curves)
    members = membership_table(curves)
    out = Path(output or f"outputs/{study_name}-analysis")
    out.mkdir(parents=True, exist_ok=True)
    tables = {"curve": curves.curve, "points": curves.points, "fits": loko, "extrapolation": extra,
              "size_extrapolation": sizes, "membership": members, "variance": curves.variance,
              "per_language": curves.per_language, "controls": curves.controls}
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    plots.write_all(curves, loko, extra, members, out)
    summary = summarize(study_name, origin, strategy, curves, loko, extra, sizes, members)
    (out / "summary.md").write_text(summary)
    _log(study_name, origin, out)
    return summary


def _log(study: str, origin: str, out: Path) -> None:
    from ..results_table import REPORTS_EXPERIMENT
    from ..tracking import Tracker

    run = Tracker(REPORTS_EXPERIMENT).start("scaling", tags={"kind": "scaling", "study": study, "source": origin[:500]})
    status = "FAILED"
    try:
        for p in sorted(out.iterdir()):
            run.log_artifacts(p)
        if (out / "summary.md").is_file():
            run.describe((out / "summary.md").read_text())
        status = "FINISHED"
    finally:
        run.end(status)


# ---------------------------------------------------------------------- the summary
def _fmt(row) -> str:
    return f"{100 * row['gain']:+.1f} [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]" + (
        "*" if row["low"] > 0 or row["high"] < 0 else "")


def summarize(study: str, origin: str, strategy: str, curves: Curves, loko: pd.DataFrame, extra: pd.DataFrame,
              sizes: pd.DataFrame, members: pd.DataFrame) -> str:
    c = curves.curve
    lines = [f"# Scaling study '{study}': gain vs number of intermediate tasks k and model size", "",
             f"Source: {origin}. Strategy for k >= 2: {strategy}. Gains are x100 points over the no-intermediate "
             f"baseline of the same size and seed: mean over subsets of the mean over seeds, with 95% intervals "
             f"(hierarchical bootstrap over subsets, seeds and test items); * = the interval excludes 0.", ""]
    if (c["model"] == "me5-small").any():
        lines += [f"**Caveat:** {STAND_IN}. Offline data are dev splits; these are not XLM-R numbers.", ""]
    if (c[c["k"] > 0]["n_seeds"] < 2).any():
        lines += ["**One seed:** where a k has a single seed its interval covers test items (and subsets) only, not "
                  "training noise; compare its gains with the untrained control's (below), which is pure training "
                  "noise of the same kind, before reading any of them as transfer.", ""]
    order = [XTREME, *sorted(g for g in curves.groups if g != XTREME), *sorted(set(c["target"]) - set(curves.groups))]
    ks = sorted(c["k"].unique())
    lines += ["## Gain vs k", "", "| target | model | layers | " + " | ".join(f"k={k}" for k in ks) + " |",
              "|---|---|---|" + "---|" * len(ks)]
    for target in order:
        for (model, layers), group in c[c["target"] == target].groupby(SIZE):
            at = {int(r["k"]): _fmt(r) for _, r in group.iterrows()}
            lines.append(f"| {target} | {model} | {layers} | " + " | ".join(at.get(k, "") for k in ks) + " |")
    lines.append("")
    lines += _answer(curves, loko, extra, sizes, members, order)
    if not curves.controls.empty:
        lines += ["## Control: an untrained adapter of the same shape (k = 0)", "",
                  "| target | model | layers | gain vs none |", "|---|---|---|---|"]
        for _, r in curves.controls.iterrows():
            lines.append(f"| {r['target']} | {r['model']} | {r['model_layers']} | {_fmt(r)} |")
        lines.append("")
    if not loko.empty:
        lines += ["## Laws of gain vs k (fit on the mean gain per k)", "",
                  "| target | layers | form | formula | leave-one-k-out RMSE | extrapolation error from k <= 3 |",
                  "|---|---|---|---|---|---|"]
        for _, r in loko.iterrows():
            e = extra[(extra["target"] == r["target"]) & (extra["model_layers"] == r["model_layers"])
                      & (extra["form"] == r["form"])] if not extra.empty else extra
            ex = (f"{100 * e.iloc[0]['mean_abs_error']:.1f} [{100 * e.iloc[0]['low']:.1f}, "
                  f"{100 * e.iloc[0]['high']:.1f}]") if len(e) else "-"
            lines.append(f"| {r['target']} | {r['model_layers']} | {r['form']} | {r['formula']} | "
                         f"{100 * r['loko_rmse']:.2f} | {ex} |")
        lines.append("")
    if len(set(c["model"])) > 1:
        curves.notes.append("several models: the joint law in k and size is fitted within one model's truncations "
                            "only (sizes of different models need their parameter counts)")
    if not sizes.empty:
        lines += ["## Joint law in k and size: fit on the smaller sizes, predict the largest", "",
                  "| target | form | formula | held-out layers | mean abs. error [95%] |", "|---|---|---|---|---|"]
        for _, r in sizes.iterrows():
            lines.append(f"| {r['target']} | {r['form']} | {r['formula']} | {r['held_out_layers']:.0f} | "
                         f"{100 * r['mean_abs_error']:.2f} [{100 * r['low']:.2f}, {100 * r['high']:.2f}] |")
        lines.append("")
    if not curves.variance.empty:
        lines += ["## Variance of one cell's gain: subsets, seeds, test items (shares)", "",
                  "| target | layers | k | subsets | seeds | items |", "|---|---|---|---|---|---|"]
        for _, r in curves.variance.iterrows():
            total = r["subsets"] + r["seeds"] + r["items"]
            if total > 0:
                lines.append(f"| {r['target']} | {r['model_layers']} | {r['k']} | {r['subsets'] / total:.0%} | "
                             f"{r['seeds'] / total:.0%} | {r['items'] / total:.0%} |")
        lines.append("")
    lines += [f"Notes: {n}" for n in curves.notes]
    lines += ["", "Plots: gain_vs_k.png, targets.png, predicted_vs_observed.png, variance.png, languages.png; "
              "tables: *.csv beside this file."]
    return "\n".join(lines) + "\n"


def _answer(curves: Curves, loko: pd.DataFrame, extra: pd.DataFrame, sizes: pd.DataFrame, members: pd.DataFrame,
            order: list[str]) -> list[str]:
    """The answer in numbers, for the headline target (the XTREME average where there is one)."""
    c = curves.curve
    head = next(t for t in order if t in set(c["target"]))
    mine = c[c["target"] == head]
    largest = mine["model_layers"].max()
    at = mine[mine["model_layers"] == largest].sort_values("k")
    out = [f"## The answer ({head}, {at['model'].iloc[0]} at {largest} layers)", ""]
    one, top = at[at["k"] == 1], at[at["k"] == at["k"].max()]
    if len(one) and len(top):
        out.append(f"- one intermediate task: {_fmt(one.iloc[0])}; all {int(top.iloc[0]['k'])}: {_fmt(top.iloc[0])}; "
                   f"per k: " + ", ".join(f"k={int(r['k'])} {_fmt(r)}" for _, r in at.iterrows()))
    best = loko[(loko["target"] == head) & (loko["model_layers"] == largest)].dropna(subset=["loko_rmse"])
    if len(best):
        b = best.sort_values("loko_rmse").iloc[0]
        out.append(f"- best law by leave-one-k-out error: {b['form']} ({b['formula']}; RMSE {100 * b['loko_rmse']:.2f} "
                   f"points; parameters {b['params']})")
        e = extra[(extra["target"] == head) & (extra["model_layers"] == largest) & (extra["form"] == b["form"])] \
            if not extra.empty else extra
        if len(e):
            out.append(f"- fitted on k <= {FIT_MAX_K}, it predicts the larger k with a mean absolute error of "
                       f"{100 * e.iloc[0]['mean_abs_error']:.1f} points [{100 * e.iloc[0]['low']:.1f}, "
                       f"{100 * e.iloc[0]['high']:.1f}]")
    by_size = mine[mine["k"] == mine["k"].max()].sort_values("model_layers")
    if len(by_size) > 1:
        out.append("- with every task, by size: " + ", ".join(f"{int(r['model_layers'])} layers {_fmt(r)}"
                                                               for _, r in by_size.iterrows()))
    s = sizes[sizes["target"] == head] if not sizes.empty else sizes
    if len(s):
        r = s.sort_values("mean_abs_error").iloc[0]
        out.append(f"- a joint law in k and size ({r['form']}: {r['formula']}) fitted on the smaller sizes predicts "
                   f"{r['held_out_layers']:.0f} layers with a mean absolute error of "
                   f"{100 * r['mean_abs_error']:.1f} points [{100 * r['low']:.1f}, {100 * r['high']:.1f}]")
    m = members[(members["target"] == head) & (members["model_layers"] == largest)] if not members.empty else members
    if len(m):
        helps = m[m["low"] > 0]["task"].tolist()
        hurts = m[m["high"] < 0]["task"].tolist()
        out.append(f"- tasks that help or hurt compared with an average task of the pool at the same k (95% "
                   f"interval excludes 0; membership.csv): helps {', '.join(helps) or 'none'}, "
                   f"hurts {', '.join(hurts) or 'none'}; the paper's pattern (XLM-R large): {PAPER_PATTERN}")
    fam = c[c["target"].str.startswith("family:") & (c["model_layers"] == largest)]
    if len(fam):
        kmax = fam[fam["k"] == fam["k"].max()]
        out.append("- by family, all tasks: " + ", ".join(f"{r['target'][7:]} {_fmt(r)}" for _, r in kmax.iterrows()))
    significant = at[(at["k"] > 0) & ((at["low"] > 0) | (at["high"] < 0))]
    if significant.empty:
        out.append("- no k's gain has an interval that excludes 0: at this scale the study cannot tell a gain from "
                   "no change")
    return [*out, ""]
