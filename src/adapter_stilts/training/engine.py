"""Build a DeepSpeed engine from a `ds_configs/` file and the experiment's training settings."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..config import REPO_ROOT, ConfigError, TrainingConfig

DS_CONFIG_DIR = REPO_ROOT / "ds_configs"
log = logging.getLogger(__name__)


def resolve_ds_config(name: str) -> Path:
    p = Path(name)
    if not p.suffix:
        p = DS_CONFIG_DIR / f"{name}.json"
    elif not p.is_absolute() and not p.exists():
        p = REPO_ROOT / p
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in DS_CONFIG_DIR.glob("*.json")))
        raise ConfigError(f"training.deepspeed: no DeepSpeed config '{name}' ({p}); known: {known}")
    return p


def load_ds_config(name: str) -> dict:
    path = resolve_ds_config(name)
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    cfg.pop("_comment", None)
    stage = cfg.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    return cfg


def batch_layout(tcfg: TrainingConfig, world: int) -> tuple[int, int]:
    """(micro batch per rank, gradient accumulation steps) for the global batch."""
    micro = tcfg.micro_batch_size or max(1, tcfg.batch_size // world)
    if tcfg.batch_size % (micro * world):
        raise ConfigError(f"training.batch_size={tcfg.batch_size} is not a multiple of "
                          f"micro_batch_size={micro} x {world} ranks")
    return micro, tcfg.batch_size // (micro * world)


def zero_stage(ds_config: dict) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def single_rank_config(ds_config: dict, world: int) -> dict:
    """On one rank, ZeRO-1/2 have nothing to partition but still copy every gradient into
    reduction buckets, reduce them through the process group and copy the updated partition back:
    full fine-tuning of me5-small ran at half the speed of a plain HF Trainer (bench/throughput.py).
    So one rank without offloading runs stage 0; ZeRO-3 and offloading keep their stage (their
    point is memory, not partitioning across ranks)."""
    zero = ds_config.get("zero_optimization", {})
    if world != 1 or zero_stage(ds_config) not in (1, 2) or zero.get("offload_optimizer"):
        return ds_config
    log.info("one rank: ZeRO stage %d would only add gradient copies; running stage 0", zero_stage(ds_config))
    return dict(ds_config, zero_optimization={**zero, "stage": 0})


def own_precision(ds_config: dict) -> list[str]:
    """The mixed-precision sections a DeepSpeed config enables itself."""
    return [k for k in ("bf16", "fp16", "torch_autocast") if ds_config.get(k, {}).get("enabled")]


def with_mixed_precision(ds_config: dict, dtype: torch.dtype | None) -> dict:
    """`training.bf16` as DeepSpeed's `torch_autocast` section: the engine runs its forward under
    torch.autocast of its device's type and scales an fp16 loss (DeepSpeed's GradScaler). An autocast
    opened around the engine instead is switched off inside it on GPUs
    (deepspeed.runtime.torch_autocast.autocast_if_enabled). A config with its own bf16, fp16 or
    torch_autocast section is kept as written."""
    if dtype is None or own_precision(ds_config):
        return ds_config
    return {**ds_config, "torch_autocast": {"enabled": True, "dtype": str(dtype)}}


def build_engine(model, ds_config: dict, tcfg: TrainingConfig, lr: float, total_steps: int, world: int,
                 lr_by_name: dict[str, float] | None = None):
    """DeepSpeed engine over the trainable parameters only (frozen ones get no optimizer state), on
    this rank's device, in the mixed precision the device has for `training.bf16`.
    `lr_by_name`: parameters whose name contains a key train at its rate instead of `lr`."""
    import deepspeed
    from transformers import get_linear_schedule_with_warmup

    from ..device import get_device, mixed_precision

    device = get_device()
    micro, accumulation = batch_layout(tcfg, world)
    cfg = dict(with_mixed_precision(single_rank_config(ds_config, world), mixed_precision(device, tcfg.bf16)),
               train_batch_size=tcfg.batch_size, train_micro_batch_size_per_gpu=micro,
               gradient_accumulation_steps=accumulation)
    rates = {k: v for k, v in (lr_by_name or {}).items() if v}
    by_rate: dict[tuple[float, bool], list] = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            rate = next((r for k, r in rates.items() if k in n), lr)
            by_rate.setdefault((rate, p.ndim > 1), []).append(p)
    # the phase's own rate first: train/lr logs the first group's
    groups = [{"params": ps, "lr": rate, "weight_decay": tcfg.weight_decay if decay else 0.0}
              for (rate, decay), ps in sorted(by_rate.items(), key=lambda g: g[0][0] != lr)]
    # fused AdamW: one kernel over all tensors; the foreach version is ~6x slower on a big embedding
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tcfg.warmup_ratio * total_steps), max(total_steps, 1))
    engine, optimizer, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=cfg)
    if world == 1 and zero_stage(cfg) == 0:  # nothing to all-reduce: skip flattening every gradient into buckets
        engine.enable_backward_allreduce = False
    if engine.device != device:
        raise RuntimeError(f"DeepSpeed placed the engine on {engine.device}, this rank's device is {device}")
    return engine, accumulation
