"""The study's design: which task subsets at each k, and the cells that run them.

Subsets are drawn at random but balanced: at each k every task of the pool appears about equally
often (a task's count never exceeds another's by more than one), so a k's mean gain is not the
gain of whichever task happened to be drawn most. k = 1 is every single task, the whole pool is
one subset, k = 0 is the baseline. The same subsets run at every seed and model size, so seeds
and sizes are compared on the same task sets.

One cell = one intermediate task set x seed x model size, with all the experiment's target
tasks; it is one experiment invocation (`run_experiment`), so any backend that can run an
experiment (this process, a Ray worker) can run a cell."""
from __future__ import annotations

import copy
import itertools
import random
import re
from dataclasses import dataclass

from ..config import ExperimentConfig, TaskSettings
from ..intermediate_setups import NO_INTERMEDIATE, UNTRAINED
from .study import DEFAULT_K, SizeConfig, Study, StudyConfig


def balanced_subsets(pool: list[str], k: int, count: int, seed: int) -> list[tuple[str, ...]]:
    """`count` distinct k-subsets of `pool` in which every task appears about equally often
    (counts differ by at most one where the number of distinct subsets allows): each subset takes
    the k least-used tasks, ties broken at random. k = 1 gives every task once (in pool order),
    k = len(pool) the whole pool once, k = 0 the empty set."""
    if k == 0:
        return [()]
    if k == 1:
        return [(t,) for t in pool]
    if k >= len(pool):
        return [tuple(sorted(pool))]
    rng = random.Random(f"{seed}-{k}")
    possible = sum(1 for _ in itertools.combinations(pool, k))
    uses = {t: 0 for t in pool}
    chosen: list[tuple[str, ...]] = []
    while len(chosen) < min(count, possible):
        for _ in range(200):  # redraw the tie-break when the least-used tasks form a subset drawn already
            order = sorted(pool, key=lambda t: (uses[t], rng.random()))
            subset = tuple(sorted(order[:k]))
            if subset not in chosen:
                break
        else:  # every least-used choice is taken: the least-used subset not drawn yet
            subset = min((tuple(sorted(c)) for c in itertools.combinations(pool, k)
                          if tuple(sorted(c)) not in chosen), key=lambda c: (sum(uses[t] for t in c), rng.random()))
        chosen.append(subset)
        for t in subset:
            uses[t] += 1
    return chosen


@dataclass(frozen=True)
class Cell:
    model: str
    layers: int  # 0 = every layer
    tasks: tuple[str, ...]  # sorted; () for the baseline and the untrained control
    seed: int
    strategy: str  # none | untrained | each (k = 1) | multitask | average | fusion
    deepspeed: str = ""  # how the size fits its device (study.sizes[].deepspeed, micro_batch_size): not what it is
    micro_batch_size: int = 0

    @property
    def k(self) -> int:
        return len(self.tasks)

    @property
    def id(self) -> str:
        """A readable, filesystem-safe name (the cell's experiment name and folder); not a key."""
        model = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model)
        what = "+".join(self.tasks) if self.tasks else self.strategy
        if self.k > 1:
            what = f"{self.strategy}-{what}"
        return f"{model}-L{self.layers or 'all'}-k{self.k}-{what}-s{self.seed}"


def size_ks(study: StudyConfig, size: SizeConfig, n_pool: int) -> list[int]:
    """The k values run at one size: its own list (exactly those), else study.k plus the whole
    pool; a k past the available pool (QQP and CCG missing offline) means the whole pool."""
    ks = {min(k, n_pool) for k in size.k or study.k or [k for k in DEFAULT_K if k <= n_pool]}
    return sorted(ks | ({n_pool} if study.whole_pool and not size.k else set()))


def subsets_by_k(study: StudyConfig, pool: list[str]) -> dict[int, list[tuple[str, ...]]]:
    """Every k of the study (any size) with its subsets, drawn once from the available pool."""
    ks = sorted({k for size in study.sizes for k in size_ks(study, size, len(pool))})
    return {k: balanced_subsets(pool, k, study.subsets_per_k, study.subset_seed) for k in ks}


def cells(study: Study, pool: list[str]) -> list[Cell]:
    """Every cell, seed-major (a chunk finishes one seed's curves before starting the next), then
    size in the file's order, then breadth first: k = 0 and its control, then the first subset of
    every k (the whole pool first, then k ascending), then the second, ... so a study stopped early
    already has a whole curve from both ends."""
    cfg, subsets = study.config, subsets_by_k(study.config, pool)
    out = []
    for seed in cfg.seeds:
        for size in cfg.sizes:
            model = size.model or study.experiment.model.name
            fit = {"deepspeed": size.deepspeed, "micro_batch_size": size.micro_batch_size}
            ks = sorted(size_ks(cfg, size, len(pool)), key=lambda k: (k != len(pool), k))
            if 0 in ks and cfg.untrained_control:
                out.append(Cell(model, size.layers, (), seed, NO_INTERMEDIATE, **fit))
                out.append(Cell(model, size.layers, (), seed, UNTRAINED, **fit))
            rounds = max((len(subsets[k]) for k in ks), default=0)
            for i in range(rounds):
                for k in ks:
                    if i < len(subsets[k]) and not (k == 0 and cfg.untrained_control):
                        strategy = NO_INTERMEDIATE if k == 0 else "each" if k == 1 else cfg.strategy
                        out.append(Cell(model, size.layers, subsets[k][i], seed, strategy, **fit))
    return out


def intermediate_examples(study: StudyConfig, k: int) -> int:
    """Training examples per task: `examples` each (per_task), or `examples` split over k (fixed_total)."""
    return study.examples if study.budget == "per_task" else study.examples // max(k, 1)


def cell_config(study: Study, cell: Cell) -> ExperimentConfig:
    """The experiment a cell runs: the study's experiment with the cell's model size, seed and
    intermediate tasks, logged to the study's MLflow experiment."""
    cfg = copy.deepcopy(study.experiment)
    cfg.name = f"{study.name}-{cell.id}"
    cfg.tracking.experiment = study.mlflow_experiment
    cfg.model.name, cfg.model.layers, cfg.seed = cell.model, cell.layers, cell.seed
    cfg.training.deepspeed = cell.deepspeed or cfg.training.deepspeed
    cfg.training.micro_batch_size = cell.micro_batch_size or cfg.training.micro_batch_size
    n = intermediate_examples(study.config, cell.k)
    cfg.intermediate.tasks = {t: TaskSettings(train_size=n, dev_size=study.config.dev_size) for t in cell.tasks}
    cfg.intermediate.strategy = cell.strategy if cell.strategy in (UNTRAINED, "multitask", "average", "fusion") \
        else "each"
    cfg.intermediate.skip_missing = False  # the pool was checked when the plan was made
    cfg.baseline = cell.strategy == NO_INTERMEDIATE
    if cell.layers and cfg.retrieval.layer > cell.layers:
        # an explicit layer past a truncated model's depth means its last layer (baseline.yaml: 12 = me5's last)
        cfg.retrieval.layer = cell.layers
    return cfg
