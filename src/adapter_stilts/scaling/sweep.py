"""`python run.py sweep --exp scaling [--dry-run] [--hours H] [--limit N]`: expand a study into
cells, print the plan with a cost estimate from measured unit times, skip the cells that already
finished in the MLflow store, and run the rest, one experiment invocation per cell.

Resumable at every level: a finished cell is skipped (its parent run is FINISHED with this cell's
`study.cell` tag and the same resolved config, or its exported rows carry that config's key:
done on another machine); a killed cell resumes where it stopped (the
invocation's state.json and checkpoints); single-task adapters and baseline scores come from the
phase cache. `--hours` stops starting new cells after that long, so a long study runs as chunks
that fit a session. After each cell, its rows of the results table (and its per-item outcomes)
are written under the study's results folder, so the study accumulates across machines."""
from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import distributed as dist
from ..cache_keys import target_settings_hash
from ..config import ConfigError, ExperimentConfig
from ..resume import config_key
from .design import Cell, cell_config, cells, intermediate_examples, subsets_by_k
from .study import Study

log = logging.getLogger(__name__)
CELL_TAG = "study.cell"
STUDY_TAG = "study"
CELL_SKIPPED = 5  # a cell's exit code when another sweep finished it while this one waited for it
# a cell's claim is refreshed every minute while it runs: one silent this long was left by a dead
# worker or node (another host's pid cannot be checked), and a retry takes it over
CELL_STALE_S = 10 * 60


@dataclass
class PlannedCell:
    cell: Cell
    config: ExperimentConfig
    key: str  # the resolved config's key: a cell is done only under the same settings
    # the key before this machine's hardware was resolved (training.bf16): what a worker on other
    # hardware checks the study file against
    spec_key: str = ""
    done: bool = False
    estimate_s: float | None = None


@dataclass
class Plan:
    study: Study
    pool: list[str]
    subsets: dict[int, list[tuple[str, ...]]]
    cells: list[PlannedCell]
    notes: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.done]


def available_pool(study: Study) -> tuple[list[str], list[str]]:
    """The pool tasks with training data (local files probed; a hub source is assumed to have them)."""
    from ..tasks.data import resolve_source
    from ..tasks.lookup import get_task
    from ..tasks.overview import probe_train

    source = resolve_source(study.experiment.data)
    pool, notes = [], []
    for name in study.config.pool:
        status = probe_train(get_task(name), source) if source.kind == "local" else "yes"
        if status == "yes":
            pool.append(name)
        elif study.config.skip_missing:
            notes.append(f"pool task {name} left out: no training data ({status})")
        else:
            raise ConfigError(f"study.pool: {name} has no training data ({status}); set study.skip_missing: true "
                              f"to leave it out")
    if not pool:
        raise ConfigError("study.pool: no task of the pool has training data")
    return pool, notes


def planned_cells(study: Study) -> tuple[Study, list[str], list[str], list[PlannedCell]]:
    """(the study with bf16 resolved, the pool with data, notes, every cell with its config and key)."""
    from ..pipeline import resolve_bf16

    experiment = copy.deepcopy(study.experiment)
    resolve_bf16(experiment)  # before any key: the recipe keys its invocation after this too
    resolved = Study(study.name, study.config, experiment, study.source_file)
    pool, notes = available_pool(resolved)
    planned = []
    for cell in cells(resolved, pool):
        cfg = cell_config(resolved, cell)
        planned.append(PlannedCell(cell, cfg, config_key(cfg.to_dict()),
                                   config_key(cell_config(study, cell).to_dict())))
    return resolved, pool, notes, planned


