"""Experiment schema: plain YAML files validated into dataclasses, with `--set key.path=value`.

Every field has a type and a default; an unknown key, a value of the wrong type or an unknown
name fails here, before any compute, with the dotted path of the culprit (and the nearest valid
key when it looks like a typo).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"


class ConfigError(ValueError):
    """A bad experiment file or override; the message names the field or file at fault."""


RANGE = "range"  # a numeric field's metadata: its allowed values, checked on load


def bounded(default: float, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A numeric field and the range it must lie in (`ge` <= x, `gt` < x, x <= `le`, x < `lt`)."""
    return field(default=default, metadata={RANGE: {"ge": ge, "gt": gt, "le": le, "lt": lt}})


def check_range(value: float, limits: dict, path: str) -> None:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    allowed = " and ".join(f"{words[k]} {v:g}" for k, v in limits.items() if v is not None)
    ok = all(v is None or {"ge": value >= v, "gt": value > v, "le": value <= v, "lt": value < v}[k]
             for k, v in limits.items())
    if not ok:
        raise ConfigError(f"{path}: {value!r} is out of range (must be {allowed})")


@dataclass
class ModelConfig:
    name: str = "me5-small"  # me5-small | a Hugging Face id | a local folder
    dropout: float = bounded(0.1, ge=0.0, lt=1.0)  # hidden and attention dropout of the encoder
    max_length: int = bounded(128, ge=8)  # tokens per sequence (pairs are truncated longest-first)
    classifier_pooling: str = "cls"  # sentence(-pair) heads read: cls (first token, XLM-R) | mean
    attention: str = "auto"  # auto (eager on CPUs, where it trains 1.7x faster; sdpa on GPUs) | eager | sdpa
    # keep only the first L transformer layers (0 = all): the offline stand-in for model size (me5-small
    # at 4, 8, 12 layers); a result's identity records the layers it ran with
    layers: int = bounded(0, ge=0)


@dataclass
class DataConfig:
    source: str = "auto"  # auto (local folder when present, else hub) | local | hub
    local_dir: str = "../shared/data"  # relative paths are relative to the repository root
    # draws the dev and test subsets (dev_size, test_size); `seed` draws the training subset: every
    # training seed is then scored on the same examples, so a cell's spread is training variance
    eval_seed: int = bounded(42, ge=0)


@dataclass
class AdapterConfig:
    config: str = "seq_bn"  # any adapters-library config string, e.g. seq_bn, pfeiffer, lora
    reduction_factor: int = bounded(16, ge=1)


@dataclass
class TrainingConfig:
    batch_size: int = bounded(32, ge=1)  # global batch (all ranks, after accumulation)
    micro_batch_size: int = bounded(0, ge=0)  # per rank and step; 0 = batch_size / world size
    lr: float = bounded(1e-3, gt=0.0)
    weight_decay: float = bounded(0.0, ge=0.0)
    warmup_ratio: float = bounded(0.1, ge=0.0, le=1.0)
    epochs: int = bounded(1, ge=1)
    bf16: bool = True  # bf16 autocast of the forward pass (master weights stay fp32)
    # length-grouped batches kept short adapter runs on SST-2 at chance (bench/throughput.py);
    # packing (below) removes padding without changing which examples share a batch
    group_by_length: bool = False
    # pack each batch's sequences into a few rows, so the encoder runs on real tokens only (same
    # examples per step, same results; models/packing.py); off for prefix / prompt tuning
    packing: bool = True
    log_every: int = bounded(10, ge=1)
    eval_every: int = bounded(0, ge=0)  # steps between English-dev evaluations; 0 = once per epoch
    deepspeed: str = "zero2"  # a file in ds_configs/ (name or path)
    # steps between DeepSpeed checkpoints (one is always saved at a phase's end; 0 = only there)
    checkpoint_every: int = bounded(50, ge=0)
    keep_checkpoints: int = bounded(2, ge=1)  # the newest K are kept


@dataclass
class TaskSettings:
    """Per-task sizes, languages and optimisation overrides (0 / empty = task default)."""

    train_size: int = bounded(0, ge=0)  # 0 = the whole split
    dev_size: int = bounded(0, ge=0)
    test_size: int = bounded(0, ge=0)
    # target test languages; empty = the benchmark's list (those available), [all] = every language
    # with data (offline: every language whose files are present). Intermediate tasks: the languages
    # it trains on, train_size examples each (translated data: mnli_translated; English tasks have en
    # only); empty = the task's list (those available)
    languages: list[str] = field(default_factory=list)
    epochs: int = bounded(0, ge=0)
    lr: float = bounded(0.0, ge=0.0)
    max_length: int = bounded(0, ge=0)  # tokens per sequence for this task; 0 = model.max_length (QA wants ~384)


