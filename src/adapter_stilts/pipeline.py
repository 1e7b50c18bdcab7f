"""The STILTs recipe, top to bottom: (1) a pretrained multilingual encoder, (2) English
intermediate-task training, (3) per target task: English training stacked on the intermediate
result, then zero-shot scoring in every other language. Retrieval tasks are scored straight
after phase 2. With `baseline: true` the same targets also run without phase 2."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from . import device as devices
from . import distributed as dist
from .cache import CacheEntry, PhaseCache
from .cache_keys import (
    content_key,
    fingerprint,
    intermediate_key,
    model_part,
    target_key,
    target_settings_hash,
    target_training_key,
    training_part,
)
from .config import ConfigError, ExperimentConfig, TaskSettings, flatten
from .evaluation.aggregate import macro_average
from .evaluation.outcomes import OUTCOMES_ARTIFACT, OUTCOMES_FILE, read_languages, write_outcomes
from .evaluation.retrieval import retrieval_eval, retrieval_layer
from .evaluation.zero_shot import zero_shot_eval
from .identity import ResultIdentity
from .integrity import write_manifest
from .intermediate_setups import MLM_TASK, NO_INTERMEDIATE, UNTRAINED, Setup, check_strategy, intermediate_setups
from .models.loading import (
    adapter_config,
    attention_implementation,
    check_max_length,
    check_model_name,
    count_parameters,
    load_tokenizer,
    model_layers,
    resolve_model,
)
from .models.memory import MAX_CHOICE_ROWS, MemoryEstimate, adapter_parameters, check_fits, estimate, model_shape
from .models.phase_models import (
    MANIFEST,
    PhaseArtifact,
    average_adapters,
    encoder_model,
    export_setup,
    fusion_setup,
    trainable_model,
    trained_model,
    untrained_adapter,
)
from .models.reuse import check_adapter_spec, fetch_adapter
from .results_table import PARAMETERS_TAG, ResultsError
from .resume import RunState, config_key
from .summary import log_summary
from .tasks.data import TaskData, intermediate_languages, load_task_data, resolve_source
from .tasks.families import family_of
from .tasks.lookup import get_task
from .tasks.readers import DataError
from .tasks.registry import Task
from .tracking import RunHandle, Tracker
from .training.checkpoints import checkpoints_of, full_phase_disk_need, nearest_existing, warn_if_low_disk
from .training.engine import batch_layout, load_ds_config, single_rank_config
from .training.loop import Schedule, TaskStream, Trainer

log = logging.getLogger(__name__)


@dataclass
class Computed:
    """What computing one unit of work gives `StiltsRecipe._memoised`."""
    result: Path  # what the cache keeps: a trained result folder, or a retrieval scoring's predictions
    record: dict  # what state.json records for the unit (the artifact, or the scores)
    meta: dict = field(default_factory=dict)  # more metadata for the cache entry
    extra: list[Path] = field(default_factory=list)  # files kept beside the cached result (per-item outcomes)
    checkpoints: Path | None = None  # whose DeepSpeed checkpoints to discard once recorded


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validate(cfg: ExperimentConfig) -> None:
    """Checks that need no data and no compute: names of tasks, roles, DeepSpeed config, model."""
    if not cfg.target.tasks:
        raise ConfigError("target.tasks: at least one target task is required")
    check_strategy(cfg)
    for section in ("intermediate", "target"):
        for name in getattr(cfg, section).tasks:
            try:
                task = get_task(name)
            except KeyError as e:
                raise ConfigError(f"{section}.tasks.{name}: {e}") from None
            if section == "intermediate" and not task.trains:
                raise ConfigError(f"intermediate.tasks.{name}: a {task.family} task has no training data")
    if cfg.mode == "full" and max(cfg.training.lr, cfg.intermediate.lr) >= 1e-3:
        log.warning("mode full with training.lr %g / intermediate.lr %g: rates for adapters; full fine-tuning "
                    "usually takes 1e-5..1e-4 (set them in the experiment's full_overrides or with --set)",
                    cfg.training.lr, cfg.intermediate.lr)
    resolve_bf16(cfg)
    load_ds_config(cfg.training.deepspeed)
    batch_layout(cfg.training, dist.world_size())
    check_model_name(cfg.model.name)
    if cfg.intermediate.adapter:
        check_adapter_spec(cfg.intermediate.adapter)
    if cfg.mode == "adapters":
        try:
            adapter_config(cfg.adapter)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"adapter.config: '{cfg.adapter.config}' is not an adapters-library config "
                              f"({str(e).splitlines()[0]})") from None
    check_writable(Path(cfg.tracking.output_dir))


def resolve_bf16(cfg: ExperimentConfig) -> None:
    """training.bf16 means bf16 autocast where the hardware has it: on a CPU without it (no
    AVX-512 BF16 / AMX) it is switched off, with a warning, before anything is keyed or logged."""
    if cfg.training.bf16 and devices.mixed_precision(devices.get_device(), True) is None:
        if dist.is_main():
            log.warning("training.bf16: this CPU has no native bf16 (no AVX-512 BF16 or AMX) and emulated bf16 ran "
                        "30x slower than fp32; running in fp32 (training.bf16=false)")
        cfg.training.bf16 = False


def check_writable(folder: Path) -> None:
    """The output folder can be created and written to; checked on its nearest existing ancestor,
    so a run refused later on creates nothing."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"tracking.output_dir: cannot write to {folder} ({existing} is a file, not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"tracking.output_dir: cannot write to {folder} ({existing} is not writable)")