def make_plan(study: Study, store_uri: str | None = None) -> Plan:
    """Every cell with its config, whether it is done, and its estimated cost."""
    from ..pipeline import validate

    study, pool, notes, planned = planned_cells(study)
    for i, size in enumerate(study.config.sizes):
        depth = model_depth(size.model or study.experiment.model.name)
        if size.layers and depth and size.layers > depth:
            raise ConfigError(f"{study.source_file}: study.sizes[{i}].layers: {size.layers} but "
                              f"{size.model or study.experiment.model.name} has {depth} layers")
    checked = set()
    for p in planned:  # every distinct kind of cell through the experiment's own checks, before any compute
        kind = (p.cell.model, p.cell.layers, p.cell.strategy)
        if kind not in checked:
            checked.add(kind)
            try:
                validate(copy.deepcopy(p.config))
            except ConfigError as e:
                raise ConfigError(f"{study.source_file}: cell {p.cell.id}: {e}") from None
    plan = Plan(study, pool, subsets_by_k(study.config, pool), planned, notes)
    client = _client(store_uri)
    done = (finished_cells(client, study) if client else set()) | exported_cells(study)
    costs = UnitCosts.measure(client) if client else UnitCosts()
    for p in planned:
        p.done = (p.cell.id, p.key) in done
        p.estimate_s = costs.cell(p.config, p.cell, study)
    plan.notes += costs.notes
    return plan


def find_cell(study: Study, cell_id: str, key: str | None = None) -> tuple[Study, PlannedCell]:
    """(the study as planned here, one of its cells by id); `key` (the planner's spec_key): the
    study file must still give the cell that config (this machine's hardware may differ)."""
    study, _, _, planned = planned_cells(study)
    for p in planned:
        if p.cell.id == cell_id:
            if key and p.spec_key != key:
                raise ConfigError(f"{study.source_file}: cell {cell_id} now resolves to config {p.key}, not the "
                                  f"planned {key}: the study file or its data changed since the sweep started")
            return study, p
    raise ConfigError(f"{study.source_file}: no cell '{cell_id}' in this study")


def model_depth(model: str) -> int | None:
    """A model's number of layers, or None when it cannot be resolved here (a Hub model offline)."""
    from ..models.loading import model_layers, resolve_model

    try:
        return model_layers(resolve_model(model))
    except Exception:  # ModelError offline, OSError: sized only where it runs
        return None


def _client(uri: str | None):
    from ..results_table import ResultsError, open_client

    try:
        return open_client(uri)[0]
    except ResultsError:  # no store yet: nothing is done and nothing is measured
        return None


def finished_cells(client, study: Study) -> set[tuple[str, str]]:
    """(cell id, config key) of every FINISHED invocation of a cell of this study in the store."""
    from ..results_table import search_runs
    from ..tracking import retry_if_locked

    experiment = retry_if_locked(client.get_experiment_by_name, study.mlflow_experiment)
    if experiment is None:
        return set()
    runs = search_runs(client, [experiment.experiment_id],
                       f"tags.`{STUDY_TAG}` = '{study.name}' and attributes.status = 'FINISHED'")
    return {(r.data.tags.get(CELL_TAG, ""), r.data.tags.get("config_key", "")) for r in runs}


def exported_cells(study: Study) -> set[tuple[str, str]]:
    """(cell id, config key) of every cell whose rows are in the study's results folder: done on
    another machine (its store is not here), so not run again."""
    import pandas as pd

    out = set()
    for path in sorted((results_dir(study) / "cells").glob("*.csv")):
        try:
            head = pd.read_csv(path, nrows=1, usecols=["cell", "config_key"], dtype=str)
        except (ValueError, OSError, pd.errors.ParserError):  # written before the key was exported
            continue
        if len(head):
            out.add((str(head["cell"].iloc[0]), str(head["config_key"].iloc[0])))
    return out


