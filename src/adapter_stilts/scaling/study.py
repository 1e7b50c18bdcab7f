"""A study file: a plain experiment (the targets, sizes and training settings every cell shares;
`extends` works as usual) plus a `study:` section saying which cells to run. Validated like an
experiment: an unknown key, a wrong type or an impossible value fails here, before any compute,
naming the field.

    study:
      pool: [anli_plus, mnli, ...]     # the intermediate tasks subsets are drawn from
      k: [0, 1, 2, 3, 5, 7]             # numbers of tasks; the whole pool is added (whole_pool)
      subsets_per_k: 4                  # random balanced subsets for 2 <= k < the pool's size
      seeds: [42, 43]
      sizes: [{layers: 12}, {layers: 8, k: [0, 1, 3, 9]}]
      budget: per_task                  # per_task: `examples` per task | fixed_total: `examples` in all
      examples: 400
      strategy: multitask               # multitask | average | fusion
      untrained_control: true           # k = 0 with an untrained adapter stacked in phase 3
      resources: {cpus: 1, gpus: 0, ranks: 1, retries: 2}   # per cell, for sweep --backend ray / local
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from ..config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    bounded,
    build_section,
    check_range,
    load_experiment,
    parse_override,
    resolve_experiment_path,
)
from ..training.engine import resolve_ds_config

STUDY_KEY = "study"
DEFAULT_K = (0, 1, 2, 3, 5, 7)


@dataclass
class SizeConfig:
    """One point of the size axis: a model, optionally truncated to its first `layers` layers."""
    model: str = ""  # "" = the experiment's model.name
    layers: int = bounded(0, ge=0)  # 0 = every layer (model.layers)
    k: list[int] = field(default_factory=list)  # the k values run at this size; empty = study.k
    # what a size needs to fit its device ("" / 0 = the experiment's): e.g. zero3_offload for XLM-R XL
    deepspeed: str = ""
    micro_batch_size: int = bounded(0, ge=0)


@dataclass
class CellResources:
    """What one cell asks of the machines it runs on (`sweep --backend ray|local`)."""
    cpus: float = bounded(1.0, gt=0.0)  # Ray CPUs reserved per cell
    gpus: float = bounded(0.0, ge=0.0)  # GPUs per cell (Ray's; the local backend hands them out)
    ranks: int = bounded(1, ge=1)  # DeepSpeed ranks inside a cell (launched with the deepspeed launcher when > 1)
    retries: int = bounded(2, ge=0)  # a cell whose worker, node or process dies is started again (resuming)


@dataclass
class StudyConfig:
    pool: list[str] = field(default_factory=list)
    k: list[int] = field(default_factory=list)  # empty: DEFAULT_K (those up to the pool's size)
    whole_pool: bool = True  # also k = the pool's size (every task once)
    subsets_per_k: int = bounded(4, ge=1)
    subset_seed: int = bounded(0, ge=0)  # draws the subsets (the same subsets at every seed and size)
    seeds: list[int] = field(default_factory=lambda: [42, 43])
    sizes: list[SizeConfig] = field(default_factory=lambda: [SizeConfig()])
    budget: str = "per_task"
    examples: int = bounded(400, ge=1)
    dev_size: int = bounded(100, ge=1)  # English dev examples per intermediate task
    strategy: str = "multitask"
    untrained_control: bool = True
    # pool tasks without data (QQP and CCG offline) are left out with a note; false: an error
    skip_missing: bool = True
    # where the sweep writes each finished cell's rows (CSV) and per-item outcomes (Parquet), to
    # commit; the analysis reads it too. "" = results/<study name>
    results_dir: str = ""
    resources: CellResources = field(default_factory=CellResources)


STUDY_CHOICES = {"study.budget": ("per_task", "fixed_total"), "study.strategy": ("multitask", "average", "fusion")}


@dataclass
class Study:
    name: str
    config: StudyConfig
    experiment: ExperimentConfig  # what every cell shares
    source_file: str

    @property
    def mlflow_experiment(self) -> str:
        """Where the cells log: the experiment's tracking.experiment, else the study's name."""
        return self.experiment.tracking.experiment or self.name


def load_study(exp: str, overrides: list[str] | None = None) -> Study:
    """A study file: `--set study.seeds=[42]` changes the study, any other `--set` the experiment."""
    path = resolve_experiment_path(exp)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get(STUDY_KEY), dict):
        raise ConfigError(f"{path}: not a study (no '{STUDY_KEY}:' section); run an experiment with "
                          f"`python run.py --exp {exp}`")
    study_raw = {STUDY_KEY: raw[STUDY_KEY]}
    experiment_overrides = []
    for text in overrides or []:
        keys, value = parse_override(text)
        if keys[0] == STUDY_KEY:
            apply_override(study_raw, keys, value)
        else:
            experiment_overrides.append(text)
    try:
        config = build_section(StudyConfig, study_raw[STUDY_KEY] or {}, STUDY_KEY)
        for key, allowed in STUDY_CHOICES.items():
            if getattr(config, key.split(".")[1]) not in allowed:
                raise ConfigError(f"{key}: '{getattr(config, key.split('.')[1])}' is not one of {', '.join(allowed)}")
        experiment = load_experiment(str(path), experiment_overrides, study_ok=True)
        check_study(config, experiment)
    except ConfigError as e:
        message = str(e)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    return Study(experiment.name, config, experiment, str(path))


def check_study(study: StudyConfig, experiment: ExperimentConfig) -> None:
    """Checks that need no data: names, ranges, and a design that can be drawn."""
    from ..tasks.lookup import get_task

    if not study.pool:
        raise ConfigError("study.pool: list the intermediate tasks to draw subsets from")
    if len(set(study.pool)) != len(study.pool):
        raise ConfigError(f"study.pool: a task is listed twice ({', '.join(study.pool)})")
    for i, name in enumerate(study.pool):
        try:
            task = get_task(name)
        except KeyError as e:
            raise ConfigError(f"study.pool[{i}]: {e}") from None
        if not task.trains:
            raise ConfigError(f"study.pool[{i}]: {name} is a {task.family} task with no training data")
    for path, values in [("study.k", study.k), *((f"study.sizes[{i}].k", s.k) for i, s in enumerate(study.sizes))]:
        for value in values:
            if not 0 <= value <= len(study.pool):
                raise ConfigError(f"{path}: {value} is outside 0..{len(study.pool)} (the pool's size)")
    if 0 not in study.k and study.k:
        raise ConfigError("study.k: must include 0 (the no-intermediate baseline every gain is measured against)")
    for i, size in enumerate(study.sizes):
        if size.k and 0 not in size.k:
            raise ConfigError(f"study.sizes[{i}].k: must include 0 (the baseline of that size)")
        if size.deepspeed:
            try:
                resolve_ds_config(size.deepspeed)
            except ConfigError as e:
                raise ConfigError(f"study.sizes[{i}].deepspeed: {str(e).split(': ', 1)[1]}") from None
    if not study.seeds or len(set(study.seeds)) != len(study.seeds):
        raise ConfigError(f"study.seeds: list distinct seeds (got {study.seeds})")
    for i, seed in enumerate(study.seeds):
        check_range(seed, {"ge": 0}, f"study.seeds[{i}]")  # a cell's seed, as the experiment's `seed`
    if not study.sizes:
        raise ConfigError("study.sizes: list at least one model size")
    if study.budget == "fixed_total" and study.examples < len(study.pool):
        raise ConfigError(f"study.examples: {study.examples} in all cannot be split over {len(study.pool)} tasks")
    if study.strategy in ("average", "fusion") or study.untrained_control:
        if experiment.mode != "adapters":
            raise ConfigError(f"study: strategy {study.strategy} / untrained_control need mode: adapters "
                              f"(the experiment has mode: {experiment.mode})")
    r = study.resources
    if r.gpus and r.ranks > r.gpus:
        raise ConfigError(f"study.resources.ranks: {r.ranks} ranks on {r.gpus} GPUs; one rank per GPU")
    if experiment.intermediate.tasks:
        raise ConfigError("intermediate.tasks: a study draws its cells' tasks from study.pool; leave it empty")