@dataclass
class IntermediateConfig:
    tasks: dict[str, TaskSettings] = field(default_factory=dict)
    # how several intermediate tasks are used:
    #   each       one setup per task (the single-task rows), trained one after another
    #   multitask  one shared adapter (or encoder) with a head per task; batches drawn by `sampler`
    #   fusion     AdapterFusion over the single-task adapters, trained with each target (adapters)
    #   average    the single-task adapters averaged into one (adapters; a cheap fusion)
    #   untrained  no tasks: an adapter of the same shape, never trained, stacked in phase 3 (a control)
    strategy: str = "each"
    sampler: str = "proportional"  # multitask: proportional | capped | temperature | uniform
    sampler_cap: int = bounded(20000, ge=1)  # capped: p_i ~ min(n_i, cap)
    sampler_temperature: float = bounded(2.0, gt=0.0)  # temperature: p_i ~ n_i^(1/T)
    name: str = ""  # the setup's name for multitask/fusion/average; default: <strategy><number of tasks>
    frozen_in_target: bool = True  # False: phase 3 also trains the intermediate adapter
    skip_missing: bool = False  # leave out (with a warning) intermediate tasks whose data is missing
    # multitask with the `mlm` task: the share of steps that are MLM batches (0 = sampler)
    mlm_ratio: float = bounded(0.0, ge=0.0, lt=1.0)
    # the intermediate phase's learning rate (0 = training.lr; a task's own lr wins in a single-task
    # phase). Multi-task adapters collapse at rates short single-task runs take: on me5-small with
    # 3e-3 the multitask7 adapter mapped every sentence to one vector (cosine 0.99999), 1e-3 did not.
    lr: float = bounded(0.0, ge=0.0)
    # fusion: phase 3's learning rate for the AdapterFusion layers (the target's head keeps the
    # target's lr; 0 = the target's lr too). The default is the AdapterFusion paper's, for runs of
    # many epochs; short runs need more (baseline.yaml: 1e-3, from a probe).
    fusion_lr: float = bounded(5.0e-5, ge=0.0)
    # reuse instead of training: a local adapter folder, runs:/<run id>/<artifact path>, the name of
    # an earlier MLflow run, or a Hugging Face Hub / AdapterHub id (loaded by the adapters library)
    adapter: str = ""


@dataclass
class TargetConfig:
    benchmark: str = "xtreme"  # whose language lists are the defaults: xtreme | xtreme-r
    tasks: dict[str, TaskSettings] = field(default_factory=dict)


@dataclass
class RetrievalConfig:
    pooling: str = "mean"  # mean | cls
    layer: int = bounded(-1, ge=-1)  # hidden_states index (0 = embeddings); -1 = the paper's relative depth 14/24
    batch_size: int = bounded(128, ge=1)


@dataclass
class TrackingConfig:
    experiment: str = ""  # MLflow experiment name; empty = the experiment's name
    output_dir: str = "outputs"
    resume: bool = True  # rerunning an unfinished experiment (same resolved config) continues it
    # reuse phase results with the same content key from any experiment writing to output_dir
    # (<output_dir>/cache); false: always train (results are still added to the cache)
    cache: bool = True
    # full mode: also log each target's whole fine-tuned encoder to MLflow (me5-small 450 MB, XLM-R
    # large 2.2 GB per target, setup and seed). Off: only intermediate encoders (the reusable ones)
    # and adapters are logged; the target's weights stay in output_dir.
    log_full_target_models: bool = False