@dataclass
class UnitCosts:
    """Wall seconds of units computed (not reused from the cache) by any run in the store: a
    target's training and scoring per (task, model, layers, target settings), intermediate
    training per example per (task, model, layers) from single-task phases (a multiple-choice
    example costs several sequences; a multi-task phase costs the sum over its tasks) and per
    (model, layers) from every phase, and a cell's own overhead (loading, featurising)."""
    targets: dict[tuple, list[float]] = field(default_factory=dict)
    per_example: dict[tuple, list[float]] = field(default_factory=dict)
    per_task_example: dict[tuple, list[float]] = field(default_factory=dict)
    overhead: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _depths: dict[str, int] = field(default_factory=dict)  # a model's full depth, resolved once

    @classmethod
    def measure(cls, client) -> UnitCosts:
        from ..results_table import search_runs
        from ..tracking import retry_if_locked

        costs = cls()
        ids = [e.experiment_id for e in retry_if_locked(client.search_experiments)]
        if not ids:
            return costs
        children: dict[str, float] = {}
        cells: dict[str, float] = {}  # a study cell's parent run: its wall seconds
        for run in search_runs(client, ids, "attributes.status = 'FINISHED'"):
            tags, info = run.data.tags, run.info
            if not info.end_time or not info.start_time:
                continue
            seconds = (info.end_time - info.start_time) / 1000
            if tags.get(STUDY_TAG):
                cells[info.run_id] = seconds
            parent = tags.get("mlflow.parentRunId")
            if parent:
                children[parent] = children.get(parent, 0.0) + seconds
            if tags.get("cache") != "miss" or "id.model" not in tags:
                continue
            size = (tags["id.model"], int(tags.get("id.model_layers", 0) or 0))
            if tags.get("phase") == "target":
                if tags.get("trained_in_run", info.run_id) != info.run_id:
                    continue  # scored with a training done elsewhere (shared, or from the cache): not its cost
                key = (tags.get("task", ""), *size, tags.get("id.target_settings", ""))
                costs.targets.setdefault(key, []).append(seconds)
            elif tags.get("phase") == "intermediate" and run.data.params.get("train_examples"):
                per = seconds / int(run.data.params["train_examples"])
                costs.per_example.setdefault(size, []).append(per)
                tasks = tags.get("id.intermediate_tasks", "").split(",")
                if len(tasks) == 1 and tasks[0]:
                    costs.per_task_example.setdefault((tasks[0], *size), []).append(per)
        costs.overhead = [max(wall - children[run_id], 0.0) for run_id, wall in cells.items() if run_id in children]
        return costs

    def target(self, task: str, model: str, layers: int, settings: str) -> float | None:
        if exact := self.targets.get((task, model, layers, settings)):
            return statistics.median(exact)
        # the same protocol at another size, else any protocol of the task (a truncated model's retrieval
        # layer is part of its protocol): scaled by the number of layers (the encoder's compute is per layer)
        same_task = {k: v for k, v in self.targets.items() if k[0] == task and k[1] == model}
        near = [(k[2], statistics.median(v)) for k, v in same_task.items() if k[3] == settings] or \
            [(k[2], statistics.median(v)) for k, v in same_task.items()]
        if not near:
            return None
        measured_layers, seconds = min(near, key=lambda x: abs(x[0] - layers))
        return seconds * layers / measured_layers if measured_layers else seconds

    def intermediate(self, examples: dict[str, int], model: str, layers: int) -> float | None:
        """Training examples per task -> seconds: each task at its own measured rate where a
        single-task phase of it was measured (at this size, else scaled from the nearest), else
        at the rate of every phase of the model."""
        total = 0.0
        for task, n in examples.items():
            rate = self._rate({k[1:]: v for k, v in self.per_task_example.items() if k[0] == task}, model, layers) \
                or self._rate(self.per_example, model, layers)
            if rate is None:
                return None
            total += rate * n
        return total

    @staticmethod
    def _rate(measured: dict[tuple, list[float]], model: str, layers: int) -> float | None:
        """Seconds per example at (model, layers), or scaled by layers from the nearest measured size."""
        if exact := measured.get((model, layers)):
            return statistics.median(exact)
        near = [(k[1], statistics.median(v)) for k, v in measured.items() if k[0] == model]
        if not near:
            return None
        measured_layers, per = min(near, key=lambda x: abs(x[0] - layers))
        return per * layers / measured_layers if measured_layers else per

    def cell(self, cfg: ExperimentConfig, cell: Cell, study: Study) -> float | None:
        """A cell's estimated wall seconds (an upper bound: units the cache already holds cost
        nothing), or None while a unit of it has never been measured."""
        from ..tasks.lookup import get_task

        if not cell.layers and cell.model not in self._depths:
            self._depths[cell.model] = model_depth(cell.model) or 0
        layers = cell.layers or self._depths[cell.model]
        parts = [self.target(t, cell.model, layers, target_settings_hash(cfg, t, get_task(t).trains))
                 for t in cfg.target.tasks]
        if cell.k:
            # average / fusion train each member alone; multitask trains them together: the same examples
            n = intermediate_examples(study.config, cell.k)
            parts.append(self.intermediate({t: n for t in cell.tasks}, cell.model, layers))
        if any(p is None for p in parts):
            return None
        return sum(parts) + (statistics.median(self.overhead) if self.overhead else 0.0)


