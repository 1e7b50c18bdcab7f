"""The intermediate setups of an experiment: the rows of the paper's table. One per intermediate
task (`strategy: each`), one for several tasks at once (multitask / average), one for a given
adapter, and `none` (no intermediate phase: the baseline every gain is measured against)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .config import ConfigError, ExperimentConfig

NO_INTERMEDIATE = "none"
UNTRAINED = "untrained"  # the control setup: an intermediate adapter that was never trained
MLM_TASK = "mlm"  # continued multilingual MLM, mixed into a multi-task intermediate phase


@dataclass(frozen=True)
class Setup:
    name: str  # the row's name: "none", a task name, or the multi-task setup's name
    tasks: tuple[str, ...]  # its intermediate tasks
    strategy: str  # none | each | multitask | average | fusion | given | untrained


def intermediate_setups(cfg: ExperimentConfig) -> list[Setup]:
    ic = cfg.intermediate
    names = tuple(ic.tasks)
    if ic.strategy == UNTRAINED:
        setups = [Setup(UNTRAINED, (), UNTRAINED)]
    elif ic.adapter:
        setups = [Setup(ic.name or (names[0] if len(names) == 1 else "given"), names, "given")]
    elif ic.strategy == "each" or len(names) == 1:
        setups = [Setup(t, (t,), "each") for t in names]
    else:
        setups = [Setup(ic.name or f"{ic.strategy}{len(names)}", names, ic.strategy)]
    if cfg.baseline or not setups:
        setups.append(Setup(NO_INTERMEDIATE, (), "none"))
    return setups


def check_strategy(cfg: ExperimentConfig) -> None:
    ic = cfg.intermediate
    if ic.strategy in ("average", "fusion") and cfg.mode != "adapters":
        raise ConfigError(f"intermediate.strategy: {ic.strategy} combines adapters; it needs mode: adapters")
    if ic.strategy == UNTRAINED and (cfg.mode != "adapters" or ic.tasks or ic.adapter):
        raise ConfigError("intermediate.strategy: untrained (an untrained adapter, the control) needs mode: adapters, "
                          "no intermediate.tasks and no intermediate.adapter")
    if ic.adapter and cfg.mode != "adapters":
        raise ConfigError("intermediate.adapter: a given adapter needs mode: adapters")
    if ic.name and not re.fullmatch(r"[A-Za-z0-9_.-]+", ic.name):
        raise ConfigError(f"intermediate.name: '{ic.name}' may use letters, digits, _ . - only (it names MLflow "
                          f"runs and metrics)")
    if ic.name in (NO_INTERMEDIATE, UNTRAINED) or ic.name in cfg.target.tasks:
        raise ConfigError(f"intermediate.name: '{ic.name}' is taken (the baseline row or a target task)")
    if ic.mlm_ratio and (MLM_TASK not in ic.tasks or ic.strategy != "multitask"):
        raise ConfigError(f"intermediate.mlm_ratio: needs strategy multitask and the '{MLM_TASK}' task among "
                          f"intermediate.tasks")
