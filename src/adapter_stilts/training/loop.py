"""The training loop of one phase on one task, on a DeepSpeed engine.

Speed by design: packed sequences (no compute on padding; models/packing.py), eager attention on CPUs, no gradients
for frozen parameters (only trainable ones reach the optimizer), mixed precision by the engine (device.py). Model
selection on the English dev set only (selecting on other languages would break zero-shot)."""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed as dist
from ..config import ConfigError, ExperimentConfig, TaskSettings
from ..device import peak_memory, to_device
from ..evaluation.predict import predict_logits
from ..models.phase_models import FUSION_PARAMETERS, PhaseArtifact, save_phase
from ..tasks.collate import collate, feature_length
from ..tasks.families import family_of
from ..tasks.registry import Task
from ..tracking import RunHandle
from .batching import micro_batches
from .checkpoints import checkpoints_of
from .engine import batch_layout, build_engine, zero_stage
from .sampling import plan_steps

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainOutcome:
    artifact: PhaseArtifact
    best_dev: float
    best_step: int
    steps: int
    wall_s: float
    examples_per_s: float
    losses: list[float] = field(default_factory=list)


@dataclass
class TaskStream:
    """One task's share of a phase: its features and its English dev set."""

    task: Task
    train: list[dict]
    dev: list[dict]
    dev_examples: list[dict]
    selection: Task | None = None  # whose metric scores the English dev set (a target's train_data task)

    @property
    def judge(self) -> Task:
        """The task whose metric scores the English dev set and selects the checkpoint."""
        return self.selection or self.task


@dataclass
class Schedule:
    """How the batches of a phase are drawn when it trains several tasks at once."""

    sampler: str = "proportional"
    cap: int = 0
    temperature: float = 1.0
    fixed: dict[str, float] = field(default_factory=dict)  # tasks drawn with a set probability (MLM mixing)