def format_plan(plan: Plan) -> str:
    """The plan as a table: per model size and k, the cells, those done, and the time still needed."""
    import pandas as pd

    rows = [{"model": p.cell.model, "layers": p.cell.layers or "all", "k": p.cell.k,
             "strategy": p.cell.strategy, "cells": 1, "done": int(p.done),
             "est_min": 0.0 if p.done else (p.estimate_s / 60 if p.estimate_s is not None else float("nan")),
             "unmeasured": int(not p.done and p.estimate_s is None)} for p in plan.cells]
    frame = pd.DataFrame(rows).groupby(["model", "layers", "k", "strategy"], sort=False).agg(
        cells=("cells", "sum"), done=("done", "sum"), est_min=("est_min", lambda x: x.sum(skipna=False)),
        unmeasured=("unmeasured", "sum"))
    todo = plan.todo
    known = [p.estimate_s for p in todo if p.estimate_s is not None]
    s = plan.study.config
    lines = [f"Study '{plan.study.name}' ({plan.study.source_file}): pool of {len(plan.pool)} "
             f"({', '.join(plan.pool)}); {s.budget} budget of {s.examples} examples; strategy {s.strategy}; "
             f"seeds {s.seeds}",
             *(f"  k={k}: " + "; ".join("+".join(x) or "(none)" for x in subs) for k, subs in plan.subsets.items()),
             frame.reset_index().to_string(index=False, float_format=lambda x: f"{x:.1f}"),
             f"{len(plan.cells)} cells, {len(plan.cells) - len(todo)} done, {len(todo)} to run: "
             f"estimated {sum(known) / 3600:.1f} h" + (f" for {len(known)} of them ({len(todo) - len(known)} have "
                                                       f"units never measured: run one cell of each size first)"
                                                       if len(known) < len(todo) else "")]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def run_sweep(study: Study, dry_run: bool = False, hours: float = 0.0, limit: int = 0,
              execute: Callable[[Plan], int] | None = None) -> int:
    """Plan, export finished cells not exported yet, then run the cells not done: in this process
    and its DeepSpeed ranks, in plan order (or by `execute(plan)`: a backend running them at once,
    see parallel.py). Exit code 0 when every cell ran (or was done), 1 when a cell failed, 3 when
    `hours` / `limit` stopped the sweep with cells left (rerun to go on)."""
    if not dry_run and execute is None:  # a backend's cells start their own process groups
        dist.init()
    plan, error = None, None
    if dist.is_main():
        try:
            plan = make_plan(study)
        except ConfigError as e:
            error = str(e)
    plan, error = dist.broadcast_object((plan, error))  # every rank fails, or runs the same plan
    if error:
        raise ConfigError(error)
    if dist.is_main():
        print(format_plan(plan), flush=True)
    if dry_run:
        return 0
    if dist.is_main():  # a cell that finished but was never exported (killed while exporting, another store)
        for p in plan.cells:
            if p.done and not (results_dir(study) / "cells" / f"{p.cell.id}.csv").is_file():
                export_cell(study, p.cell)
    if execute is not None:
        return execute(plan)
    return _run_inline(plan, hours, limit)