class StiltsRecipe:
    def __init__(self, cfg: ExperimentConfig, tags: dict | None = None, share: bool = True):
        self.cfg = cfg
        self.extra_tags = tags or {}  # on the invocation's parent run (a study's cell names itself)
        # what several targets compute alike is computed once: targets with the same train_data and
        # settings share one trained target (off: each trains its own, e.g. to measure what sharing
        # saves: bench/throughput.py --mode cell)
        self.share = share
        self._loaded: tuple[Path, object] | None = None  # the last trained target loaded for scoring

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg, t0 = self.cfg, time.perf_counter()
        validate(cfg)
        self.ds_config = load_ds_config(cfg.training.deepspeed)
        self.source = resolve_source(cfg.data)
        log.info("Data source: %s", self.source.describe())
        self.data: dict[str, TaskData] = {}
        self.settings = {**cfg.intermediate.tasks, **cfg.target.tasks}
        had_intermediate = bool(cfg.intermediate.tasks)
        for section in ("intermediate", "target"):
            for name, settings in list(getattr(cfg, section).tasks.items()):
                try:
                    self.data[name] = load_task_data(get_task(name), settings, self.source, cfg.seed, section,
                                                     cfg.target.benchmark, cfg.data.eval_seed)
                except DataError as e:
                    if section == "target" or not cfg.intermediate.skip_missing:
                        raise
                    log.warning("intermediate task %s left out (intermediate.skip_missing): %s", name, e)
                    del cfg.intermediate.tasks[name]
        if had_intermediate and not cfg.intermediate.tasks:
            raise DataError("intermediate.tasks: none of the intermediate tasks has data")
        self.base = resolve_model(cfg.model.name, cfg.model.layers)
        self.model_layers = model_layers(self.base)
        if cfg.mode == "full" and dist.is_main() and Path(self.base).is_dir():  # one warning, not one per rank
            files = list(Path(self.base).glob("*.safetensors")) or list(Path(self.base).glob("*.bin"))
            warn_if_low_disk(Path(cfg.tracking.output_dir),
                             full_phase_disk_need(sum(f.stat().st_size for f in files), cfg.training.keep_checkpoints))
        self.tokenizer = load_tokenizer(self.base)
        for length in {self._max_length(name) for name in self.data}:
            check_max_length(self.base, length)
        self.memory = self._check_memory()  # before any weight is loaded
        self.features = {name: self._featurize(d) for name, d in self.data.items()}
        self.tracker_experiment = cfg.tracking.experiment or cfg.name
        self.tracker = Tracker(self.tracker_experiment)
        self.cache = PhaseCache(Path(cfg.tracking.output_dir) / "cache")
        self.inter_keys: dict[str, str] = {}  # setup -> content key of its intermediate result
        self.setups: dict[str, Setup] = {}  # the rows of this invocation, by display name
        self._open_state()
        if dist.is_main():
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            self.parent.log_params({**flatten(cfg.to_dict()), "world_size": dist.world_size(),
                                    "data_source": self.source.describe(), "model_path": self.base})
            self.parent.log_artifacts(self.out / "config.yaml")
        dist.barrier()
        # reading and tokenizing the data, loading the tokenizer: a cell's cost before any phase
        self.parent.log_new_metrics({"setup/wall_time_s": time.perf_counter() - t0})
        log.info("Outputs in %s", self.out)

    def _check_memory(self) -> MemoryEstimate:
        """Print this rank's memory estimate for the experiment's largest phase and refuse, before any
        compute, a configuration that cannot fit the device found (models/memory.py)."""
        cfg, world, device = self.cfg, dist.world_size(), devices.get_device()
        shape = model_shape(self.base)
        trainable = shape.parameters if cfg.mode == "full" else adapter_parameters(shape, adapter_config(cfg.adapter))
        tasks = [get_task(name) for name in self.data]
        rows = MAX_CHOICE_ROWS if any(t.family == "multiple_choice" for t in tasks) else 1
        precision = devices.mixed_precision(device, cfg.training.bf16)
        est = estimate(shape, trainable, single_rank_config(self.ds_config, world), world,
                       batch_layout(cfg.training, world)[0], max(self._max_length(t.name) for t in tasks), rows,
                       precision is not None, attention_implementation(cfg.model.attention) == "eager")
        if dist.is_main():
            log.info("Memory estimate on %s (%s, %s): %s", device, cfg.training.deepspeed,
                     devices.precision_name(precision), est.describe())
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "this node's memory"
        check_fits(est, devices.memory_capacity(device, local), devices.memory_capacity(torch.device("cpu"), local),
                   where)
        return est

    def _open_state(self) -> None:
        """Continue the unfinished invocation of this same config, or start a new one."""
        cfg, root = self.cfg, Path(self.cfg.tracking.output_dir) / self.cfg.name
        key = config_key(cfg.to_dict())
        state, elsewhere, error = None, [], None
        if cfg.tracking.resume and dist.is_main():
            try:
                state, elsewhere = RunState.find_unfinished(root, key, self.tracker.uri, self.tracker.has_run)
            except Exception as e:  # told to every rank: none waits in the broadcast below
                error = f"cannot read the MLflow store {self.tracker.uri}: {type(e).__name__}: {e}"
            for other in elsewhere[:1]:  # the newest one says why; older ones are older attempts of the same
                where = (f"it belongs to {other.tracking_uri}" if other.tracking_uri not in ("", self.tracker.uri)
                         else "deleted from it")
                log.warning("Not resuming the unfinished run in %s: its MLflow run %s is not in the store %s (%s); "
                            "starting afresh, the old outputs are left as they are",
                            other.folder, other.parent_run_id, self.tracker.uri, where)
        state, error = dist.broadcast_object((state, error))  # every rank resumes the same invocation
        if error:
            raise RuntimeError(error)
        tags = {"experiment": cfg.name, "mode": cfg.mode, "seed": cfg.seed, "model": cfg.model.name,
                "data_source": self.source.kind, "config_key": key, **self.extra_tags}
        if state:
            log.info("Resuming the unfinished run in %s (MLflow run %s)", state.folder, state.parent_run_id)
            self.parent = self.tracker.start(cfg.name, tags=tags, run_id=state.parent_run_id)
            state.save()  # with the store it now records
        else:
            self.parent = self.tracker.start(cfg.name, tags=tags)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{(self.parent.run_id or '')[:8]}"
            state = RunState(root / dist.broadcast_object(name), key, self.parent.run_id,
                             tracking_uri=self.tracker.uri or "")
            if dist.is_main():
                state.folder.mkdir(parents=True, exist_ok=True)
            state.save()
        self.state, self.out = state, state.folder

    @contextlib.contextmanager
    def _unit(self, unit: str, tags: dict):
        """The MLflow child run of one phase / target task: created once, reopened on resume."""
        with self.tracker.child(unit, self.parent, tags, run_id=self.state.run_id(unit),
                                on_start=lambda run: self.state.record(unit, run_id=run.run_id)) as run:
            yield run

    def _max_length(self, task: str) -> int:
        return self.settings[task].max_length or self.cfg.model.max_length

    def _featurize(self, data: TaskData) -> dict:
        if not data.task.trains:
            return {}
        fam, n = family_of(data.task), self._max_length(data.task.name)
        return {
            "train": fam.featurize(data.task, data.train, self.tokenizer, n),
            "dev": fam.featurize(data.task, data.dev, self.tokenizer, n),
            "test": {lang: fam.featurize(data.task, ex, self.tokenizer, n) for lang, ex in data.test.items()},
        }

    # ------------------------------------------------------------------ the recipe
    def run(self) -> None:
        cfg = self.cfg
        t0 = time.time()
        for s in intermediate_setups(cfg):
            self.setups[s.name] = s
            inter, setup = self.intermediate(s), s.name
            trainings, order = self._training_keys(setup, inter), list(cfg.target.tasks)
            shared = {name: [n for n in order if trainings.get(n) == key] for name, key in trainings.items()}
            for name in sorted(order, key=lambda n: order.index(shared.get(n, [n])[0])):
                task = self.data[name].task  # with its label set bound (open-set tasks read it from data)
                if task.trains:  # targets sharing a training run one after the other: it is loaded once
                    self.train_target(task, setup, inter, trainings[name], shared[name])
                else:
                    self.score_retrieval(task, setup, inter)
            self._drop_loaded()
        self.parent.log_new_metrics({"wall_time_s": time.time() - t0})  # of the first attempt to get here
        if dist.is_main():  # a view of this invocation's rows of the results table, read back from the store
            try:
                log_summary(self.parent, self.tracker_experiment, self.out / "summary")
            except ResultsError as e:  # e.g. every unit finished before results had identity tags
                log.warning("no summary of this invocation: %s", e)
        self.state.finished = True
        self.state.save()

    def intermediate(self, setup: Setup) -> PhaseArtifact | None:
        """Phase 2 for one setup: nothing (the baseline), a given adapter, one task, several tasks
        in one shared adapter/encoder, or the average of the single-task adapters."""
        if setup.strategy == "none":
            self.inter_keys[setup.name] = NO_INTERMEDIATE
            return None
        if setup.strategy == "given":
            self.inter_keys[setup.name] = content_key({"given": self.cfg.intermediate.adapter})
            return self._given_adapter(setup)
        if setup.strategy == UNTRAINED:
            self.inter_keys[setup.name] = content_key({UNTRAINED: vars(self.cfg.adapter), "seed": self.cfg.seed,
                                                       "model": model_part(self.cfg), "model_path": self.base})
            return self._untrained_adapter(setup)
        if setup.strategy in ("average", "fusion"):
            singles = [self.train_intermediate(t, [t]) for t in setup.tasks]
            self.inter_keys[setup.name] = content_key({setup.strategy: [self.inter_keys[t] for t in setup.tasks]})
            out = self.out / "intermediate" / setup.name
            if setup.strategy == "average":
                return average_adapters(self.base, singles, out, setup.name)
            return fusion_setup(singles, out, setup.name)
        return self.train_intermediate(setup.name, list(setup.tasks))

    def _given_adapter(self, setup: Setup) -> PhaseArtifact:
        unit = f"intermediate/{setup.name}"
        with self._unit(unit, {**self._tags(setup.name, "intermediate", ",".join(setup.tasks), setup),
                               "source": self.cfg.intermediate.adapter}) as run:
            artifact = fetch_adapter(self.cfg.intermediate.adapter, self.base, self.out / "intermediate" / setup.name,
                                     setup.name)
            run.log_artifacts(artifact.path, "model")
        return artifact

    def _untrained_adapter(self, setup: Setup) -> PhaseArtifact:
        with self._unit(f"intermediate/{setup.name}", self._tags(setup.name, "intermediate", "", setup)) as run:
            seed_everything(self.cfg.seed)
            artifact = untrained_adapter(self.base, self.cfg, self.out / "intermediate" / setup.name, setup.name)
            run.log_artifacts(artifact.path, "model")
        return artifact

    def _intermediate_settings(self, tasks: list[str]) -> TaskSettings:
        """A single task's own settings, or the defaults for a multi-task phase; the learning rate
        falls back to intermediate.lr before training.lr (the Trainer's fallback)."""
        settings = replace(self.settings[tasks[0]]) if len(tasks) == 1 else TaskSettings()
        settings.lr = settings.lr or self.cfg.intermediate.lr
        return settings

    def _intermediate_key(self, tasks: list[str]) -> str:
        return intermediate_key(self.cfg, self.base, {t: self.settings[t] for t in tasks},
                                self._intermediate_settings(tasks).lr,
                                {t: [fingerprint(self.features[t]["train"]), fingerprint(self.features[t]["dev"])]
                                 for t in tasks},
                                {t: list(self.data[t].train_languages) for t in tasks if self.data[t].translated})

    def train_intermediate(self, name: str, task_names: list[str]) -> PhaseArtifact:
        """English intermediate training: one task, or several at once (one shared adapter or
        encoder, a head per task). A result with the same content key, trained by any earlier
        experiment writing to this output folder, is reused instead."""
        unit, tasks = f"intermediate/{name}", [self.data[t].task for t in task_names]
        key = self.inter_keys[name] = self._intermediate_key(task_names)
        strategy = "each" if len(task_names) == 1 else self.cfg.intermediate.strategy
        tags = {**self._tags(name, "intermediate", ",".join(task_names), Setup(name, tuple(task_names), strategy)),
                "cache_key": key}

        def intact(done: dict) -> bool:
            if PhaseArtifact(Path(done["artifact"]), self.cfg.mode, name).intact():
                return True
            log.warning("%s: the saved result in %s is truncated or corrupt; training this phase again",
                        unit, done["artifact"])
            checkpoints_of(Path(done["artifact"])).discard()
            return False

        def reuse(run: RunHandle, entry: CacheEntry) -> dict:
            log.info("%s: reusing the cached result %s (trained by run %s of experiment '%s'); nothing to train",
                     unit, entry.path, entry.meta.get("run_id"), entry.meta.get("experiment"))
            return {"artifact": str(entry.path)}

        def train(run: RunHandle) -> Computed:
            seed_everything(self.cfg.seed)
            model = trainable_model(self.base, self.cfg.mode, tasks, self.cfg, name=name)
            ic = self.cfg.intermediate
            outcome = self._fit(model, tasks, self._intermediate_settings(task_names), run,
                                self.out / "intermediate" / name, name,
                                Schedule(ic.sampler, ic.sampler_cap, ic.sampler_temperature,
                                         {MLM_TASK: ic.mlm_ratio} if ic.mlm_ratio else {}))
            run.log_artifacts(outcome.artifact.path, "model")
            path = outcome.artifact.path
            return Computed(path, {"artifact": str(path)}, {"tasks": task_names}, checkpoints=path)

        record = self._memoised(unit, "intermediate", key, tags, train, reuse, intact)
        return PhaseArtifact(Path(record["artifact"]), self.cfg.mode, name)

    def _training_keys(self, setup: str, inter: PhaseArtifact | None) -> dict[str, str]:
        """Each trained target task's training key (cache_keys.target_training_key): equal keys
        train once."""
        cfg, keys = self.cfg, {}
        # fusion layers train at their own rate; no other setup's key gets the part
        fused = {"fusion_lr": cfg.intermediate.fusion_lr} if inter and inter.fusion_members else {}
        for name in cfg.target.tasks:
            task, feats = self.data[name].task, self.features[name]
            if not task.trains:
                continue
            trained_on = task.train_data if self.share and task.train_data else task.name
            keys[name] = target_training_key(
                cfg, self.inter_keys[setup], trained_on, [task.family, list(task.labels)], self.settings[name],
                frozen=cfg.intermediate.frozen_in_target, seed=cfg.seed, adapter=vars(cfg.adapter),
                training=training_part(cfg), data=[fingerprint(feats["train"]), fingerprint(feats["dev"])], **fused)
        return keys

    def train_target(self, task: Task, setup: str, inter: PhaseArtifact | None, training_key: str,
                     shared_by: list[str]) -> None:
        """Phase 3: English training on top of the intermediate result (once for all the targets
        that share `training_key`), then zero-shot tests."""
        unit = f"target/{task.name}/{setup}"
        feats = self.features[task.name]["test"]
        key = self._target_key(task, setup, trained=training_key,
                               data={lang: fingerprint(f) for lang, f in feats.items()})
        tags = {**self._tags(setup, "target", task.name, self.setups[setup]), "cache_key": key,
                "training_key": training_key, "training_shared_by": ",".join(shared_by)}

        def score(run: RunHandle) -> Computed:
            trained = self._trained_target(task, setup, inter, training_key, shared_by, run)
            best = self._model_for_scoring(trained["artifact"], inter)
            out = self.out / "target" / setup / task.name
            data = self.data[task.name].test
            mine = {lang: (feats[lang], data[lang]) for lang in self._my_languages(data)}
            per_lang = self._gather(zero_shot_eval(best, task, mine, self.tokenizer.pad_token_id,
                                                   self.cfg.training.bf16, out / "predictions",
                                                   positions=self.data[task.name].test_positions))
            self._record(run, task, setup, per_lang)
            outcomes = self._log_outcomes(run, task, per_lang, out)
            run.log_artifacts(out / "predictions", "predictions")
            if dist.is_main():
                write_manifest(out / "predictions", MANIFEST)  # the cached result is the predictions
            scores = {"results": per_lang, "english_dev": trained["english_dev"]}
            return Computed(out / "predictions", scores, {**scores, "trained_in_run": trained["run_id"] or ""},
                            [outcomes])

        self._memoised(unit, "target", key, tags, score, self._reuse_target(task, setup, unit))

    def _trained_target(self, task: Task, setup: str, inter: PhaseArtifact | None, key: str, shared_by: list[str],
                        run: RunHandle) -> dict:
        """The trained target of `key`, trained in `run` (the run of the first target that needs it:
        its training curve, dev scores and model are logged there) unless an earlier attempt or, via
        the cache, any experiment already trained it. Every target run names the run that trained it."""
        # named by the targets that share it: unique within a setup; beside the targets' own folders
        # (their predictions), not in them (its manifest lists the trained files only)
        trained_for = "+".join(shared_by)
        unit, name = f"target_training/{setup}/{trained_for}", task.name
        out = self.out / "target" / setup / f"{trained_for}.trained"

        def intact(done: dict) -> bool:
            if PhaseArtifact(Path(done["artifact"]), self.cfg.mode, done["name"]).intact():
                return True
            log.warning("%s: the saved result in %s is truncated or corrupt; training it again", unit, done["artifact"])
            return False

        def reuse(_: RunHandle, entry: CacheEntry) -> dict:
            log.info("%s: reusing the trained target %s (run %s of experiment '%s')", unit, entry.path,
                     entry.meta.get("run_id"), entry.meta.get("experiment"))
            return {"artifact": str(entry.path), "name": entry.meta["name"], "english_dev": entry.meta["english_dev"],
                    "run_id": entry.meta["run_id"]}

        def train(run: RunHandle) -> Computed:
            self._drop_loaded()  # the previous target's model leaves the device before this one trains
            seed_everything(self.cfg.seed)  # same initial target adapter/head with and without phase 2
            model = trainable_model(self.base, self.cfg.mode, task, self.cfg, inter)
            outcome = self._fit(model, task, self.cfg.target.tasks[name], run, out)
            del model
            best = self._model_for_scoring(outcome.artifact, inter)
            if self.cfg.mode == "adapters" or self.cfg.tracking.log_full_target_models:
                run.log_artifacts(outcome.artifact.path, "model")
            # beside the result folder, not in it: its manifest (checked by the cache) lists the trained files only
            if (setup_dir := export_setup(best, out.with_name(f"{name}.adapter_setup"))) is not None:
                run.log_artifacts(setup_dir, "adapter_setup")  # save_adapter_setup format, for publishing
            record = {"artifact": str(outcome.artifact.path), "name": name, "english_dev": outcome.best_dev,
                      "run_id": run.run_id}
            return Computed(outcome.artifact.path, record, {**record, "tasks": shared_by}, checkpoints=out)

        record = self._memoised(unit, "target_training", key, {}, train, reuse, intact, in_run=run)
        run.set_tags({"trained_in_run": record["run_id"] or ""})
        return {**record, "artifact": PhaseArtifact(Path(record["artifact"]), self.cfg.mode, record["name"])}

    def _model_for_scoring(self, trained: PhaseArtifact, inter: PhaseArtifact | None):
        """A trained target loaded for inference, kept while the targets sharing it are scored."""
        if self._loaded is None or self._loaded[0] != trained.path:
            self._drop_loaded()
            self._loaded = (trained.path, trained_model(self.base, self.cfg.mode, trained, inter))
        return self._loaded[1]

    def _drop_loaded(self) -> None:
        if self._loaded is not None:
            self._loaded = None
            devices.release_memory(devices.get_device())

    def score_retrieval(self, task: Task, setup: str, inter: PhaseArtifact | None) -> None:
        """Retrieval tasks have no training data: scored with the phase-2 encoder itself."""
        rcfg, unit = self.cfg.retrieval, f"target/{task.name}/{setup}"
        data = self.data[task.name]
        # a fusion setup's encoder averages its adapters' outputs; scores before the Average weights
        # fix (models/phase_models.py: encoder_model) must not be reused
        fused = {"fusion_average": "weights 1"} if inter and inter.fusion_members else {}
        # the shared candidate pool (LAReQA, Mewsli-X) is part of the data; other tasks' keys are unchanged
        scored = [data.test, data.test_dev] + ([data.pool] if data.pool else [])
        key = self._target_key(task, setup, scored_only=True, retrieval=vars(rcfg),
                               bf16=self.cfg.training.bf16, data=content_key(scored), **fused)
        tags = {**self._tags(setup, "target", task.name, self.setups[setup]), "cache_key": key}

        def score(run: RunHandle) -> Computed:
            self._drop_loaded()
            model = encoder_model(self.base, self.cfg.mode, inter)
            layer = retrieval_layer(rcfg.layer, model.config.num_hidden_layers)
            run.log_params({"retrieval.layer_used": layer, "retrieval.pooling": rcfg.pooling})
            out = self.out / "target" / setup / task.name
            tests, devs = self.data[task.name].test, self.data[task.name].test_dev
            mine = {lang: tests[lang] for lang in self._my_languages(tests)}
            mine_dev = {lang: devs[lang] for lang in mine if lang in devs}
            per_lang = self._gather(retrieval_eval(model, self.tokenizer, task, mine, mine_dev, layer, rcfg.pooling,
                                                   rcfg.batch_size, self.cfg.model.max_length, self.cfg.training.bf16,
                                                   out / "predictions", pool=data.pool))
            self._record(run, task, setup, per_lang)
            outcomes = self._log_outcomes(run, task, per_lang, out)
            run.log_artifacts(out / "predictions", "predictions")
            if dist.is_main():
                write_manifest(out / "predictions", MANIFEST)  # the cached result is the predictions
            scores = {"results": per_lang, "english_dev": None}
            return Computed(out / "predictions", scores, scores, [outcomes])

        self._memoised(unit, "target", key, tags, score, self._reuse_target(task, setup, unit))

    def _target_key(self, task: Task, setup: str, scored_only: bool = False, **specific) -> str:
        # entries cached before per-item outcomes existed have none: not reused, so every gain has its interval
        return target_key(self.cfg, self.inter_keys[setup], task.name, self.settings[task.name], scored_only,
                          per_item_outcomes=True, **specific)

    def _reuse_target(self, task: Task, setup: str, unit: str) -> Callable[[RunHandle, CacheEntry], dict]:
        """Record a target result another experiment already computed under the same content key."""
        def reuse(run: RunHandle, entry: CacheEntry) -> dict:
            log.info("%s: same content key as run %s; reusing its results", unit, entry.meta.get("run_id"))
            self._record(run, task, setup, entry.meta["results"])
            if entry.meta.get("trained_in_run"):  # a trained target's scores: the run that trained it
                run.set_tags({"trained_in_run": entry.meta["trained_in_run"]})
            if (outcomes := entry.extra(OUTCOMES_FILE)) is not None:  # entries cached before outcomes existed have none
                self._log_outcome_file(run, outcomes)
            return {"results": entry.meta["results"], "english_dev": entry.meta["english_dev"]}

        return reuse

    def _memoised(self, unit: str, kind: str, key: str, tags: dict, compute: Callable[[RunHandle], Computed],
                  reuse: Callable[[RunHandle, CacheEntry], dict], valid: Callable[[dict], bool] = lambda done: True,
                  in_run: RunHandle | None = None) -> dict:
        """The one protocol of every unit of work (an intermediate phase, a target's training and
        scoring, a retrieval scoring): finished in an earlier attempt of this invocation (and still
        `valid`)? Its record. Else, holding the cache's claim on the key (so no other process
        computes it at the same time): a cached result under the same content key is reused in a
        child run; or the unit is computed in a child run and stored. Either way it is recorded as
        done in state.json, and a computed unit's checkpoints are discarded (resuming skips it).
        `in_run`: a unit with no child run of its own (a target's training, done in the run of the
        first target that needs it); its cache tags are prefixed with its kind."""
        if (done := self.state.done(unit)) and valid(done):
            log.info("%s: finished in an earlier attempt, skipping", unit)
            return done
        computed, t0 = None, time.perf_counter()
        # the unit's seconds (its own run's wall_time_s, or `kind`/wall_time_s in the run it is done in)
        seconds = "wall_time_s" if in_run is None else f"{kind}/wall_time_s"
        with self.cache.claim(kind, key):
            if self.cfg.tracking.cache and (entry := self.cache.lookup(kind, key, MANIFEST)):
                with self._run_of(unit, in_run, {**tags, "cache": "hit",
                                                 "reused_from_run": entry.meta.get("run_id", "")}) as run:
                    record = reuse(run, entry)
                    run.log_new_metrics({seconds: time.perf_counter() - t0})
            else:
                with self._run_of(unit, in_run, {**tags, "cache": "miss"}) as run:
                    computed = compute(run)
                    self.cache.store(kind, key, computed.result,
                                     {"run_id": run.run_id, "experiment": self.cfg.name, **computed.meta},
                                     computed.extra)
                    run.log_new_metrics({seconds: time.perf_counter() - t0})
                record = computed.record
        self.state.record(unit, done=True, **record)
        if computed is not None and computed.checkpoints is not None:
            checkpoints_of(computed.checkpoints).discard()
        return record

    def _run_of(self, unit: str, in_run: RunHandle | None, tags: dict):
        if in_run is None:
            return self._unit(unit, tags)
        in_run.set_tags({f"{unit.split('/')[0]}_{k}": v for k, v in tags.items()})
        return contextlib.nullcontext(in_run)

    # ------------------------------------------------------------------ helpers
    def _fit(self, model, tasks: Task | list[Task], settings: TaskSettings, run: RunHandle, out: Path,
             name: str | None = None, schedule: Schedule | None = None):
        tasks = tasks if isinstance(tasks, list) else [tasks]
        trainable, total = count_parameters(model)
        n_train = sum(len(self.data[t.name].train) for t in tasks)
        run.log_params({"trainable_parameters": trainable, "total_parameters": total, "train_examples": n_train,
                        "dev_examples": sum(len(self.data[t.name].dev) for t in tasks),
                        **{f"task.{k}": v for k, v in flatten(vars(settings)).items()}})
        log.info("%s: training %s of %s parameters on %d examples", name or tasks[0].name, f"{trainable:,}",
                 f"{total:,}", n_train)
        streams = [TaskStream(t, self.features[t.name]["train"], self.features[t.name]["dev"], self.data[t.name].dev,
                              get_task(t.train_data) if t.train_data else None) for t in tasks]
        trainer = Trainer(model, streams, self.cfg, settings, self.ds_config, out, run, self.tokenizer.pad_token_id,
                          name, schedule)
        try:
            return trainer.fit()
        finally:
            del trainer
            devices.release_memory(devices.get_device())

    def _my_languages(self, tests: dict) -> list[str]:
        # Test languages are shared out between ranks; results are gathered on every rank.
        return sorted(tests)[dist.rank():: dist.world_size()]

    def _gather(self, per_lang: dict) -> dict:
        merged: dict = {}
        for part in dist.gather_objects(per_lang):
            merged.update(part)
        return dict(sorted(merged.items()))

    def _record(self, run: RunHandle, task: Task, setup: str, per_lang: dict) -> None:
        metrics = {f"test/{lang}/{m}": v for lang, scores in per_lang.items() for m, v in scores.items()}
        metrics.update({f"test/avg/{m}": v for m, v in macro_average(per_lang).items()})
        run.log_new_metrics(metrics)
        avg = macro_average(per_lang)
        log.info("%s [%s]: average over %d languages: %s", task.name, setup, len(per_lang),
                 ", ".join(f"{k} {v:.4f}" for k, v in avg.items()))

    def _log_outcomes(self, run: RunHandle, task: Task, per_lang: dict, out: Path) -> Path:
        """Gather the per-language outcomes of a scoring (each rank's languages, read from its own
        files, so ranks need not share a folder) into one Parquet file BESIDE the result folder
        (whose manifest lists the trained files only), and log it with each language's item count."""
        path = out.with_name(f"{task.name}.outcomes") / OUTCOMES_FILE
        mine = read_languages(out / "predictions", task.name, [lang for lang in per_lang
                                                               if lang in self._my_languages(per_lang)])
        frames = dist.gather_objects(mine)
        if dist.is_main():
            write_outcomes(frames, path)
            self._log_outcome_file(run, path)
        dist.barrier()
        return path

    @staticmethod
    def _log_outcome_file(run: RunHandle, path: Path) -> None:
        import pandas as pd

        counts = pd.read_parquet(path, columns=["language"])["language"].value_counts()
        run.log_new_metrics({f"n_items/{lang}": float(n) for lang, n in counts.items()})
        run.log_artifacts(path, OUTCOMES_ARTIFACT)

    def _identity(self, setup: Setup, target_task: str = "") -> ResultIdentity:
        trained = setup.strategy not in ("none", "given")
        return ResultIdentity(
            model=self.cfg.model.name, model_layers=self.model_layers, mode=self.cfg.mode, strategy=setup.strategy,
            intermediate_tasks=setup.tasks,
            intermediate_examples=sum(len(self.data[t].train) for t in setup.tasks) if trained else 0,
            intermediate_languages=intermediate_languages([self.data[t] for t in setup.tasks]) if trained else (),
            intermediate_seed=self.cfg.seed if trained else None,
            target_seed=self.cfg.seed if target_task else None, target_task=target_task,
            target_settings=target_settings_hash(self.cfg, target_task, get_task(target_task).trains)
            if target_task else "")

    def _tags(self, setup: str, phase: str, task: str, row: Setup) -> dict:
        identity = self._identity(row, task if phase == "target" else "")
        return {"experiment": self.cfg.name, "mode": self.cfg.mode, "intermediate": setup, "phase": phase,
                "task": task, "seed": self.cfg.seed, "strategy": row.strategy,
                "intermediate_tasks": ",".join(row.tasks), PARAMETERS_TAG: self.memory.shape.parameters,
                **identity.tags()}

    def cleanup(self, status: str = "FINISHED") -> None:
        if hasattr(self, "parent"):
            self.parent.end(status)
