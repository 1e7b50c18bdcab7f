"""Content keys of cached results, built from DECLARED result-relevant fields (pure: no I/O, no
model). Every field of the training and model sections is listed either as deciding a result or
as not deciding it, with the reason; tests/test_cache_keys.py fails when a new field is in
neither list, so adding a setting forces the decision instead of silently splitting or sharing
cache entries."""
from __future__ import annotations

import hashlib
import json
from dataclasses import fields

from .config import ExperimentConfig, ModelConfig, TaskSettings, TrainingConfig

TRAINING_RESULT_FIELDS = ("batch_size", "lr", "weight_decay", "warmup_ratio", "epochs", "bf16", "group_by_length",
                          "eval_every")
# the DeepSpeed batch layout (1 and 2 ranks give the same loss curve), packing (the same sums over
# the same tokens), logging and checkpointing do not change what is trained
TRAINING_OTHER_FIELDS = ("micro_batch_size", "packing", "log_every", "deepspeed", "checkpoint_every",
                         "keep_checkpoints")
MODEL_RESULT_FIELDS = ("name", "layers", "dropout", "max_length", "classifier_pooling")
MODEL_OTHER_FIELDS = ("attention",)  # the attention kernel computes the same softmax
# a target task's settings: what decides its training, and what only decides how it is scored
TARGET_TRAINING_SETTINGS = ("train_size", "dev_size", "epochs", "lr", "max_length")
TARGET_SCORING_SETTINGS = ("test_size", "languages")


def undeclared_fields() -> set[str]:
    """Fields of the training and model sections and of a task's settings in neither list (must stay empty)."""
    training = {f.name for f in fields(TrainingConfig)} ^ {*TRAINING_RESULT_FIELDS, *TRAINING_OTHER_FIELDS}
    model = {f.name for f in fields(ModelConfig)} ^ {*MODEL_RESULT_FIELDS, *MODEL_OTHER_FIELDS}
    task = {f.name for f in fields(TaskSettings)} ^ {*TARGET_TRAINING_SETTINGS, *TARGET_SCORING_SETTINGS}
    return {f"training.{n}" for n in training} | {f"model.{n}" for n in model} | {f"tasks.<task>.{n}" for n in task}


def content_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def fingerprint(features: list[dict]) -> str:
    """A hash of the model inputs and targets of a split (what training actually saw)."""
    h = hashlib.sha256()
    for f in features:
        h.update(json.dumps({k: f[k] for k in ("input_ids", "labels", "start_positions", "end_positions") if k in f},
                            sort_keys=True).encode())
    return h.hexdigest()[:20]


def training_part(cfg: ExperimentConfig) -> dict:
    return {k: getattr(cfg.training, k) for k in TRAINING_RESULT_FIELDS}


def model_part(cfg: ExperimentConfig, scored_only: bool = False) -> dict:
    """`scored_only`: a result scored with dropout off (retrieval) does not depend on dropout.
    `layers` 0 (the whole model) is left out, so keys made before the field existed still hold."""
    return {k: getattr(cfg.model, k) for k in MODEL_RESULT_FIELDS
            if not (scored_only and k == "dropout") and not (k == "layers" and not cfg.model.layers)}


def intermediate_key(cfg: ExperimentConfig, model_path: str, settings: dict[str, TaskSettings], lr: float,
                     data: dict[str, list[str]], languages: dict[str, list[str]] | None = None) -> str:
    """An intermediate result: the model, mode, adapter, training settings and seed, its tasks with
    their settings and the fingerprints of the very data it trained on; the sampler only where
    several tasks share the phase; the languages of the tasks trained on translated data (left out
    when none is, so keys made before translated data existed still hold)."""
    ic = cfg.intermediate
    return content_key({
        "model": model_part(cfg), "model_path": model_path, "mode": cfg.mode, "adapter": vars(cfg.adapter),
        "training": training_part(cfg), "seed": cfg.seed, "tasks": {t: vars(s) for t, s in settings.items()},
        "lr": lr, "multitask": [ic.sampler, ic.sampler_cap, ic.sampler_temperature, ic.mlm_ratio]
        if len(settings) > 1 else None, "data": data, **({"languages": languages} if languages else {}),
    })


def target_settings_hash(cfg: ExperimentConfig, task: str, trains: bool) -> str:
    """How a target task is trained and scored (its sizes and languages, the training settings,
    the eval seed, the retrieval settings of a retrieval task): a result identity's protocol part."""
    return content_key({"settings": vars(cfg.target.tasks[task]), "training": training_part(cfg),
                        "eval_seed": cfg.data.eval_seed, "benchmark": cfg.target.benchmark,
                        "retrieval": None if trains else vars(cfg.retrieval)})[:12]


def target_training_key(cfg: ExperimentConfig, inter_key: str, trained_on: str, head: list, settings: TaskSettings,
                        **specific) -> str:
    """A trained target (adapter or encoder, with its head), keyed by what it was trained on, not by
    the target it is scored as: the intermediate result it starts from, the data it trains on
    (`trained_on`: a task's `train_data`, or its own name), the head's shape, mode, model, the
    task's training settings, plus seed, adapter, training settings and data fingerprints. XQuAD
    and MLQA (both trained on SQuAD with the same settings) get one key: trained once, scored twice."""
    return content_key({"intermediate": inter_key, "trained_on": trained_on, "head": head, "mode": cfg.mode,
                        "model": model_part(cfg),
                        "settings": {k: getattr(settings, k) for k in TARGET_TRAINING_SETTINGS}, **specific})


def target_key(cfg: ExperimentConfig, inter_key: str, task: str, settings: TaskSettings, scored_only: bool = False,
               **specific) -> str:
    """A target result (its scores): the intermediate result it starts from, the task and its
    settings, mode and model, plus what is specific to how it is obtained (trained: the trained
    target's key and the test data; scored by retrieval: the retrieval settings and test data).

    `scored_only`: scored with the phase-2 encoder as it is, dropout off: mode and dropout matter
    only through the intermediate result, whose key has them, so `full-*` experiments reuse the
    adapters-mode `none` scores of the same base encoder."""
    return content_key({"intermediate": inter_key, "task": task, "mode": "any" if scored_only else cfg.mode,
                        "model": model_part(cfg, scored_only), "settings": vars(settings), **specific})