def _run_inline(plan: Plan, hours: float, limit: int) -> int:
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    study, todo, failed, t0 = plan.study, plan.todo, [], time.time()
    with logging_redirect_tqdm(), tqdm(total=len(todo), desc=f"sweep {study.name}", unit="cell",
                                       disable=not dist.is_main()) as bar:
        for i, p in enumerate(todo):
            # rank 0 decides (its clock includes the exports), so every rank stops before the same cell
            stop = dist.broadcast_object((hours and time.time() - t0 > hours * 3600) or (limit and i >= limit))
            if stop:
                log.info("Sweep stopped after %.1f h and %d cells; %d cells left: rerun the same command to go on",
                         (time.time() - t0) / 3600, i, len(todo) - i)
                return 3
            log.info("Cell %d/%d: %s (estimated %s)", i + 1, len(todo), p.cell.id,
                     f"{p.estimate_s / 60:.0f} min" if p.estimate_s is not None else "unmeasured")
            if run_cell(study, p) not in (0, CELL_SKIPPED):
                failed.append(p.cell.id)
            bar.update(1)
    if failed:
        log.error("%d cells failed: %s (their errors are above and on their MLflow runs)", len(failed),
                  ", ".join(failed))
        return 1
    log.info("Sweep '%s' complete: %d cells run in %.1f h", study.name, len(todo), (time.time() - t0) / 3600)
    return 0


def run_cell(study: Study, p: PlannedCell) -> int:
    """Run one cell under its claim, so two sweeps (or a sweep and the retry of a cell whose
    worker died) never run it at once: the second waits, then finds it finished and skips it
    (CELL_SKIPPED); a dead holder's claim is taken over and the cell resumes from its state.
    Exit code as run_experiment's; a finished cell's rows are exported."""
    from ..cache import PhaseCache
    from ..runner import run_experiment

    cache = PhaseCache(Path(p.config.tracking.output_dir) / "cache")
    with cache.claim("cells", p.key, stale_after=CELL_STALE_S):
        done, error = False, None
        if dist.is_main():
            try:
                client = _client(None)
                done = bool(client) and (p.cell.id, p.key) in finished_cells(client, study)
            except Exception as e:  # every rank raises, none is left waiting in a collective
                error = f"cell {p.cell.id}: cannot read the MLflow store: {type(e).__name__}: {e}"
        done, error = dist.broadcast_object((done, error))
        if error:
            raise RuntimeError(error)
        if done:
            log.info("cell %s: finished by another sweep meanwhile; skipped", p.cell.id)
            return CELL_SKIPPED
        code = run_experiment(copy.deepcopy(p.config), {STUDY_TAG: study.name, CELL_TAG: p.cell.id})
        if not code and dist.is_main():
            export_cell(study, p.cell)
    return code


def results_dir(study: Study) -> Path:
    return Path(study.config.results_dir or f"results/{study.name}")


def export_cell(study: Study, cell: Cell) -> None:
    """The cell's rows of the results table (CSV) and its per-item outcomes (Parquet), one file
    each per cell, so studies run on several machines merge without conflicts."""
    from ..results_table import ResultsError, build_results, fetch_outcomes, open_client, search_runs
    from ..tracking import retry_if_locked

    client, uri = open_client()
    name = study.mlflow_experiment
    experiment = retry_if_locked(client.get_experiment_by_name, name)
    parents = search_runs(client, [experiment.experiment_id],
                          f"tags.`{CELL_TAG}` = '{cell.id}' and attributes.status = 'FINISHED'")
    if not parents:
        log.warning("cell %s: no finished run in the store to export", cell.id)
        return
    parent = max(parents, key=lambda r: r.info.end_time or 0)
    try:
        table = build_results([name], uri, parent_run_id=parent.info.run_id)
    except ResultsError as e:
        log.warning("cell %s: nothing to export (%s)", cell.id, e)
        return
    import pandas as pd

    folder = results_dir(study)
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    frame = table.frame.assign(study=study.name, cell=cell.id, config_key=parent.data.tags.get("config_key", ""))
    frame.to_csv(folder / "cells" / f"{cell.id}.csv", index=False)
    outcomes = {r: o for r, o in fetch_outcomes(client, sorted(set(frame["run_id"]))).items() if o is not None}
    if outcomes:
        (folder / "outcomes").mkdir(parents=True, exist_ok=True)
        pd.concat([o.assign(run_id=r) for r, o in outcomes.items()], ignore_index=True).to_parquet(
            folder / "outcomes" / f"{cell.id}.parquet", index=False)
    log.info("cell %s: %d rows written to %s", cell.id, len(frame), folder)