@dataclass
class ExperimentConfig:
    name: str = "unnamed"
    seed: int = bounded(42, ge=0)
    mode: str = "adapters"  # adapters (frozen encoder) | full (full fine-tuning, classic STILTs)
    baseline: bool = True  # also run every target task without the intermediate phase
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    intermediate: IntermediateConfig = field(default_factory=IntermediateConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # what `full-<experiment>` sets besides mode=full, as `key.path=value` (the --set syntax; --set
    # wins): full fine-tuning moves every encoder weight and needs far smaller steps than an adapter
    full_overrides: list[str] = field(default_factory=list)
    source_file: str = ""  # set by the loader; not a user field

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source_file")
        return d


CHOICES = {
    "mode": ("adapters", "full"),
    "data.source": ("auto", "local", "hub"),
    "retrieval.pooling": ("mean", "cls"),
    "model.classifier_pooling": ("cls", "mean"),
    "model.attention": ("auto", "eager", "sdpa"),
    "target.benchmark": ("xtreme", "xtreme-r"),
    "intermediate.strategy": ("each", "multitask", "fusion", "average", "untrained"),
    "intermediate.sampler": ("proportional", "capped", "temperature", "uniform"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path or 'experiment'}: expected a mapping, got {value!r}")
        return build_section(tp, value, path)
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if value is None:
            return {}
        if isinstance(value, list):  # `tasks: [xnli, udpos]` is shorthand for default settings
            value = {k: {} for k in value}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping or a list of names, got {value!r}")
        return {str(k): _coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation at {path}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `3e-4` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def build_section(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source_file"}
    names = list(fields)
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = (f"; did you mean '{prefix + '.' if prefix else ''}{near[0]}'?" if near
                    else f"; valid keys: {', '.join(names)}")
            raise ConfigError(f"unknown key '{path}'{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
        if RANGE in fields[key].metadata:
            check_range(kwargs[key], fields[key].metadata[RANGE], path)
        allowed = CHOICES.get(path)
        if allowed and kwargs[key] not in allowed:
            raise ConfigError(f"{path}: '{kwargs[key]}' is not one of {', '.join(allowed)}")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def apply_override(raw: dict, keys: list[str], value: Any) -> None:
    node = raw
    for k in keys[:-1]:
        nxt = node.get(k)
        if isinstance(nxt, list):  # a task list given as names: expand so a sub-field can be set
            nxt = {name: {} for name in nxt}
        if not isinstance(nxt, dict):
            nxt = {}
        node[k] = nxt
        node = nxt
    node[keys[-1]] = value


TEMPLATE_SLOT = "TASK"  # experiments/<prefix>-TASK.yaml serves every <prefix>-<task>


def template_for(exp: str) -> tuple[Path, str] | None:
    """`single-mnli` -> (experiments/single-TASK.yaml, "mnli"): one parameterised file, not nine copies."""
    for template in sorted(EXPERIMENTS_DIR.glob(f"*-{TEMPLATE_SLOT}.yaml")):
        prefix = template.stem[: -len(TEMPLATE_SLOT)]
        if exp.startswith(prefix) and len(exp) > len(prefix):
            return template, exp[len(prefix):]
    return None


def resolve_experiment_path(exp: str) -> Path:
    p = Path(exp)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"experiment file {p} does not exist")
        return p
    path = EXPERIMENTS_DIR / f"{exp}.yaml"
    if not path.is_file() and template_for(exp):
        return template_for(exp)[0]
    if not path.is_file():
        known = sorted(q.stem for q in EXPERIMENTS_DIR.glob("*.yaml"))
        near = difflib.get_close_matches(exp, known, n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown experiment '{exp}': no file {path}.{hint} Known: {', '.join(known)}")
    return path


FULL_PREFIX = "full-"  # full-<experiment>: the same experiment with full fine-tuning (classic STILTs)


def load_experiment(exp: str, overrides: list[str] | None = None, study_ok: bool = False) -> ExperimentConfig:
    """Load `experiments/<exp>.yaml` (or a path), apply `key.path=value` overrides, validate types.
    `full-<exp>` is <exp> in full fine-tuning mode; `<prefix>-<task>` fills a `<prefix>-TASK` template.
    A study file (one with a `study:` section) is run by `sweep`; `study_ok` reads its experiment part."""
    if exp.startswith(FULL_PREFIX) and not (EXPERIMENTS_DIR / f"{exp}.yaml").is_file() and not Path(exp).suffix:
        base = load_experiment(exp[len(FULL_PREFIX):], overrides)  # the user's own errors surface here
        try:
            cfg = load_experiment(exp[len(FULL_PREFIX):], ["mode=full", *base.full_overrides, *(overrides or [])])
        except ConfigError as e:
            raise ConfigError(f"full_overrides {base.full_overrides} (from {base.source_file} or a parent): "
                              f"{e}") from None
        cfg.name = f"{FULL_PREFIX}{cfg.name}"
        return cfg
    path = resolve_experiment_path(exp)
    text = path.read_text()
    if path.stem.endswith(f"-{TEMPLATE_SLOT}"):
        found = template_for(exp) if path.parent == EXPERIMENTS_DIR and not Path(exp).suffix else None
        if not found:
            raise ConfigError(f"{path}: a template; run it as {path.stem[: -len(TEMPLATE_SLOT)]}<task>, "
                              f"e.g. --exp {path.stem[: -len(TEMPLATE_SLOT)]}mnli")
        text = text.replace(TEMPLATE_SLOT, found[1])
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if raw.pop("study", None) is not None and not study_ok:
        raise ConfigError(f"{path}: a study (it has a 'study:' section); run it with "
                          f"`python run.py sweep --exp {exp}`")
    if "extends" in raw:  # shared settings live in one file; an experiment states what differs
        parent = load_experiment(str(resolve_experiment_path(str(raw.pop("extends"))))).to_dict()
        raw = _merge(parent, raw)
    for text in overrides or []:
        apply_override(raw, *parse_override(text))
    try:
        cfg = build_section(ExperimentConfig, raw, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    cfg.source_file = str(path)
    return cfg


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        # task maps are replaced, not merged: an experiment lists exactly the tasks it runs
        mergeable = isinstance(v, dict) and isinstance(out.get(k), dict) and k != "tasks"
        out[k] = _merge(out[k], v) if mergeable else v
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted keys (the MLflow params of a run)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
