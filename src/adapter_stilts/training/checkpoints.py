"""DeepSpeed checkpoints of one training phase: every N steps and at the phase end, the last K
kept. Each checkpoint folder gets a manifest of sha256 sums once every rank has written it, so a
truncated or corrupt checkpoint is detected and the previous good one is used instead."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .. import distributed as dist
from ..integrity import verify_manifest, write_manifest

log = logging.getLogger(__name__)
MANIFEST = "complete.json"


def _drop_frozen_aliases(engine) -> None:
    """DeepSpeed's exclude_frozen_parameters misses frozen tensors registered under a second name
    (adapters' prompt-tuning module re-registers the word embeddings): without this every adapter
    checkpoint of me5-small would carry the 384 MB embedding matrix."""
    if getattr(engine, "_frozen_aliases_dropped", False):
        return
    frozen = {n for n, p in engine.module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    original = engine.module_state_dict

    def module_state_dict(*args, **kwargs):
        sd = original(*args, **kwargs)
        for name in frozen & set(sd):
            del sd[name]
        return sd

    engine.module_state_dict = module_state_dict
    engine._frozen_aliases_dropped = True


class CheckpointManager:
    def __init__(self, root: Path, keep: int, exclude_frozen: bool):
        self.root, self.keep, self.exclude_frozen = root, max(1, keep), exclude_frozen

    def tags(self) -> list[str]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"step*/{MANIFEST}"))

    def save(self, engine, step: int, client_state: dict) -> None:
        tag = f"step{step:08d}"
        if self.exclude_frozen:
            _drop_frozen_aliases(engine)
        engine.save_checkpoint(str(self.root), tag=tag, client_state=client_state,
                               exclude_frozen_parameters=self.exclude_frozen)
        dist.barrier()  # every rank has written its shard
        if dist.is_main():
            write_manifest(self.root / tag, MANIFEST)
            for old in self.tags()[: -self.keep]:
                shutil.rmtree(self.root / old, ignore_errors=True)
        dist.barrier()

    def discard(self) -> None:
        """Drop every checkpoint: the phase restarts from scratch, or is finished and needs none
        (a full-mode checkpoint of me5-small holds ~1.4 GB of weights and optimizer state)."""
        if dist.is_main():
            shutil.rmtree(self.root, ignore_errors=True)
        dist.barrier()

    def verify(self, tag: str) -> bool:
        return verify_manifest(self.root / tag, MANIFEST)

    def load_latest(self, engine) -> dict | None:
        """Restore the newest good checkpoint into `engine`; returns its client state (None: none)."""
        for tag in reversed(self.tags()):
            ok = self.verify(tag)
            if ok:
                try:
                    _, state = engine.load_checkpoint(str(self.root), tag=tag,
                                                      load_module_strict=not self.exclude_frozen)
                except Exception as e:  # a file that passes the checksum but does not load
                    log.warning("checkpoint %s does not load (%s)", self.root / tag, e)
                    state = None
                ok = state is not None
            # every rank must agree, or the ranks would resume from different steps
            if all(dist.gather_objects(ok)):
                log.info("Resuming from checkpoint %s", self.root / tag)
                return state
            log.warning("Checkpoint %s is truncated or corrupt; falling back to the previous one", self.root / tag)
        return None


def checkpoints_of(phase_out: Path, keep: int = 1, exclude_frozen: bool = False) -> CheckpointManager:
    """The checkpoints of the phase whose result is saved in `phase_out` (they live beside it)."""
    return CheckpointManager(phase_out.with_name(phase_out.name + ".checkpoints"), keep, exclude_frozen)


def full_phase_disk_need(weights_bytes: int, keep: int) -> int:
    """Peak bytes one full-mode phase writes: keep + 1 checkpoints (the new one is written before
    the oldest goes) of fp32 weights and two Adam moments, plus the result in the output folder,
    the cache and MLflow."""
    return weights_bytes * (3 * (max(1, keep) + 1) + 3)


def nearest_existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (an output folder is created only when a run starts)."""
    existing = folder.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def warn_if_low_disk(folder: Path, need: int) -> bool:
    """Warn (True) when `folder`'s disk has less than `need` bytes free: a full disk fails a phase
    midway (resumable, but hours later on a cluster)."""
    free = shutil.disk_usage(nearest_existing(folder)).free
    if free >= need:
        return False
    log.warning("tracking.output_dir: %.1f GB free on %s, but one full-mode phase of this model writes up to "
                "%.1f GB (checkpoints of weights and Adam state, the result and its cache and MLflow copies); "
                "free space or lower training.keep_checkpoints", free / 1e9, folder, need / 1e9)
    return True