class Trainer:
    """Trains one phase: one task, or several at once (multi-task: one head per task, each step
    a single-task batch, tasks drawn by the `Schedule`). `name` is what the phase saves (its
    adapter, or encoder, and the heads of all its tasks)."""

    def __init__(self, model, streams: list[TaskStream], cfg: ExperimentConfig, settings: TaskSettings, ds_config: dict,
                 out: Path, run: RunHandle, pad_id: int, name: str | None = None, schedule: Schedule | None = None):
        self.model, self.streams = model, {s.task.name: s for s in streams}
        self.cfg, self.tcfg, self.settings, self.ds_config = cfg, cfg.training, settings, ds_config
        self.out, self.run, self.pad_id = out, run, pad_id
        self.name = name or streams[0].task.name
        self.schedule = schedule or Schedule()
        self.multi = len(streams) > 1

    def fit(self) -> TrainOutcome:
        tcfg, rank, world = self.tcfg, dist.rank(), dist.world_size()
        micro, accumulation = batch_layout(tcfg, world)
        epochs = self.settings.epochs or tcfg.epochs
        lr = self.settings.lr or tcfg.lr
        for s in self.streams.values():
            if len(s.train) < tcfg.batch_size:
                raise ConfigError(f"{s.task.name}: {len(s.train)} training examples is less than one "
                                  f"batch (training.batch_size={tcfg.batch_size})")
        plan = plan_steps({t: [feature_length(f) for f in s.train] for t, s in self.streams.items()}, tcfg.batch_size,
                          epochs, self.cfg.seed, tcfg.group_by_length, self.schedule.sampler, self.schedule.cap,
                          self.schedule.temperature, self.schedule.fixed)
        total = len(plan)
        steps_per_epoch = total // epochs
        engine, _ = build_engine(self.model, self.ds_config, tcfg, lr, total, world,
                                 {FUSION_PARAMETERS: self.cfg.intermediate.fusion_lr})
        self.engine, self.zero3 = engine, zero_stage(self.ds_config) == 3
        self.checkpoints = checkpoints_of(self.out, tcfg.keep_checkpoints, exclude_frozen=self.cfg.mode == "adapters")
        # Metrics reach MLflow just before each checkpoint; what an earlier attempt already logged
        # (MLflow is the record) is skipped, so a resumed phase logs no step twice and leaves no gap.
        self.pending: list[tuple[dict, int]] = []
        self.logged = self.run.logged_steps()
        st = {"step": 0, "best": -math.inf, "best_step": 0, "losses": [], "window": [], "train_s": 0.0, "seen": 0,
              "real_tokens": 0}
        resumed = self.checkpoints.load_latest(engine)
        if resumed:
            st.update({k: resumed[k] for k in st})
            torch.set_rng_state(resumed["torch_rng"])
            self.artifact = PhaseArtifact(self.out, self.cfg.mode, self.name)
            if st["best_step"] and not self.artifact.intact():
                log.warning("%s: the best result saved at step %d is damaged; it will be replaced by the next "
                            "evaluation", self.name, st["best_step"])
                st["best"] = -math.inf
        eval_every = tcfg.eval_every
        bar = tqdm(total=total, initial=st["step"], desc=f"train {self.name}", disable=not dist.is_main(),
                   dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30)
        engine.train()
        with self._packing():  # training forwards and dev scoring run on real tokens only
            for task_name, batch_ids in plan[st["step"]:]:  # skips what a checkpoint covers
                train = self.streams[task_name].train
                if self.multi:
                    engine.module.active_head = task_name
                t0 = time.perf_counter()
                step_loss = 0.0
                for ids in micro_batches(batch_ids, rank, world, accumulation):
                    batch = collate([train[i] for i in ids], self.pad_id)
                    st["real_tokens"] += int(batch["attention_mask"].sum())  # counted on the host: no sync
                    loss = engine(**to_device(batch, engine.device)).loss  # autocast: the engine's torch_autocast
                    engine.backward(loss)
                    engine.step()
                    step_loss += loss.item() / accumulation
                st["train_s"] += time.perf_counter() - t0
                st["seen"] += len(batch_ids)
                st["step"] = step = st["step"] + 1
                loss_all = dist.mean_across_ranks(step_loss)
                if not math.isfinite(loss_all):
                    raise TrainingError(f"{self.name}: loss is {loss_all} at step {step} ({task_name}); stopping this "
                                        f"phase (the last good checkpoint is kept)")
                st["losses"].append(loss_all)
                st["window"].append(loss_all)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_all:.4f}", refresh=False)
                if step % tcfg.log_every == 0 or step == total:
                    self.pending.append(({"train/loss": sum(st["window"]) / len(st["window"]),
                                          "train/lr": engine.get_lr()[0]}, step))
                    st["window"] = []
                if (eval_every and step % eval_every == 0) or (not eval_every and step % steps_per_epoch == 0) \
                        or step == total:
                    score = self._evaluate_dev(step)
                    if score > st["best"]:
                        st["best"], st["best_step"] = score, step
                        self.artifact = save_phase(engine.module, self.out, self.cfg.mode, self.name, self.zero3,
                                                   heads=list(self.streams))
                if (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0) or step == total:
                    self._flush()
                    self.checkpoints.save(engine, step, {**st, "torch_rng": torch.get_rng_state()})
        bar.close()
        train_s = max(st["train_s"], 1e-9)
        tokens_all = dist.mean_across_ranks(st["real_tokens"]) * world
        outcome = TrainOutcome(self.artifact, st["best"], st["best_step"], st["step"], st["train_s"],
                               st["seen"] / train_s, st["losses"])
        metric = next(iter(self.streams.values())).judge.metric if not self.multi else "score"
        peak = peak_memory(engine.device) / 1024 ** 3
        log.info("%s: %d steps in %.1f s: %.1f examples/s, %.0f tokens/s%s", self.name, outcome.steps, train_s,
                 outcome.examples_per_s, tokens_all / train_s, f", peak GPU memory {peak:.2f} GiB" if peak else "")
        self.pending.append(({"train/examples_per_s": outcome.examples_per_s,
                              "train/tokens_per_s": tokens_all / train_s,
                              **({"train/peak_gpu_memory_gib": peak} if peak else {}),
                              f"dev/best_{metric}": outcome.best_dev, "dev/best_step": outcome.best_step},
                             outcome.steps))
        self._flush()
        return outcome

    def _packing(self):
        """Sequence packing for this phase's forwards, where the setting and the adapter allow it."""
        from ..models.loading import adapter_config
        from ..models.packing import packed_encoder, supports_packing

        adapter = adapter_config(self.cfg.adapter) if self.cfg.mode == "adapters" else None
        if not self.tcfg.packing or not supports_packing(adapter):
            return contextlib.nullcontext()
        return packed_encoder(self.engine.module, self.pad_id)

    def _flush(self) -> None:
        for metrics, step in self.pending:
            self.run.log_new_metrics(metrics, step, self.logged)
        self.pending = []

    def _evaluate_dev(self, step: int) -> float:
        """The English dev score that selects the checkpoint; with several tasks, the mean of
        their dev metrics (each task through its own head)."""
        # Every rank scores the whole dev set: under ZeRO-3 the forward gathers parameters
        # collectively, so all ranks must run the same forwards in lockstep.
        module, scores = self.engine.module, []
        for name, s in self.streams.items():
            if self.multi:
                module.active_head = name
            family = family_of(s.task)
            outputs = predict_logits(module, s.dev, self.pad_id, max(self.tcfg.batch_size, 64), self.tcfg.bf16,
                                     compact=getattr(family, "compact_outputs", None))
            preds = family.decode(s.task, outputs, s.dev, s.dev_examples)
            judge = s.judge
            metrics = family.score(judge, preds, s.dev_examples, s.task.train_language)
            prefix = f"dev/{name}/" if self.multi else "dev/"
            self.pending.append(({f"{prefix}{k}": v for k, v in metrics.items()}, step))
            scores.append(metrics[judge.metric])
            log.info("%s step %d: English dev %s = %.4f", name, step, judge.metric, metrics[judge.metric])
        module.train()
        score = sum(scores) / len(scores)
        if self.multi:
            self.pending.append(({"dev/score": score}, step))
            log.info("%s step %d: mean English dev score over %d tasks = %.4f", self.name, step, len(scores), score)
        return score
